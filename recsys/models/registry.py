"""The only name -> class map. Classes are imported on first use, so asking for a classic
baseline never imports TensorFlow."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.models.base import Recommender

MODELS: dict[str, str] = {
    "mostpop": "recsys.models.baselines:MostPopular",
    "itemknn": "recsys.models.baselines:ItemKNN",
    "ease": "recsys.models.baselines:EASE",
    "bpr": "recsys.models.bpr:BPRMF",
    "als": "recsys.models.als:ALS",
    "biased_mf": "recsys.models.biased_mf:BiasedMF",
    "neumf": "recsys.models.ncf:NeuMF",
    "content": "recsys.models.content:DeepContent",
    "hybrid": "recsys.models.hybrid:Hybrid",
    "twotower": "recsys.models.twotower:TwoTower",
    "autorec": "recsys.models.autorec:AutoRec",
    "multdae": "recsys.models.multdae:MultDAE",
    "ensemble": "recsys.models.ensemble:Ensemble",
    "twostage": "recsys.models.twostage:TwoStage",
}


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; a ConfigError listing the names otherwise."""
    try:
        target = MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model '{name}'", fix=f"choose one of {', '.join(sorted(MODELS))}"
        ) from None
    module, _, attr = target.partition(":")
    cls: type[Recommender] = getattr(importlib.import_module(module), attr)
    return cls
