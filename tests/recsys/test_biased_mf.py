"""BiasedMF (ALS rating baseline) honours the Recommender contract (issue #16: it lived in
bench/bench_rating.py, unregistered and unable to save)."""

from __future__ import annotations

import numpy as np

import tests.recsys.test_autorec as autorec_tests
from recsys.models.base import Recommender
from recsys.models.biased_mf import BiasedMF, BiasedMFConfig
from recsys.models.registry import model_class


class TestBiasedMFContract(autorec_tests.TestAutoRecContract):
    """The contract with AutoRec's rating version of the planted-structure check (the
    contract's checkerboard rates every interaction 4.0: nothing for a rating model to fit)."""

    def make_model(self) -> Recommender:
        return BiasedMF(BiasedMFConfig(factors=4, iterations=5, seed=0))


def test_registered_under_its_name() -> None:
    assert model_class("biased_mf") is BiasedMF


def test_predictions_are_clipped_to_the_training_range() -> None:
    data = autorec_tests.low_rank()
    model = BiasedMF(factors=4, iterations=5)
    model.fit(data)
    users, items = np.arange(data.vocab.n_users), np.arange(data.vocab.n_items)
    scores = model._scores(users, items)
    ratings = data.split.train["rating"]
    assert scores.min() >= ratings.min() and scores.max() <= ratings.max()
