"""The pipeline's candidates: which model families it trains, and with which settings.

``params.yaml``'s ``models`` section lists the candidate families (registered model names) with
their constructor fields; with ``tuning.enabled`` the settings ``recsys tune`` chose on the
validation split (its ``params.yaml``) replace them. ``recsys.pipeline`` builds every candidate
through here, so a bad family or setting fails before any data is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from recsys.config import ModelsConfig, Params, ServingConfig
from recsys.errors import ConfigError
from recsys.models import registry
from recsys.models.base import Recommender

__all__ = [
    "PARAMS_SETTINGS",
    "TUNED_SETTINGS",
    "build_candidate",
    "candidate_settings",
    "check_candidates",
]

PARAMS_SETTINGS: Final = "params.yaml"
"""A candidate's settings came from ``params.yaml``'s ``models`` section."""
TUNED_SETTINGS: Final = "tuned"
"""A candidate's settings came from ``recsys tune`` (``tuning.enabled``)."""


def check_candidates(models: ModelsConfig, serving: ServingConfig | None = None) -> tuple[str, ...]:
    """The candidate families, each a registered model, the retriever among them (``serving``
    given: every served ranking retrieves with ``serving.retriever``); ``ConfigError``
    otherwise."""
    unknown = [name for name in models.candidates if name not in registry.MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model famil{'y' if len(unknown) == 1 else 'ies'} {unknown} in 'models'",
            fix=f"choose from {', '.join(sorted(registry.MODELS))}",
        )
    if serving is not None and serving.retriever not in models.candidates:
        raise ConfigError(
            f"serving.retriever '{serving.retriever}' is not among the candidates "
            f"{list(models.candidates)}: every served ranking retrieves with it",
            fix=f"add '{serving.retriever}' under 'models:' or choose a candidate with user "
            "and item vectors (twotower, bpr) as serving.retriever",
        )
    return models.candidates


def build_candidate(
    family: str, models: ModelsConfig, settings: Mapping[str, Any] | None = None
) -> Recommender:
    """A fresh, untrained model of ``family`` with ``settings`` (default: its
    ``models.<family>`` settings)."""
    if family not in check_candidates(models):
        raise ConfigError(
            f"'{family}' is not a candidate of this pipeline",
            fix=f"add it to the 'models' section of params.yaml (candidates: "
            f"{', '.join(models.candidates)})",
        )
    try:
        fields = models.settings(family) if settings is None else dict(settings)
        return registry.model_class(family)(**fields)
    except ConfigError as exc:  # the model's own config class checked the fields
        raise ConfigError(f"models.{family}: {exc.what}", where=exc.where, fix=exc.fix) from None


def candidate_settings(
    family: str, params: Params, tuned_file: Path | None = None
) -> tuple[dict[str, Any], str]:
    """The settings candidate ``family`` trains with, and where they come from: its
    ``params.yaml`` settings, or with ``tuning.enabled`` those ``recsys tune`` chose
    (``tuned_file``, its ``params.yaml``) over them."""
    settings = params.models.settings(family)
    if not params.tuning.enabled:
        return settings, PARAMS_SETTINGS
    if tuned_file is None or not Path(tuned_file).is_file():
        raise ConfigError(
            "tuning.enabled is true but there are no tuned settings to train with",
            where=str(tuned_file) if tuned_file is not None else "recsys train --tuned",
            fix="run the tune stage first (recsys tune --in data/processed --out models/tuning)"
            " and pass --tuned models/tuning/params.yaml, or set tuning.enabled: false",
        )
    from recsys.tuning.report import read_params_file

    tuned = read_params_file(Path(tuned_file)).get(family)
    if tuned is None:
        return settings, f"{PARAMS_SETTINGS} (not in {tuned_file})"
    return {**settings, **tuned}, TUNED_SETTINGS
