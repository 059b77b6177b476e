"""Classic baselines: exact numbers on a 4 x 5 matrix, and REFERENCE.md on ml100k-u1.

The benchmark tests score NDCG@10 with a local implementation of PROTOCOL.md's definition
(``ndcg_at_10`` below), so they depend on nothing but the model and the split files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed, preprocess
from recsys.data.sources import read_ratings_file
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender
from recsys.models.baselines import (
    EASE,
    EASEConfig,
    ItemKNN,
    ItemKNNConfig,
    MostPopular,
    ease_from_gram,
    tune_ease_lambda,
)
from recsys.models.bpr import BPRMF, BPRConfig, sample_negatives
from recsys.models.ease_solve import EASESolver
from recsys.models.negatives import NegativeSampler
from recsys.schema import IMPLICIT, INTERACTION_DTYPES, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

X = np.array(
    [
        [1, 1, 0, 0, 1],
        [1, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 0, 1, 0],
    ],
    dtype=np.float64,
)
"""Users 1..4 x items 1..5 (raw id = index + 1). Item counts 3, 3, 2, 2, 1."""


def held_out_as_val(data: Processed, held_out: pd.DataFrame) -> InteractionSplit:
    """``data``'s split with the training rows ``held_out`` moved to validation."""
    return InteractionSplit(
        train=data.split.train.drop(held_out.index).reset_index(drop=True),
        val=held_out.reset_index(drop=True),
        test=data.split.test,
        negatives=None,
        val_negatives=None,
        method="predefined",
        seed=0,
    )


def from_matrix(
    x: np.ndarray,
    ratings: np.ndarray | None = None,
    *,
    feedback: str = "explicit",
    test: Sequence[tuple[int, int]] = (),
) -> Processed:
    """Every nonzero of ``x`` as a training row (user idx + 1, item idx + 1), plus ``test``
    raw (user, item) pairs as the test split."""
    u, i = np.nonzero(x)
    t_u = np.array([p[0] for p in test], dtype=np.int64)
    t_i = np.array([p[1] for p in test], dtype=np.int64)
    inter = pd.DataFrame(
        {
            USER_ID: np.r_[u + 1, t_u],
            ITEM_ID: np.r_[i + 1, t_i],
            RATING: np.r_[
                np.full(len(u), 5.0) if ratings is None else ratings[u, i], [1.0] * len(test)
            ],
            TIMESTAMP: 1_000 + np.arange(len(u) + len(test)),
        }
    ).astype(INTERACTION_DTYPES)
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    test_pairs = pd.DataFrame({USER_ID: t_u, ITEM_ID: t_i})
    dataset = Dataset(
        inter, name="tiny", feedback=feedback, rating_scale=None if feedback == IMPLICIT else (1, 5)
    )
    return preprocess(dataset, cfg, test_pairs=test_pairs)


def all_scores(model: Recommender, n_users: int, n_items: int) -> np.ndarray:
    """[n_users, n_items] model.score of every pair (raw ids = index + 1)."""
    users = np.repeat(np.arange(1, n_users + 1), n_items)
    items = np.tile(np.arange(1, n_items + 1), n_users)
    return model.score(users, items).reshape(n_users, n_items)


# --- exact small examples -------------------------------------------------------------------
def test_ease_matches_the_closed_form() -> None:
    l2 = 2.0
    model = EASE(l2=l2)
    model.fit(from_matrix(X))
    p = np.linalg.inv(X.T @ X + l2 * np.eye(5))
    b = np.eye(5) - p @ np.diag(1.0 / np.diag(p))
    np.testing.assert_allclose(np.diag(b), 0.0, atol=1e-12)
    assert model.weights is not None
    np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(all_scores(model, 4, 5), X @ b, rtol=1e-5, atol=1e-6)


def test_ease_from_gram_solves_any_psd_item_matrix_and_leaves_it_alone() -> None:
    # A time-weighted or otherwise reweighted Gram matrix in place of X'X (issue 3's probe).
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 5))
    gram = X.T @ X + a.T @ a
    before = gram.copy()
    b = ease_from_gram(gram, 3.0)
    np.testing.assert_array_equal(gram, before)
    p = np.linalg.inv(gram + 3.0 * np.eye(5))
    expected = np.eye(5) - p @ np.diag(1.0 / np.diag(p))
    np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-6)
    assert b.dtype == np.float32 and np.all(np.diag(b) == 0.0)


