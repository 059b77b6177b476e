"""DeepContent, Hybrid and TwoTower: the shared contract, cold items ranked by content, the
in-batch softmax with logQ correction, the fast scorers against Keras, save/load, resume."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.errors import ConfigError, RecsysError
from recsys.models import towers
from recsys.models.base import Recommender
from recsys.models.content import MODEL_FILE, DeepContent, DeepContentConfig
from recsys.models.hybrid import Hybrid, HybridConfig
from recsys.models.registry import model_class
from recsys.models.tuning import TuningRequest
from recsys.models.twotower import (
    MASKED_LOGIT,
    InBatchSoftmax,
    TwoTower,
    TwoTowerConfig,
    catalogue_softmax_loss,
    in_batch_softmax_loss,
)
from recsys.schema import GENRES, INTERACTION_DTYPES, ITEM_ID, RATING, TIMESTAMP, TITLE, USER_ID
from recsys.schema import Dataset as RawDataset
from recsys.train import PointwiseEpochs, TrainingError, to_numpy
from tests.conftest import REPO
from tests.recsys.test_models_contract import RecommenderContract, float32_tolerance

SMALL: dict[str, Any] = {
    "embedding_dim": 16,
    "token_dim": 8,
    "item_hidden_units": [32],
    "user_hidden_units": [32],
    "batch_size": 128,
    "learning_rate": 0.01,
    "seed": 0,
}
CONTENT = {**SMALL, "head_units": [16], "epochs": 6}
HYBRID = {**CONTENT, "id_dim": 8, "tower_id_dim": 4, "id_dropout": 0.3, "id_l2": 1e-3}
HYBRID_SOFTMAX = {
    **HYBRID,
    "objective": "softmax",
    "head_units": [],
    "batch_size": 32,
    "normalize": True,
    "temperature": 0.2,
}
TWOTOWER = {**SMALL, "id_dim": 8, "epochs": 15, "batch_size": 64}
TWOTOWER_CATALOGUE = {**TWOTOWER, "negatives": "catalogue"}
CONTENT_CATALOGUE = {**CONTENT, "objective": "catalogue", "head_units": [], "temperature": 0.5}
HYBRID_CATALOGUE = {**HYBRID_SOFTMAX, "objective": "catalogue", "batch_size": 64}

N_PER_GROUP, WARM_PER_GENRE, COLD_PER_GENRE = 20, 12, 3


# --- a world where content decides --------------------------------------------------------------
def genre_world(seed: int = 0) -> Processed:
    """Users 1..20 watch comedies, users 21..40 dramas (8 of the 12 warm ones of their genre,
    at random). Every comedy's title holds "laugh", every drama's "tears", plus a word of its
    own. Three comedies and three dramas (ids 25..30) are in the catalogue but never watched:
    cold items whose content says which group they suit."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(2 * N_PER_GROUP):
        group = u // N_PER_GROUP
        own = np.arange(WARM_PER_GENRE) + group * WARM_PER_GENRE
        for i in rng.choice(own, size=8, replace=False):
            rows.append((u + 1, int(i) + 1))
    inter = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID])
    inter[RATING] = 4.0
    inter[TIMESTAMP] = 1_000_000 + np.arange(len(inter))
    inter = inter.astype(INTERACTION_DTYPES)
    n_warm = 2 * WARM_PER_GENRE
    ids = np.arange(1, n_warm + 2 * COLD_PER_GENRE + 1)
    comedy = np.r_[
        np.ones(WARM_PER_GENRE, bool),
        np.zeros(WARM_PER_GENRE, bool),
        np.ones(COLD_PER_GENRE, bool),
        np.zeros(COLD_PER_GENRE, bool),
    ]
    items = pd.DataFrame(
        {
            ITEM_ID: ids,
            TITLE: [
                f"{'Laugh' if c else 'Tears'} Word{i} ({1980 + i})"
                for i, c in zip(ids, comedy, strict=True)
            ],
            GENRES: np.where(comedy, "Comedy", "Drama"),
        }
    )
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="random_holdout", test_fraction=0.2, val_fraction=0.0, seed=0),
    )
    return preprocess(RawDataset(inter, items=items, name="genre-world"), cfg)


