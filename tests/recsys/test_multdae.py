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
from recsys.models.histories import (
    ITEMS,
    WEIGHTS,
    HistoryDense,
    input_matrix,
    padded_histories,
)
from recsys.models.multdae import INPUT, MultDAE
from recsys.schema import RATING
from tests.recsys.test_als import COLD_USER, two_blocks
from tests.recsys.test_models_contract import RecommenderContract, synthetic_data


def small() -> MultDAE:
    return MultDAE(hidden_units=(16,), epochs=40, dropout=0.3, learning_rate=5e-3, seed=3)


class TestMultDAE(RecommenderContract):
    def make_model(self) -> Recommender:
        return small()


FORMS = {"padded": 0, "dense": 10**9}
"""``PADDED_RATIO`` that forces each input form (the fit chooses by the data otherwise)."""


def network_input(model: MultDAE, users: np.ndarray) -> dict[str, np.ndarray]:
    """The users' histories in the form ``model``'s network reads."""
    if INPUT in model.keras_model.input:
        return {INPUT: model._input_matrix()[users].toarray()}
    items, weights = padded_histories(model._input_matrix(), users)
    return {ITEMS: items, WEIGHTS: weights}


@pytest.fixture(scope="module", params=sorted(FORMS))
def fitted(request: pytest.FixtureRequest) -> MultDAE:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multdae, "PADDED_RATIO", FORMS[request.param])
        model = MultDAE(hidden_units=(12, 8), epochs=3, seed=1)
        model.fit(synthetic_data())
    assert model.train_result is not None
    assert model.train_result.extra["input"] == request.param
    return model


def test_numpy_scores_equal_the_keras_network(fitted: MultDAE) -> None:
    """The fast scorer (sparse input, numpy layers) is the network's own forward pass, in
    either input form."""
    data = synthetic_data()
    users = np.arange(min(30, data.vocab.n_users))
    keras_logits = np.asarray(fitted.keras_model(network_input(fitted, users), training=False))
    items = np.arange(data.vocab.n_items)
    np.testing.assert_allclose(fitted._scores(users, items), keras_logits, rtol=1e-4, atol=1e-5)


def test_the_two_input_forms_train_the_same_function() -> None:
    """Same seed, same data, no dropout: the padded and the dense network end at the same
    weights (the same gradients, up to the order of floating-point sums)."""
    scores = []
    for ratio in FORMS.values():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(multdae, "PADDED_RATIO", ratio)
            model = MultDAE(hidden_units=(8,), epochs=5, dropout=0.0, seed=4)
            model.fit(synthetic_data())
        scores.append(model._scores(np.arange(10), np.arange(synthetic_data().vocab.n_items)))
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-3, atol=1e-4)


def test_two_hidden_layers_mirror_into_the_decoder(fitted: MultDAE) -> None:
    dense = [layer for layer in fitted.keras_model.layers if layer.name.startswith("dense_")]
    widths = [layer.units for layer in dense]
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
    expected = np.asarray(model.keras_model(network_input(model, cold), training=False))
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


def test_padded_histories_hold_each_users_items_and_weights() -> None:
    """Rows keep their own items and weights, left-aligned, padded with item 0 of weight 0
    (which the first layer and the loss weigh by 0); a user without history is all padding."""
    m = input_matrix(rows([0, 0, 0, 2], [4, 1, 3, 2], [1.0, 9.0, 3.0, 5.0]), 3, 5, "linear", 1.0)
    items, weights = padded_histories(m, np.array([2, 1, 0]))
    assert items.shape == weights.shape == (3, 3)
    assert items.dtype == np.int32 and weights.dtype == np.float32
    np.testing.assert_array_equal(items, [[2, 0, 0], [0, 0, 0], [1, 3, 4]])
    np.testing.assert_allclose(weights, [[6.0, 0, 0], [0, 0, 0], [10.0, 4.0, 2.0]])


def test_the_padded_first_layer_is_a_dense_layer_over_the_full_vector(fitted: MultDAE) -> None:
    """``HistoryDense`` on (items, weights) equals ``x @ kernel + bias`` on the dense vector."""
    layer = fitted.keras_model.get_layer("dense_0")
    if not isinstance(layer, HistoryDense):
        pytest.skip("the dense form's first layer is Keras' own Dense")
    x = fitted._input_matrix()[:20]
    items, weights = padded_histories(fitted._input_matrix(), np.arange(20))
    kernel, bias = np.asarray(layer.kernel.numpy()), np.asarray(layer.bias.numpy())
    expected = np.tanh(x.toarray() @ kernel + bias)
    np.testing.assert_allclose(np.asarray(layer(items, weights)), expected, rtol=1e-5, atol=1e-6)


def test_a_log_too_large_to_hold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multdae, "MAX_CELLS", 100)
    with pytest.raises(DataError, match="exceeds 100 cells") as info:
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