def closed_form(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck's B in float64, straight from the definition."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


@pytest.mark.parametrize(("n_users", "n_items"), [(40, 90), (90, 40), (50, 50)])
def test_ease_dual_and_primal_forms_equal_the_closed_form(n_users: int, n_items: int) -> None:
    rng = np.random.default_rng(n_users)
    x = (rng.random((n_users, n_items)) < 0.12).astype(np.float64)
    x[[2, 7]] = 0.0  # users without a training row do not count as users
    assert EASESolver(sp.csr_matrix(x)).dual == (n_users - 2 < n_items / 2)
    for dual in (True, False):
        solver = EASESolver(sp.csr_matrix(x), dual=dual)
        for l2 in (0.3, 4.0, 300.0):
            expected = closed_form(x, l2)
            np.testing.assert_allclose(solver.weights(l2), expected, rtol=1e-4, atol=1e-6)
            got = solver.scores(sp.csr_matrix(x[:12]), l2)  # the search's path: no B formed
            np.testing.assert_allclose(got, x[:12] @ expected, rtol=1e-4, atol=1e-6)


def test_tune_ease_lambda_solves_once_and_scores_as_a_fitted_ease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((12, 30)) < 0.3).astype(np.float64)
    x[:, :2] = 1.0  # every user has a row to hold out
    data = from_matrix(x)
    split = held_out_as_val(data, data.split.train.groupby(USER_ID).head(1))
    built: list[EASESolver] = []

    class Counted(EASESolver):
        def __init__(self, matrix: sp.csr_matrix) -> None:
            super().__init__(matrix)
            built.append(self)

    monkeypatch.setattr("recsys.models.baselines.EASESolver", Counted)
    users, items = np.arange(1, 13), np.arange(1, 31)
    gaps: dict[float, float] = {}

    def evaluate(
        model: Recommender, train: pd.DataFrame, test: pd.DataFrame, ks: tuple[int, ...]
    ) -> SimpleNamespace:
        assert isinstance(model, EASE) and model.weights is None  # B never formed
        fresh = EASE(l2=model.config.l2)
        fresh.fit(data, split)
        got, want = (m.score(np.repeat(users, 30), np.tile(items, 12)) for m in (model, fresh))
        gaps[model.config.l2] = float(np.abs(got - want).max())
        return SimpleNamespace(metrics={"ndcg@10": -abs(model.config.l2 - 3.0)})

    result = tune_ease_lambda(data, split, [1.0, 3.0, 30.0], evaluate)
    assert result.best_l2 == 3.0
    assert len(built) == 1 + 3  # one for the grid, one per reference fit in ``evaluate``
    assert max(gaps.values()) < 1e-5


def test_ease_scores_items_outside_training_zero() -> None:
    data = from_matrix(X, test=[(1, 6)])  # item 6 only in the test split
    assert (data.vocab.n_items, int(data.split.item_in_train(6).sum())) == (6, 5)
    model = EASE(l2=2.0)
    model.fit(data)
    assert model.items is not None and model.items.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(model.score([1, 2], [6, 6]), [0.0, 0.0])
    np.testing.assert_allclose(
        all_scores(model, 4, 6)[:, :5], all_scores(_fitted_ease(2.0), 4, 5), rtol=1e-6
    )
    ids, _ = model.recommend([1], k=1, candidates=np.array([6]))
    np.testing.assert_array_equal(ids, [[6]])


def _fitted_ease(l2: float) -> EASE:
    model = EASE(l2=l2)
    model.fit(from_matrix(X))
    return model