COLD_COMEDIES = np.arange(2 * WARM_PER_GENRE + 1, 2 * WARM_PER_GENRE + COLD_PER_GENRE + 1)
COLD_DRAMAS = COLD_COMEDIES + COLD_PER_GENRE


@pytest.fixture(scope="module")
def world() -> Processed:
    return genre_world()


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (DeepContent, CONTENT),
        (Hybrid, HYBRID),
        (Hybrid, HYBRID_SOFTMAX),
        (TwoTower, TWOTOWER),
    ],
    ids=["content", "hybrid", "hybrid-softmax", "twotower"],
)
def test_cold_items_are_ranked_by_their_content(
    cls: type[Recommender], fields: dict[str, Any], world: Processed
) -> None:
    model = cls(**{**fields, "epochs": 10})
    model.fit(world)
    cold = np.r_[COLD_COMEDIES, COLD_DRAMAS]
    assert not world.split.item_in_train(world.vocab.n_items)[model.encode_items(cold)].any()
    users = world.vocab.user_ids
    scores = np.stack([model.score(np.full(len(cold), u), cold) for u in users])
    assert np.isfinite(scores).all()
    assert (scores.std(axis=1) > 1e-6).all(), "cold items all scored alike"
    k = COLD_PER_GENRE
    comedy, drama = scores[:, :k].mean(axis=1), scores[:, k:].mean(axis=1)
    fans = users <= N_PER_GROUP  # comedy watchers
    assert (comedy[fans] > drama[fans]).mean() >= 0.9
    assert (drama[~fans] > comedy[~fans]).mean() >= 0.9
    # And the ranking over the whole catalogue reaches them.
    ids, _ = model.recommend(users, k=3, candidates=cold)
    own = np.where(fans[:, None], np.isin(ids, COLD_COMEDIES), np.isin(ids, COLD_DRAMAS))
    assert own.mean() >= 0.9


