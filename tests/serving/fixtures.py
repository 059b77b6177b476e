"""Tiny models for the serving tests: EASE as the champion ranker, a small two-tower retriever
and the catalogue, all trained on the contract suite's synthetic data (~2000 interactions)
and saved into a BentoML store under a temporary BENTOML_HOME."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from recsys.models.base import Recommender
from recsys.models.baselines import EASE
from recsys.models.twotower import TwoTower
from recsys.serving import package, store
from recsys.serving.engine import Catalogue, Engine, ServingConfig
from recsys.serving.store import ModelLabels
from tests.recsys.test_models_contract import synthetic_data

DATA_VERSION = "synthetic-2000-s11"
LABELS = ModelLabels(
    data_version=DATA_VERSION, git_revision="test", params_hash="0", metrics={"ndcg@10": 0.1}
)
TWOTOWER = {
    "embedding_dim": 16,
    "id_dim": 8,
    "token_dim": 8,
    "item_hidden_units": [32],
    "user_hidden_units": [32],
    "epochs": 3,
    "batch_size": 64,
    "seed": 0,
}


@functools.cache
def ranker() -> Recommender:
    model = EASE(l2=50.0)
    model.fit(synthetic_data())
    return model


@functools.cache
def retriever() -> Recommender:
    model = TwoTower(**TWOTOWER)
    model.fit(synthetic_data())
    return model


def catalogue() -> Catalogue:
    return Catalogue.from_processed(synthetic_data())


def engine(cfg: ServingConfig | None = None) -> Engine:
    return Engine(ranker(), retriever(), catalogue(), cfg, data_version=DATA_VERSION)


@dataclass(frozen=True)
class StoredModels:
    home: Path
    champion: str
    retriever: str
    catalogue: str


def store_models(home: Path) -> StoredModels:
    """Save the three models into the store under ``home``; returns their tags."""
    return StoredModels(
        home=home,
        champion=store.save_model(ranker(), "recsys-ease", LABELS, home=home),
        retriever=store.save_model(retriever(), "recsys-twotower", LABELS, home=home),
        catalogue=package.save_catalogue(synthetic_data(), data_version=DATA_VERSION, home=home),
    )