def test_itemknn_cosine_by_hand() -> None:
    # Co-occurrences: (1,2): users 1,4 -> 2; (2,4): users 3,4 -> 2; every other pair <= 1.
    # cos(1,2) = 2/3, cos(2,4) = 2/sqrt(6), cos(1,5) = cos(2,5) = 1/sqrt(3), cos(3,4) = 1/2,
    # cos(1,3) = cos(1,4) = cos(2,3) = 1/sqrt(6), cos(3,5) = cos(4,5) = 0.
    model = ItemKNN(k=5)
    model.fit(from_matrix(X))
    s = all_scores(model, 4, 5)
    # User 2 saw items 1 and 3.
    assert s[1, 1] == pytest.approx(2 / 3 + 1 / math.sqrt(6), rel=1e-6)  # item 2
    assert s[1, 3] == pytest.approx(1 / math.sqrt(6) + 1 / 2, rel=1e-6)  # item 4
    assert s[1, 4] == pytest.approx(1 / math.sqrt(3), rel=1e-6)  # item 5
    assert s[1, 0] == pytest.approx(1 / math.sqrt(6), rel=1e-6)  # item 1: only item 3 counts


def test_itemknn_keeps_k_neighbours_of_the_target_item() -> None:
    # k=1: N(1) = {2}, N(2) = {4}, N(3) = {4}, N(4) = {2}, N(5) = {1} (tie with 2: lower index).
    model = ItemKNN(k=1)
    model.fit(from_matrix(X))
    s = all_scores(model, 4, 5)
    assert s[1, 4] == pytest.approx(1 / math.sqrt(3), rel=1e-6)  # item 5 via item 1
    assert s[1, 1] == 0.0 and s[1, 3] == 0.0  # their one neighbour (item 4 / item 2) unseen
    ids, scores = model.recommend([2], k=3)
    np.testing.assert_array_equal(ids, [[5, 2, 4]])  # 0-score tie: lower id first
    assert scores[0, 0] == pytest.approx(1 / math.sqrt(3), rel=1e-6)


def test_itemknn_shrink_damps_similarity() -> None:
    model = ItemKNN(k=5, shrink=3.0)
    model.fit(from_matrix(X))
    # User 4 saw items 1, 2, 4; score of item 5 = sim(5,1) + sim(5,2) = 2 * 1 / (sqrt(3) + 3).
    assert all_scores(model, 4, 5)[3, 4] == pytest.approx(2 / (math.sqrt(3) + 3), rel=1e-6)


def test_most_popular_counts_and_ties() -> None:
    model = MostPopular()
    model.fit(from_matrix(X))
    np.testing.assert_array_equal(all_scores(model, 4, 5)[0], [3, 3, 2, 2, 1])
    ids, scores = model.recommend([1], k=5, exclude_seen=False)
    np.testing.assert_array_equal(ids, [[1, 2, 3, 4, 5]])  # ties 1/2 and 3/4: lower id first
    np.testing.assert_array_equal(scores, [[3, 3, 2, 2, 1]])
    ids, scores = model.recommend([3], k=3)  # user 3 saw items 2, 3, 4
    np.testing.assert_array_equal(ids, [[1, 5, -1]])
    assert scores[0, 2] == -np.inf


@pytest.mark.parametrize(
    "make",
    [MostPopular, lambda: ItemKNN(k=3), lambda: EASE(l2=1.0), lambda: BPRMF(epochs=3, seed=1)],
    ids=["mostpop", "itemknn", "ease", "bpr"],
)
def test_rating_values_do_not_matter(make: Any) -> None:
    """Explicit ratings and implicit counts alike: every training row is one positive."""
    ratings = np.arange(1, X.size + 1, dtype=np.float64).reshape(X.shape) % 5 + 1
    scores = []
    for data in (
        from_matrix(X),
        from_matrix(X, ratings),
        from_matrix(X, ratings * 3, feedback=IMPLICIT),
    ):
        model = make()
        model.fit(data)
        assert model.feedback == data.feedback
        scores.append(all_scores(model, 4, 5))
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])


