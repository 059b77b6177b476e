"""Tiny models for the serving tests: a two-stage champion (a small two-tower retriever, EASE
as the ranker) and the catalogue, trained on the contract suite's synthetic data (~2000
interactions) and saved into a BentoML store under a temporary BENTOML_HOME."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from recsys.config import RetrievalConfig, ServingConfig
from recsys.models.base import Recommender
from recsys.models.baselines import EASE
from recsys.models.twostage import TwoStage
from recsys.models.twotower import TwoTower
from recsys.serving import package, store
from recsys.serving.engine import Catalogue, Engine
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


RERANK_TOP = 30
"""M of the fixture's champion: under the 100-item catalogue, so retrieval really prunes."""


def model(rerank_top: int = RERANK_TOP, retrieval: RetrievalConfig | None = None) -> TwoStage:
    """The two-stage champion: exact retrieval (the catalogue is small) and M=30."""
    return TwoStage.compose(ranker(), retriever(), rerank_top=rerank_top, retrieval=retrieval)


def engine(cfg: ServingConfig | None = None, served: TwoStage | None = None) -> Engine:
    return Engine(served or model(), catalogue(), cfg, data_version=DATA_VERSION, params_hash="0")


@dataclass(frozen=True)
class StoredModels:
    home: Path
    champion: str
    catalogue: str


def store_models(home: Path) -> StoredModels:
    """Save the two-stage champion and the catalogue into the store under ``home``."""
    return StoredModels(
        home=home,
        champion=store_model(model(), home),
        catalogue=package.save_catalogue(synthetic_data(), data_version=DATA_VERSION, home=home),
    )


def store_model(served: Recommender, home: Path) -> str:
    return store.save_model(served, "recsys-twostage", LABELS, home=home)