# --- the contract -------------------------------------------------------------------------------
class TestDeepContent(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return DeepContent(DeepContentConfig(**{**CONTENT, "head_units": (16,)}))


class TestHybrid(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return Hybrid(**HYBRID)


class TestHybridSoftmax(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return Hybrid(**HYBRID_SOFTMAX)


class TestTwoTower(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return TwoTower(**TWOTOWER)


class TestTwoTowerCatalogue(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return TwoTower(**TWOTOWER_CATALOGUE)


class TestHybridCatalogue(RecommenderContract):
    cold_start = True

    def make_model(self) -> Recommender:
        return Hybrid(**HYBRID_CATALOGUE)


# --- trained models of the genre world (one per class, shared by the tests below) --------------
@pytest.fixture(scope="module")
def content_model(world: Processed) -> DeepContent:
    model = DeepContent(**CONTENT)
    model.fit(world)
    return model


@pytest.fixture(scope="module")
def hybrid_model(world: Processed) -> Hybrid:
    model = Hybrid(**HYBRID)
    model.fit(world)
    return model


@pytest.fixture(scope="module")
def twotower_model(world: Processed) -> TwoTower:
    model = TwoTower(**TWOTOWER)
    model.fit(world)
    return model


def unseen_pairs(model: Recommender) -> tuple[np.ndarray, np.ndarray]:
    seen = model._seen_matrix().toarray() > 0
    return np.nonzero(~seen)


@pytest.mark.parametrize("which", ["content_model", "hybrid_model"])
def test_fast_scores_equal_keras_predict(which: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    vocab = model._vocab()
    fast = model._scores(np.arange(vocab.n_users), np.arange(vocab.n_items))
    assert fast.shape == (vocab.n_users, vocab.n_items) and fast.dtype == np.float32
    users, items = unseen_pairs(model)
    slow = model._predict_pairs(users, items)
    np.testing.assert_allclose(fast[users, items], slow, rtol=1e-5, atol=1e-5)
    # A block of users against items in any order matches too.
    sub_u, sub_i = np.array([5, 1, 7]), np.array([9, 0, 3, 3, 29])
    block = model._scores(sub_u, sub_i)
    # Same pairs in a smaller batch: equal up to float32 reordering (the contract's bound).
    np.testing.assert_allclose(block, fast[sub_u][:, sub_i], rtol=0, atol=float32_tolerance(fast))


def test_softmax_hybrid_scores_equal_its_in_batch_logits(world: Processed) -> None:
    model = Hybrid(**HYBRID_SOFTMAX)
    model.fit(world)
    seen = model._seen_matrix().toarray() > 0
    users = np.array([0, 5, 22, 30, 39], dtype=np.int32)
    # Items outside each row's history: the Keras model pools the whole history for them.
    items = np.array([np.flatnonzero(~seen[u])[k] for k, u in enumerate(users)], dtype=np.int32)
    logits = np.asarray(
        model.keras_model.predict({"user": users, "item": items}, batch_size=8, verbose=0)
    )
    softmax = model.net.softmax
    log_q = to_numpy(softmax.log_q)
    unmasked = logits > MASKED_LOGIT / 2
    assert unmasked[np.diag_indices(len(users))].all()
    scores = (logits + log_q[items][None, :]) * softmax.temperature
    fast = model._scores(users, items) - np.float32(model._snapshot().head.bias)
    np.testing.assert_allclose(scores[unmasked], fast[unmasked], rtol=1e-4, atol=1e-4)
    with pytest.raises(RecsysError, match="in-batch"):
        model._predict_pairs(users, items)
    with pytest.raises(ConfigError, match="head_units"):
        Hybrid(objective="softmax", head_units=[8])


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (TwoTower, TWOTOWER_CATALOGUE),
        (DeepContent, CONTENT_CATALOGUE),
        (Hybrid, HYBRID_CATALOGUE),
    ],
    ids=["twotower", "content", "hybrid"],
)
def test_catalogue_logits_are_the_served_scores_with_seen_items_masked(
    cls: Any, fields: dict[str, Any], world: Processed
) -> None:
    model = cls(**{**fields, "epochs": 2})
    model.fit(world)
    seen = model._seen_matrix().toarray() > 0
    n_items = model._vocab().n_items
    users = np.array([0, 5, 22, 30, 39, 0], dtype=np.int32)
    # Items outside each row's history (the Keras model then pools the whole history, as
    # serving does), and in the last row an item user 0 has: its own positive.
    items = [np.flatnonzero(~seen[u])[k] for k, u in enumerate(users[:-1])]
    items = np.array([*items, np.flatnonzero(seen[0])[0]], dtype=np.int32)
    logits = np.asarray(
        model.keras_model.predict({"user": users, "item": items}, batch_size=8, verbose=0)
    )
    assert logits.shape == (len(users), n_items)
    masked = logits == np.float32(MASKED_LOGIT)
    expected = seen[users].copy()
    expected[-1, items[-1]] = False  # a positive is never masked
    np.testing.assert_array_equal(masked, expected)
    fast = model._scores(users[:-1], np.arange(n_items))
    unmasked = ~masked[:-1]
    np.testing.assert_allclose(
        logits[:-1][unmasked] * model.config.temperature, fast[unmasked], rtol=1e-4, atol=1e-4
    )


def test_catalogue_softmax_loss_is_the_cross_entropy_of_each_item() -> None:
    logits = np.array([[2.0, 0.0, -1.0, 0.5], [0.5, 0.5, 3.0, 0.0]], dtype=np.float32)
    items = np.array([3, 1], dtype=np.int32)
    got = to_numpy(catalogue_softmax_loss(items, logits))
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, -log_softmax[np.arange(2), items], rtol=1e-6)


def test_softmax_objectives_need_a_bilinear_content_score() -> None:
    with pytest.raises(ConfigError, match="head_units"):
        DeepContent(objective="catalogue", head_units=[8])
    with pytest.raises(ConfigError, match="objective"):
        DeepContent(objective="pairwise", head_units=[])
    with pytest.raises(ConfigError, match="negatives"):
        TwoTower(negatives="sampled")


def test_pooling_all_users_at_once_equals_pooling_the_batch_rows(
    content_model: DeepContent,
) -> None:
    tower = content_model.net.user_tower
    items = content_model.net.item_tower.encode(None, training=False)
    seen = content_model._seen_matrix().toarray() > 0
    users = np.array([0, 3, 3, 7, 1], dtype=np.int32)
    had = [np.flatnonzero(seen[0])[0], np.flatnonzero(seen[3])[1]]
    unseen = [np.flatnonzero(~seen[u])[0] for u in (3, 7, 1)]
    exclude = np.array([had[0], unseen[0], had[1], unseen[1], unseen[2]], dtype=np.int32)
    before = tower.pool_all_users
    pooled = {}
    try:
        for flag in (False, True):
            tower.pool_all_users = flag
            pooled[flag] = to_numpy(tower.pool(users, items, exclude, training=True))
    finally:
        tower.pool_all_users = before
    np.testing.assert_allclose(pooled[True], pooled[False], rtol=1e-5, atol=1e-6)
    whole = to_numpy(tower.pool(users, items, None, training=True))
    assert not np.allclose(pooled[True][0], whole[0])  # row 0 left its own item out
    np.testing.assert_allclose(pooled[True][1], whole[1], rtol=1e-5, atol=1e-6)


def test_training_pairs_leave_their_item_out_of_the_profile(content_model: DeepContent) -> None:
    tower = content_model.net.user_tower
    vectors = np.random.default_rng(0).normal(size=(tower.n_items, 4)).astype(np.float32)
    seen = content_model._seen_matrix().toarray() > 0
    users = np.arange(6, dtype=np.int32)
    items = np.array([np.flatnonzero(seen[u])[0] for u in users], dtype=np.int32)
    items[-1] = np.flatnonzero(~seen[users[-1]])[0]  # not in the history: nothing to remove
    got = to_numpy(tower.pool(users, vectors, exclude=items))
    for row, (u, i) in enumerate(zip(users, items, strict=True)):
        keep = seen[u].copy()
        keep[i] = False
        np.testing.assert_allclose(got[row], vectors[keep].mean(axis=0), rtol=1e-5, atol=1e-6)
    full = to_numpy(tower.pool(users, vectors))
    np.testing.assert_allclose(
        full, np.stack([vectors[seen[u]].mean(axis=0) for u in users]), rtol=1e-5, atol=1e-6
    )


def test_hybrid_scores_cold_items_by_content_alone(hybrid_model: Hybrid, world: Processed) -> None:
    v = hybrid_model._snapshot()
    cold = hybrid_model.encode_items(np.r_[COLD_COMEDIES, COLD_DRAMAS])
    warm = np.flatnonzero(world.split.item_in_train(world.vocab.n_items))[:5]
    users = np.arange(world.vocab.n_users)
    np.testing.assert_allclose(
        hybrid_model._scores(users, cold), v.head.scores(users, cold), rtol=1e-6, atol=1e-6
    )
    assert not np.allclose(hybrid_model._scores(users, warm), v.head.scores(users, warm))
    gate = hybrid_model.gate_weights()
    assert set(gate) == {"user", "item", "bias"} and all(np.isfinite(list(gate.values())))


def test_twotower_cold_items_ignore_their_id_embedding(twotower_model: TwoTower) -> None:
    tower = twotower_model.net.item_tower
    cold = twotower_model.encode_items(COLD_COMEDIES)
    before = to_numpy(tower.encode(None, training=False))
    table = to_numpy(tower.ids.embeddings)
    try:
        bumped = table.copy()
        bumped[cold] += 5.0
        tower.ids.embeddings.assign(bumped)
        after = to_numpy(tower.encode(None, training=False))
    finally:
        tower.ids.embeddings.assign(table)
    np.testing.assert_array_equal(after[cold], before[cold])


def test_twotower_scores_are_one_matrix_product(twotower_model: TwoTower) -> None:
    vocab = twotower_model._vocab()
    items = twotower_model.item_embeddings()
    assert items is not None and items.shape == (vocab.n_items, TWOTOWER["embedding_dim"])
    users = twotower_model.user_embeddings(np.arange(vocab.n_users))
    assert users.shape == (vocab.n_users, TWOTOWER["embedding_dim"])
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    scores = twotower_model._scores(np.arange(vocab.n_users), np.arange(vocab.n_items))
    np.testing.assert_allclose(scores, users @ items.T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["content_model", "hybrid_model", "twotower_model"])
def test_save_load_gives_identical_scores(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    model = request.getfixturevalue(which)
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / MODEL_FILE).is_file()
    assert not list((tmp_path / "m").rglob("*.pkl"))
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    vocab = model._vocab()
    users, items = np.arange(vocab.n_users), np.arange(vocab.n_items)
    np.testing.assert_array_equal(loaded._scores(users, items), model._scores(users, items))
    np.testing.assert_array_equal(loaded.item_embeddings(), model.item_embeddings())
    assert loaded.n_parameters() == model.n_parameters() > 0


# --- the in-batch softmax -------------------------------------------------------------------------
def test_logq_correction_subtracts_exactly_log_q() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([50.0, 10.0, 5.0, 1.0, 0.0, 34.0])
    ids = np.array([0, 3, 5, 1], dtype=np.int32)  # distinct: nothing masked
    users = rng.normal(size=(4, 3)).astype(np.float32)
    items = rng.normal(size=(4, 3)).astype(np.float32)
    logits = {}
    for on in (True, False):
        layer = InBatchSoftmax(len(counts), temperature=0.5, logq_correction=on)
        layer.build()
        layer.set_log_q(counts)
        logits[on] = to_numpy(layer([users, items, ids]))
    q = counts / counts.sum()
    np.testing.assert_allclose(logits[False], users @ items.T / 0.5, rtol=1e-6)
    expected_shift = np.broadcast_to(-np.log(q[ids]), (4, 4))
    np.testing.assert_allclose(logits[True] - logits[False], expected_shift, rtol=1e-6)


def test_accidental_hits_and_seen_items_are_masked_off_the_diagonal() -> None:
    layer = InBatchSoftmax(4, temperature=1.0)
    layer.build()
    layer.set_log_q(np.ones(4))
    ids = np.array([2, 2, 0, 1], dtype=np.int32)
    vectors = np.eye(4, 3, dtype=np.float32)
    seen = np.zeros((4, 4), dtype=np.float32)
    seen[3, 2] = 1.0  # user of row 3 interacted with the item of column 2
    seen[2, 2] = 1.0  # the diagonal is the label: never masked
    out = to_numpy(layer([vectors, vectors, ids, seen]))
    masked = out == np.float32(MASKED_LOGIT)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 1] = expected[1, 0] = True  # same item twice in the batch
    expected[3, 2] = True
    np.testing.assert_array_equal(masked, expected)


def test_in_batch_softmax_loss_is_the_diagonal_cross_entropy() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    got = to_numpy(in_batch_softmax_loss(np.zeros(3, np.float32), logits))
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, -np.diag(log_softmax), rtol=1e-6)


# --- configs, limits, resume ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "config_cls", "name"),
    [
        (DeepContent, DeepContentConfig, "content"),
        (Hybrid, HybridConfig, "hybrid"),
        (TwoTower, TwoTowerConfig, "twotower"),
    ],
)
def test_config_is_strict_and_round_trips(cls: Any, config_cls: Any, name: str) -> None:
    model = cls(embedding_dim=8, item_hidden_units=[16, 8])
    assert model.config.item_hidden_units == (16, 8)
    assert cls(**model.config_dict()).config == model.config
    assert cls(config_cls(epochs=2)).config.epochs == 2
    assert model_class(name) is cls
    with pytest.raises(ConfigError, match="unknown"):
        cls(embeding_dim=8)
    for bad in ({"dropout": 1.0}, {"embedding_dim": 0}, {"item_hidden_units": [0]}):
        with pytest.raises(ConfigError):
            cls(**bad)