def test_bpr_negatives_are_never_training_items() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((3, 6), dtype=bool)
    x[0, :5] = True  # user 0: one never-seen item (5)
    x[1, [0, 2]] = True
    x[2, :] = True  # user 2 saw the whole pool: no negative exists
    users = np.repeat([0, 1, 2], 200)
    neg, valid = sample_negatives(NegativeSampler(sp.csr_matrix(x)), users, rng)
    assert not x[users[valid], neg[valid]].any()
    assert valid[users != 2].all() and not valid[users == 2].any()
    # The shared sampler is exact: user 0's one never-seen item every time (issue #16 replaced
    # BPR's rejection sampler, which masked ~15 % of user 0's draws after 10 redraws).
    assert (neg[users == 0] == 5).all()
    assert set(neg[users == 1].tolist()) == {1, 3, 4, 5}  # uniform over the rest: all drawn


def test_bpr_seed_changes_the_model_and_embeddings_are_item_factors() -> None:
    data = from_matrix(X)
    a, b = BPRMF(factors=4, epochs=5, seed=1), BPRMF(factors=4, epochs=5, seed=2)
    a.fit(data)
    b.fit(data)
    assert a.item_factors is not None and b.item_factors is not None
    assert not np.array_equal(a.item_factors, b.item_factors)
    assert a.item_embeddings() is a.item_factors and a.item_factors.shape == (5, 4)
    assert a.train_result is not None and len(a.train_result.history["loss"]) == 5
    assert a.train_result.seed == 1 and a.n_parameters() == 4 * 4 + 5 * 4 + 5


def test_configs_are_strict() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        EASE(lambda_=3.0)
    with pytest.raises(ConfigError):
        ItemKNN(k="ten")
    with pytest.raises(ConfigError):
        ItemKNN(k=0)
    with pytest.raises(ValueError):
        BPRConfig(factors=0)
    assert EASE(EASEConfig(l2=7.0)).config_dict() == {"l2": 7.0}
    assert EASE(EASEConfig(l2=7.0), l2=8.0).config_dict() == {"l2": 8.0}
    assert ItemKNN(ItemKNNConfig(k=3)).config.k == 3
    assert BPRMF(factors=8).seed == BPRConfig().seed


def test_tune_ease_lambda_picks_the_best_and_breaks_ties_low() -> None:
    data = from_matrix(X)
    calls: list[tuple[float, int, tuple[int, ...]]] = []

    def fake_evaluate(
        model: Recommender, train: pd.DataFrame, test: pd.DataFrame, ks: tuple[int, ...]
    ) -> SimpleNamespace:
        assert isinstance(model, EASE)
        calls.append((model.config.l2, len(test), ks))
        value = {1.0: 0.1, 10.0: 0.3, 100.0: 0.3}[model.config.l2]
        return SimpleNamespace(metrics={"ndcg@10": value})

    split = held_out_as_val(data, data.split.train.iloc[:3])
    result = tune_ease_lambda(data, split, [100.0, 1.0, 10.0], fake_evaluate)
    assert result.best_l2 == 10.0
    assert result.scores == {1.0: 0.1, 10.0: 0.3, 100.0: 0.3}
    assert calls == [(1.0, 3, (10,)), (10.0, 3, (10,)), (100.0, 3, (10,))]
    with pytest.raises(DataError):
        tune_ease_lambda(data, data.split, [1.0], fake_evaluate)  # no val, empty test
    with pytest.raises(ConfigError):
        tune_ease_lambda(data, split, [], fake_evaluate)


# --- ml100k-u1 against REFERENCE.md ---------------------------------------------------------
def load_benchmark(directory: Path, train_file: str, test_file: str) -> Processed:
    """A benchmark split as a ``Processed``: train + test files, test rows predefined."""
    train = read_ratings_file(directory / train_file)
    test = read_ratings_file(directory / test_file)
    dataset = Dataset(interactions=pd.concat([train, test], ignore_index=True), name="ml100k-u1")
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    return preprocess(dataset, cfg, test_pairs=test)


