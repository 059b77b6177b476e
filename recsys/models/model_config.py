"""Model configs: one frozen dataclass per model, built from keyword fields or ``params.yaml``
and checked the same way, and their JSON form (what ``recommender.json`` stores); the settings
that the Keras-trained models' configs share (``TrainingSettings``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from recsys.config import from_dict, replace
from recsys.errors import ConfigError

__all__ = [
    "TrainingSettings",
    "check_config_fields",
    "kept_epochs",
    "resolve_config",
    "to_jsonable",
]

C = TypeVar("C")


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """The fields every Keras-trained model's config has with the same meaning and default
    (AutoRec, NeuMF, DeepContent, Hybrid, TwoTower); the loop's other settings (epochs, batch
    size, learning rate, patience, ...) have per-model defaults and stay in each config.

    Keyword-only, so a subclass's own fields keep their positional order; ``dataclasses``
    lists these three first (``config_dict``, which ``recommender.json`` stores by key).
    """

    device: Literal["auto", "cpu", "gpu"] = "auto"
    """Where to train and score (``recsys.train.resolve_device``); ``auto``: a GPU if any."""
    seed: int = 20240101
    verbose: int = 0
    """0 silent, 1 Keras progress bar, 2 one line per epoch."""
    schedule_epochs: int = 0
    """Epochs a ``cosine`` learning-rate schedule spans (0: ``epochs``). Written with a chosen
    ``epochs`` shorter than the run it was chosen from (``kept_epochs``), so that a refit
    follows that run's learning rates for those epochs instead of a compressed schedule."""


def kept_epochs(config: Mapping[str, Any], best_epoch: int) -> dict[str, int]:
    """The settings that keep ``best_epoch`` epochs of a run trained with ``config``:
    ``epochs``, and for a cosine schedule the ``schedule_epochs`` that run spanned."""
    kept = {"epochs": int(best_epoch)}
    span = int(config.get("schedule_epochs") or 0) or int(config.get("epochs") or 0)
    if config.get("lr_schedule") == "cosine" and span > best_epoch:
        kept["schedule_epochs"] = span
    return kept


def resolve_config(cls: type[C], config: C | None, fields: Mapping[str, Any], name: str) -> C:
    """The model config from a config object and/or keyword fields (fields win).

    Models are rebuilt as ``cls(**config_dict())`` (``Recommender.load``), so each accepts its
    config's fields as keywords; they are checked like ``params.yaml`` (unknown key or wrong
    type: ``ConfigError``).
    """
    if config is None:
        return from_dict(cls, dict(fields), name)
    if not isinstance(config, cls):
        raise ConfigError(f"{name}: expected a {cls.__name__}, got {type(config).__name__}")
    return replace(config, **fields) if fields else config


def to_jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists, so a config survives a JSON round trip unchanged in meaning."""
    return json.loads(json.dumps(config))


def check_config_fields(
    cfg: Any,
    section: str,
    *,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    units: Sequence[str] = (),
    empty_units_ok: Sequence[str] = (),
) -> None:
    """``ConfigError`` for the common field rules of the deep models' configs; unit tuples
    given as lists are turned into tuples (the config is frozen: ``object.__setattr__``)."""
    for key in positive:
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{section}.{key} must be a positive integer, got {value!r}")
    for key in non_negative:
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{section}.{key} must be >= 0, got {value!r}")
    for key in (*units, *empty_units_ok):
        raw = getattr(cfg, key)
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{section}.{key} must be a list of widths, got {raw!r}")
        value = tuple(raw)
        bad = any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in value)
        if bad or (not value and key not in empty_units_ok):
            raise ConfigError(f"{section}.{key} must be positive integers, got {raw!r}")
        object.__setattr__(cfg, key, value)
    dropout = getattr(cfg, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{section}.dropout must be in [0, 1), got {dropout}")
    if not getattr(cfg, "learning_rate", 1.0) > 0:
        raise ConfigError(f"{section}.learning_rate must be > 0, got {cfg.learning_rate}")
    device = getattr(cfg, "device", "auto")
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"{section}.device must be auto, cpu or gpu, got {device!r}")
