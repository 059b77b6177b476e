"""Checkpoints of the training loop: model and optimizer variables plus the loop's own state.

``checkpoint_dir/latest/`` is replaced atomically after every epoch; a later ``fit_model``
with the same model and settings resumes from it with the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from recsys.data import io
from recsys.training.core import TrainingError, to_numpy
from recsys.training.state import LoopState, TrainSettings

CHECKPOINT_FORMAT = 1
CHECKPOINT_SUBDIR = "latest"
"""``checkpoint_dir/latest/`` is replaced atomically after every epoch."""


def snapshot(model: keras.Model) -> list[np.ndarray]:
    return [to_numpy(v) for v in model.variables]


def assign(variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def _optimizer_variables(model: keras.Model) -> list[Any]:
    optimizer = model.optimizer
    if optimizer is None:
        return []
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(optimizer.variables)


def _shapes(variables: Sequence[Any]) -> list[list[int]]:
    return [[int(d) for d in v.shape] for v in variables]


def write_checkpoint(
    path: Path,
    model: keras.Model,
    settings: TrainSettings,
    state: LoopState,
    best_weights: list[np.ndarray] | None,
) -> None:
    """Replace ``path`` with the model's and optimizer's variables and the loop state."""
    opt_vars = _optimizer_variables(model)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings.fingerprint(),
        "model_shapes": _shapes(model.variables),
        "optimizer_shapes": _shapes(opt_vars),
        "state": dataclasses.asdict(state),
        "has_best": best_weights is not None,
    }
    with io.atomic_dir(path) as tmp:
        _save_arrays(tmp / "model.npz", snapshot(model))
        _save_arrays(tmp / "optimizer.npz", [to_numpy(v) for v in opt_vars])
        if best_weights is not None:
            _save_arrays(tmp / "best.npz", best_weights)
        io.write_json(meta, tmp / "state.json")


def read_checkpoint(
    path: Path, model: keras.Model, settings: TrainSettings
) -> tuple[LoopState, list[np.ndarray] | None]:
    """Restore the variables written by ``write_checkpoint``; return the loop state."""
    meta = io.read_json(path / "state.json")
    where = str(path)
    fix = "delete the checkpoint directory or train with the settings it was written with"
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"unsupported checkpoint format {meta.get('format')!r}", where=where)
    if meta["settings"] != settings.fingerprint():
        raise TrainingError(
            f"the checkpoint was written with other settings: {meta['settings']} != "
            f"{settings.fingerprint()}",
            where=where,
            fix=fix,
        )
    opt_vars = _optimizer_variables(model)
    if meta["model_shapes"] != _shapes(model.variables) or meta["optimizer_shapes"] != _shapes(
        opt_vars
    ):
        raise TrainingError(
            "the checkpoint holds a different model (variable shapes differ)", where=where, fix=fix
        )
    assign(model.variables, _load_arrays(path / "model.npz"))
    assign(opt_vars, _load_arrays(path / "optimizer.npz"))
    best = _load_arrays(path / "best.npz") if meta["has_best"] else None
    state = LoopState(**meta["state"])
    return state, best


def _save_arrays(path: Path, arrays: Sequence[np.ndarray]) -> None:
    with io.atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays])


def _load_arrays(path: Path) -> list[np.ndarray]:
    if not path.is_file():
        raise TrainingError("checkpoint file missing", where=str(path))
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{j}"] for j in range(len(data.files))]
