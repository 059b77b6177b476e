"""Weighted ALS (issue 17): the Recommender contract, confidence weighting, cold start, threads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.errors import ConfigError
from recsys.models.als import ALS, ALSConfig, confidence_matrix
from recsys.models.base import Recommender
from recsys.schema import IMPLICIT, INTERACTION_DTYPES, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from tests.recsys.test_models_contract import RecommenderContract, synthetic_data

BLOCK = 10
GROUP = 20
HEAVY = 40.0
COLD_USER = 99


class TestALS(RecommenderContract):
    def make_model(self) -> Recommender:
        return ALS(factors=8, iterations=15, regularization=0.1, seed=5)


def two_blocks(heavy_item: int) -> Processed:
    """Two user groups of ``GROUP`` users, each playing every item of its own block of
    ``BLOCK`` items once; user 0 played items 1-3 (block A) and 11-13 (block B) once each,
    except ``heavy_item``, played ``HEAVY`` times. Each group user's last item is its test row;
    user ``COLD_USER``'s only interaction is its test row (no training history)."""
    rows = []
    for u in range(1, 2 * GROUP + 1):
        first = 1 if u <= GROUP else BLOCK + 1
        rows += [(u, first + j, 1.0) for j in range(BLOCK)]
    rows += [(0, i, HEAVY if i == heavy_item else 1.0) for i in (1, 2, 3, 11, 12, 13)]
    rows.append((COLD_USER, 5, 1.0))
    inter = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID, RATING])
    inter[TIMESTAMP] = np.arange(len(inter))
    inter = inter.astype(INTERACTION_DTYPES)
    users = np.arange(1, 2 * GROUP + 1)
    test = pd.DataFrame({USER_ID: users, ITEM_ID: np.where(users <= GROUP, BLOCK, 2 * BLOCK)})
    test = pd.concat([test, pd.DataFrame({USER_ID: [COLD_USER], ITEM_ID: [5]})])
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    dataset = Dataset(inter, name="two-blocks", feedback=IMPLICIT, rating_scale=None)
    return preprocess(dataset, cfg, test_pairs=test)


@pytest.mark.parametrize(("heavy_item", "block"), [(1, range(4, 11)), (11, range(14, 21))])
def test_the_heavier_played_block_comes_first(heavy_item: int, block: range) -> None:
    """Confidence weighting: a user torn between two blocks leans to the one it played more;
    with the strength ignored (binary) the same user is split evenly between them."""
    data = two_blocks(heavy_item)
    # Two factors: one per block (more would give user 0's six items a direction of their own).
    fields = {"factors": 2, "iterations": 15, "regularization": 0.1, "alpha": 1.0, "seed": 3}
    weighted = ALS(**fields, confidence="linear")
    weighted.fit(data)
    ids, _ = weighted.recommend([0], k=5)
    assert np.isin(ids[0], list(block)).all(), ids[0]
    binary = ALS(**fields, confidence="binary")
    binary.fit(data)
    pair_a = binary.score([0, 0], [4, 14])  # one unseen item of each block
    weighted_a = weighted.score([0, 0], [4, 14])
    # The heavy play moves the weighted model's preference far more than the binary one's.
    assert abs(weighted_a[0] - weighted_a[1]) > 3 * abs(pair_a[0] - pair_a[1])


def test_confidence_matrix_follows_the_config() -> None:
    strength = sp.csr_matrix(np.array([[0.0, 1.0, 9.0], [3.0, 0.0, 0.0]], dtype=np.float32))
    r = np.array([1.0, 9.0, 3.0])  # stored values in CSR order
    cases = {
        "linear": 1 + 2.0 * r,
        "log": 1 + 2.0 * np.log1p(r / 0.5),
        "binary": np.full(3, 3.0),
    }
    for kind, want in cases.items():
        got = confidence_matrix(strength, ALSConfig(alpha=2.0, epsilon=0.5, confidence=kind))  # type: ignore[arg-type]
        np.testing.assert_allclose(got.data, want, rtol=1e-6)
        np.testing.assert_array_equal(got.indices, strength.indices)


def test_cold_users_get_the_popularity_order() -> None:
    data = two_blocks(1)
    assert not data.split.user_in_train(data.vocab.n_users)[data.vocab.encode_users([COLD_USER])]
    model = ALS(factors=2, iterations=5, seed=1)
    model.fit(data)
    ids, scores = model.recommend([COLD_USER], k=8)
    counts = data.split.train[ITEM_ID].value_counts()
    np.testing.assert_array_equal(scores[0], counts.loc[ids[0]].to_numpy(np.float32))
    assert (np.diff(scores[0]) <= 0).all() and scores[0][0] == counts.max()


def test_cold_items_have_zero_vectors() -> None:
    data = synthetic_data()
    model = ALS(factors=8, iterations=5, seed=1)
    model.fit(data)
    assert model.item_factors is not None
    cold = ~data.split.item_in_train(data.vocab.n_items)
    assert cold.any()
    assert not model.item_factors[cold].any()
    assert model.item_factors[~cold].any(axis=1).all()


def test_thread_count_does_not_change_the_factors() -> None:
    data = synthetic_data()
    one, two = ALS(factors=8, iterations=5, num_threads=1), ALS(factors=8, iterations=5)
    one.fit(data)
    two.fit(data)
    assert one.user_factors is not None and two.user_factors is not None
    np.testing.assert_array_equal(one.user_factors, two.user_factors)


@pytest.mark.parametrize(
    "fields",
    [{"factors": 0}, {"alpha": 0.0}, {"confidence": "sqrt"}, {"num_threads": -1}, {"epsilon": 0}],
)
def test_bad_settings_are_config_errors(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ALS(**fields)