@pytest.mark.parametrize(("cls", "fields"), [(DeepContent, CONTENT), (TwoTower, TWOTOWER)])
def test_a_huge_learning_rate_raises_training_error(
    cls: type[Recommender], fields: dict[str, Any], world: Processed
) -> None:
    overrides: dict[str, Any] = {"learning_rate": 1e30, "epochs": 3}
    if cls is TwoTower:
        overrides["normalize"] = False  # unit vectors would keep the logits finite
    model = cls(**{**fields, **overrides})
    with pytest.raises(TrainingError, match="learning_rate"):
        model.fit(world)


def test_hybrid_rejects_an_id_dropout_of_one() -> None:
    with pytest.raises(ConfigError, match="id_dropout"):
        Hybrid(id_dropout=1.0)


def test_twotower_rejects_a_non_positive_temperature() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        TwoTower(temperature=0.0)


def test_a_history_table_beyond_the_limit_is_refused(
    world: Processed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(towers, "MAX_HISTORY_CELLS", 10)
    with pytest.raises(ConfigError, match="history table"):
        DeepContent(**{**CONTENT, "epochs": 1}).fit(world)


def test_history_table_is_float16_zero_one(content_model: DeepContent) -> None:
    table = to_numpy(content_model.net.user_tower.history)
    assert table.dtype == np.float16
    seen = content_model._seen_matrix().toarray() > 0
    np.testing.assert_array_equal(table, seen.astype(np.float16))
    assert isinstance(content_model._seen_matrix(), sp.csr_matrix)


def test_resume_after_a_crash_equals_an_uninterrupted_fit(
    world: Processed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = {**CONTENT, "epochs": 3, "dropout": 0.1}
    full = DeepContent(**cfg)
    full.fit(world)
    original = PointwiseEpochs.__call__
    crashed = {"done": False}

    def crash_at_epoch_2(self: PointwiseEpochs, epoch: int) -> Any:
        if epoch == 2 and not crashed["done"]:
            crashed["done"] = True
            raise KeyboardInterrupt("simulated crash")
        return original(self, epoch)

    monkeypatch.setattr(PointwiseEpochs, "__call__", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        DeepContent(**cfg).fit(world, checkpoint_dir=tmp_path)
    resumed = DeepContent(**cfg)
    result = resumed.fit(world, checkpoint_dir=tmp_path)
    assert result.extra["resumed_from_epoch"] == 2
    vocab = world.vocab
    users, items = np.arange(vocab.n_users), np.arange(vocab.n_items)
    np.testing.assert_array_equal(resumed._scores(users, items), full._scores(users, items))


def test_models_keep_keras_weights_finite_and_float32(content_model: DeepContent) -> None:
    for v in content_model.keras_model.trainable_variables:
        value = to_numpy(v)
        assert value.dtype == np.float32 and np.isfinite(value).all(), v.path
    assert keras.backend.backend() in ("tensorflow", "jax")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_runs_under_the_jax_backend(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # the JAX machines may have no TensorFlow at all
        import numpy as np
        import keras
        assert keras.backend.backend() == "jax"
        from tests.recsys.test_content_models import (
            CONTENT, HYBRID, HYBRID_SOFTMAX, TWOTOWER, genre_world
        )
        from recsys.models.base import Recommender
        from recsys.models.content import DeepContent
        from recsys.models.hybrid import Hybrid
        from recsys.models.twotower import TwoTower
        data = genre_world()
        for i, (cls, cfg) in enumerate(
            [(DeepContent, CONTENT), (Hybrid, HYBRID), (Hybrid, HYBRID_SOFTMAX),
             (TwoTower, TWOTOWER)]
        ):
            model = cls(**{**cfg, "epochs": 2})
            result = model.fit(data)
            users, items = np.arange(10), np.arange(30)
            fast = model._scores(users, items)
            assert np.isfinite(fast).all()
            model.save(f"{sys.argv[1]}/{i}")
            again = Recommender.load(f"{sys.argv[1]}/{i}")
            np.testing.assert_array_equal(again._scores(users, items), fast)
            print("ok", model.name, result.device, result.epochs)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok hybrid cpu 2") == 2
    for name in ("content", "twotower"):
        assert f"ok {name} cpu 2" in proc.stdout


def test_tune_picks_epochs_on_the_validation_rows(world: Processed) -> None:
    def unused(*_: Any) -> Any:
        raise AssertionError("the towers' tune validates in its fit loop, not with evaluate_fn")

    config = {**CONTENT, "epochs": 3, "patience": 0}
    chosen = DeepContent.tune(TuningRequest(world, world.split, unused, "ndcg@10", config))
    assert set(chosen) == {"epochs"} and 1 <= chosen["epochs"] <= 3
    assert DeepContent.tune(TuningRequest(world, world.split, unused, "neg_rmse", config)) == {}
