"""Mult-DAE (issue 17): the Recommender contract, the numpy scorer against the Keras network,
confidence weights, users without history, the dense-size guard and bad settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.preprocess import ITEM_IDX, USER_IDX
from recsys.errors import ConfigError, DataError
from recsys.models import multdae
from recsys.models.base import Recommender
from recsys.models.multdae import INPUT, MultDAE, input_matrix
from recsys.schema import RATING
from tests.recsys.test_als import COLD_USER, two_blocks
from tests.recsys.test_models_contract import RecommenderContract, synthetic_data


def small() -> MultDAE:
    return MultDAE(hidden_units=(16,), epochs=40, dropout=0.3, learning_rate=5e-3, seed=3)


class TestMultDAE(RecommenderContract):
    def make_model(self) -> Recommender:
        return small()


@pytest.fixture(scope="module")
def fitted() -> MultDAE:
    model = MultDAE(hidden_units=(12, 8), epochs=3, seed=1)
    model.fit(synthetic_data())
    return model


def test_numpy_scores_equal_the_keras_network(fitted: MultDAE) -> None:
    """The fast scorer (sparse input, numpy layers) is the network's own forward pass."""
    data = synthetic_data()
    users = np.arange(min(30, data.vocab.n_users))
    x = fitted._input_matrix()[users].toarray()
    keras_logits = np.asarray(fitted.keras_model({INPUT: x}, training=False))
    items = np.arange(data.vocab.n_items)
    np.testing.assert_allclose(fitted._scores(users, items), keras_logits, rtol=1e-4, atol=1e-5)


def test_two_hidden_layers_mirror_into_the_decoder(fitted: MultDAE) -> None:
    widths = [layer.units for layer in fitted.keras_model.layers if layer.name.startswith("dense_")]
    assert widths == [12, 8, 12]


def rows(users: list[int], items: list[int], strength: list[float]) -> pd.DataFrame:
    return pd.DataFrame({USER_IDX: users, ITEM_IDX: items, RATING: strength})


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        ("binary", [1.0, 1.0, 1.0]),
        ("log", [1.0 + 2.0 * np.log1p(1.0), 1.0 + 2.0 * np.log1p(9.0), 1.0 + 2.0 * np.log1p(4.0)]),
        ("linear", [3.0, 19.0, 9.0]),
    ],
)
def test_input_weights_follow_the_confidence(confidence: str, expected: list[float]) -> None:
    """A play count of 9 weighs more than one of 1 (log, linear); binary ignores it; a pair
    logged twice counts once with its summed strength (3 + 1 = 4)."""
    m = input_matrix(rows([0, 0, 1, 1], [2, 0, 1, 1], [1.0, 9.0, 3.0, 1.0]), 2, 3, confidence, 2.0)
    assert m.shape == (2, 3)
    got = [m[0, 2], m[0, 0], m[1, 1]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert m.nnz == 3


def test_a_user_without_history_gets_the_networks_answer_to_nothing() -> None:
    """No user parameter: a user with no training interaction is scored as the network
    scores an all-zero input (finite, the same for every such user)."""
    data = two_blocks(1)
    model = MultDAE(hidden_units=(8,), epochs=20, seed=2)
    model.fit(data)
    cold = data.vocab.encode_users([COLD_USER])
    assert model._input_matrix()[cold].nnz == 0
    items = np.arange(data.vocab.n_items)
    zero = np.zeros((1, data.vocab.n_items), dtype=np.float32)
    expected = np.asarray(model.keras_model({INPUT: zero}, training=False))
    got = model._scores(cold, items)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("heavy_item", "block"), [(1, range(4, 11)), (11, range(14, 21))])
def test_the_heavier_played_block_comes_first(heavy_item: int, block: range) -> None:
    """Confidence weighting: a user torn between two blocks leans to the one it played more
    (linear confidence); with the strength ignored (binary) the lean is much weaker."""
    data = two_blocks(heavy_item)
    fields = {"hidden_units": (8,), "epochs": 150, "dropout": 0.2, "learning_rate": 1e-2,
              "seed": 3}  # fmt: skip
    weighted = MultDAE(**fields, confidence="linear", alpha=1.0)
    weighted.fit(data)
    ids, _ = weighted.recommend([0], k=5)
    assert np.isin(ids[0], list(block)).all(), ids[0]
    binary = MultDAE(**fields, confidence="binary")
    binary.fit(data)
    lean = weighted.score([0, 0], [4, 14])
    even = binary.score([0, 0], [4, 14])
    assert abs(lean[0] - lean[1]) > 3 * abs(even[0] - even[1])


def test_a_matrix_too_large_to_hold_dense_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multdae, "MAX_DENSE_CELLS", 100)
    with pytest.raises(DataError, match="holds the training matrix dense") as info:
        MultDAE(epochs=1).fit(synthetic_data())
    assert "als, ease" in (info.value.fix or "")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_units": []}, "hidden_units"),
        ({"hidden_units": [0]}, "hidden_units"),
        ({"dropout": 1.0}, "dropout"),
        ({"confidence": "square"}, "confidence"),
        ({"l2": -1.0}, "l2"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_settings_are_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MultDAE(**fields)