def ndcg_at_10(
    model: Recommender, data: Processed, train: pd.DataFrame, test: pd.DataFrame
) -> float:
    """PROTOCOL.md's full-ranking NDCG@10: candidates = training items, the user's training
    items excluded, users with a test row and a training row; test items absent from training
    still count in the ideal DCG."""
    n_items = data.vocab.n_items
    users = np.intersect1d(test[USER_IDX].unique(), train[USER_IDX].unique())
    ids, _ = model.recommend(data.vocab.user_ids[users], k=10)
    idx = np.where(ids >= 0, data.vocab.encode_items(ids.ravel()).reshape(ids.shape), -1)
    relevant = test[USER_IDX].to_numpy() * n_items + test[ITEM_IDX].to_numpy()
    rel = np.isin(users[:, None] * n_items + idx, relevant) & (idx >= 0)
    n_relevant = np.bincount(test[USER_IDX], minlength=data.vocab.n_users)[users]
    discount = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(discount)[np.minimum(n_relevant, 10) - 1]
    return float(((rel * discount).sum(axis=1) / ideal).mean())


@pytest.fixture(scope="module")
def u1(bench_splits_dir: Path) -> Processed:
    data = load_benchmark(bench_splits_dir / "ml100k-u1", "train.tsv", "test.tsv")
    assert (len(data.split.train), len(data.split.test)) == (80_000, 20_000)
    assert data.split.info["cold_test_rows"] == 32  # PROTOCOL.md: test rows of unseen items
    return data


def fit_and_score(model: Recommender, data: Processed, record: Any) -> float:
    result = model.fit(data)
    ndcg = ndcg_at_10(model, data, data.split.train, data.split.test)
    record("ndcg@10", round(ndcg, 4))
    record("fit_seconds", result.fit_seconds)
    print(f"\n{model.name}: ndcg@10 {ndcg:.4f}, fit {result.fit_seconds:.3f} s")
    return ndcg


@pytest.mark.shared
def test_u1_evaluated_users(u1: Processed) -> None:
    train_users = u1.split.user_in_train(u1.vocab.n_users)
    test_users = np.unique(u1.split.test[USER_IDX])
    assert train_users[test_users].sum() == 459  # REFERENCE.md: 459 evaluated users
    assert u1.split.item_in_train(u1.vocab.n_items).sum() == 1650


@pytest.mark.shared
def test_u1_mostpop(u1: Processed, record_property: Any) -> None:
    assert fit_and_score(MostPopular(), u1, record_property) == pytest.approx(0.3254, abs=5e-4)


@pytest.mark.shared
def test_u1_ease(u1: Processed, record_property: Any) -> None:
    model = EASE(l2=500.0)
    ndcg = fit_and_score(model, u1, record_property)
    assert ndcg == pytest.approx(0.5652, abs=2e-3)
    # The dual (Woodbury) form ranks as the primal one, to NDCG@10's fourth decimal.
    x = sp.csr_matrix(model._seen_matrix())[:, model._trained(model.items)]
    x.data[:] = 1.0
    model.weights = EASESolver(x, dual=True).weights(500.0)
    assert ndcg_at_10(model, u1, u1.split.train, u1.split.test) == pytest.approx(ndcg, abs=5e-5)


@pytest.mark.shared
def test_u1_itemknn(u1: Processed, record_property: Any) -> None:
    ndcg = fit_and_score(ItemKNN(k=100), u1, record_property)
    assert ndcg == pytest.approx(0.4921, abs=1e-2)


@pytest.mark.shared
def test_u1_bpr(u1: Processed, record_property: Any) -> None:
    assert fit_and_score(BPRMF(), u1, record_property) >= 0.45


@pytest.mark.shared
def test_ease_lambda_tuned_on_u1_validation(bench_splits_dir: Path) -> None:
    """REFERENCE.md's lambda = 500 comes back from the validation files."""
    val = load_benchmark(bench_splits_dir / "ml100k-u1", "val_train.tsv", "val_test.tsv")

    def evaluate(
        model: Recommender, train: pd.DataFrame, test: pd.DataFrame, ks: tuple[int, ...]
    ) -> SimpleNamespace:
        return SimpleNamespace(metrics={"ndcg@10": ndcg_at_10(model, val, train, test)})

    result = tune_ease_lambda(val, val.split, [100.0, 250.0, 500.0, 1000.0, 2000.0], evaluate)
    print(f"\nease lambda grid on u1 validation: {result.scores}")
    assert result.best_l2 == 500.0
