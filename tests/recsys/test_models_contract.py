"""The contract every ``Recommender`` honours, run against each model (STYLE.md #12).

A model's test class subclasses ``RecommenderContract`` and overrides ``make_model``; the data
fixtures are methods of the contract, so a test module elsewhere needs only::

    from tests.recsys.test_models_contract import RecommenderContract

    class TestNeuMF(RecommenderContract):
        cold_start = False
        def make_model(self) -> Recommender:
            return NeuMF(NeuMFConfig(epochs=5, seed=0))

The data sets are built once per process (``functools.cache``) and never mutated; the fitted
model is shared by the tests of one class (class-scoped fixture).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recsys.config import PreprocessConfig, SplitConfig, SyntheticConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.data.synthetic import generate
from recsys.errors import RecsysError
from recsys.models.base import Recommender, TrainResult, UnknownIdError
from recsys.models.baselines import EASE, ItemKNN, MostPopular
from recsys.models.bpr import BPRMF
from recsys.models.registry import model_class
from recsys.schema import (
    GENRES,
    INTERACTION_DTYPES,
    ITEM_ID,
    RATING,
    TIMESTAMP,
    TITLE,
    USER_ID,
    Dataset,
)

SYNTHETIC_SEED = 11
N_COLD_ITEMS = 3
"""Items of the synthetic fixture whose interactions are all dropped: in the vocabulary (items
table) but never in training, for the cold-start check and the candidate rules."""
FLOAT32_ULPS = 64
"""Batched and one-at-a-time scores of the same pair may differ in float32: BLAS blocks a
matrix product by its batch size, which reorders the sums. A reordered sum of d products
differs by at most about d * eps * sum(|terms|) (Higham's gamma_d); the deep models' widths
are at most 64 and their terms are of the scores' own scale, so 64 eps of the largest score
of the row bounds it (measured on a 2-core EPYC: up to 3e-8 absolute on scores of scale 2)."""
CHECKER_USERS_PER_GROUP = 24
CHECKER_ITEMS_PER_BLOCK = 12


@functools.cache
def synthetic_data() -> Processed:
    """~2000 synthetic interactions, random 70/10/20 holdout, ``N_COLD_ITEMS`` cold items."""
    dataset = generate(SyntheticConfig(n_interactions=2000, seed=SYNTHETIC_SEED))
    inter = dataset.interactions
    cold = np.sort(inter[ITEM_ID].unique())[-N_COLD_ITEMS:]
    dataset = Dataset(
        interactions=inter[~inter[ITEM_ID].isin(cold)].reset_index(drop=True),
        items=dataset.items,
        users=dataset.users,
        name="contract-synthetic",
    )
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(
            method="random_holdout", test_fraction=0.2, val_fraction=0.1, seed=SYNTHETIC_SEED
        ),
    )
    return preprocess(dataset, cfg)


@functools.cache
def checkerboard_data() -> Processed:
    """Two user groups, each interacting with every item of its own block of items.

    User u (ids 1..2G) is in group g = (u - 1) // G and likes items g*B+1 .. (g+1)*B; one of
    them, ``checkerboard_withheld(u)``, is withheld as the test row (a predefined split), so the
    best unseen item for every user is the withheld one of its own block. Items are all in
    training (each is withheld by G / B users).
    """
    g, b = CHECKER_USERS_PER_GROUP, CHECKER_ITEMS_PER_BLOCK
    users = np.arange(1, 2 * g + 1)
    group = (users - 1) // g
    rows_u = np.repeat(users, b)
    rows_i = (np.repeat(group, b) * b + np.tile(np.arange(b), len(users))) + 1
    inter = pd.DataFrame(
        {
            USER_ID: rows_u,
            ITEM_ID: rows_i,
            RATING: 4.0,
            TIMESTAMP: 1_000_000 + np.arange(len(rows_u)),
        }
    ).astype(INTERACTION_DTYPES)
    items = pd.DataFrame(
        {
            ITEM_ID: np.arange(1, 2 * b + 1),
            TITLE: [f"Block {(i - 1) // b} item {i}" for i in range(1, 2 * b + 1)],
            GENRES: ["Comedy" if i <= b else "Drama" for i in range(1, 2 * b + 1)],
        }
    )
    test = pd.DataFrame({USER_ID: users, ITEM_ID: checkerboard_withheld(users)})
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    return preprocess(Dataset(inter, items=items, name="checkerboard"), cfg, test_pairs=test)


def checkerboard_withheld(users: np.ndarray) -> np.ndarray:
    """[n] raw id of the item withheld from each raw user id of ``checkerboard_data``."""
    users = np.asarray(users)
    group = (users - 1) // CHECKER_USERS_PER_GROUP
    return group * CHECKER_ITEMS_PER_BLOCK + (users - 1) % CHECKER_ITEMS_PER_BLOCK + 1


def train_pairs(data: Processed) -> set[tuple[int, int]]:
    """Raw (user_id, item_id) pairs of the training split."""
    train = data.split.train
    return set(zip(train[USER_ID].tolist(), train[ITEM_ID].tolist(), strict=True))


class RecommenderContract:
    """Behaviour shared by every model; subclasses override ``make_model``."""

    cold_start: ClassVar[bool] = False
    """True for models that score items never seen in training (content, hybrid)."""
    personalized: ClassVar[bool] = True
    """False only for non-personalised baselines, which cannot recover the planted blocks."""

    def make_model(self) -> Recommender:
        raise NotImplementedError

    # --- fixtures (methods, so that subclasses in other modules inherit them) ---------------
    # (pytest wants class-scoped fixtures to be classmethods; make_model needs an instance.)
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Processed:
        return synthetic_data()

    @pytest.fixture(scope="class")
    @classmethod
    def checkerboard(cls) -> Processed:
        return checkerboard_data()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Processed) -> tuple[Recommender, TrainResult]:
        model = cls().make_model()
        return model, model.fit(data)

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, fitted: tuple[Recommender, TrainResult]) -> Recommender:
        return fitted[0]

    @pytest.fixture(scope="class")
    @classmethod
    def users(cls, data: Processed) -> np.ndarray:
        """Raw ids of up to 40 users with training interactions."""
        known = data.split.user_in_train(data.vocab.n_users)
        return data.vocab.user_ids[known][:40]

    # --- fit and config ---------------------------------------------------------------------
    def test_fit_returns_train_result(
        self, fitted: tuple[Recommender, TrainResult], data: Processed
    ) -> None:
        model, result = fitted
        assert isinstance(result, TrainResult)
        assert result.model == model.name
        assert result.fit_seconds >= 0
        assert model.train_result == result
        assert model_class(model.name) is type(model)
        assert model.feedback == data.feedback
        assert model.scores_cold_items == self.cold_start

    def test_config_round_trip(self, model: Recommender) -> None:
        config = model.config_dict()
        assert json.loads(json.dumps(config)) == config
        assert type(model)(**config).config_dict() == config

    def test_unfitted_model_refuses_to_recommend(self) -> None:
        with pytest.raises(RecsysError, match="not trained"):
            self.make_model().recommend([1])

    # --- recommend ----------------------------------------------------------------------------
    def test_recommend_shape_ids_and_order(self, model: Recommender, users: np.ndarray) -> None:
        ids, scores = model.recommend(users, k=10)
        assert ids.shape == scores.shape == (len(users), 10)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        allowed = model.item_ids if model.scores_cold_items else model.train_item_ids
        assert np.isin(ids, allowed).all()
        assert np.isfinite(scores).all()
        assert (np.diff(scores, axis=1) <= 0).all(), "best first"
        assert all(len(set(row)) == len(row) for row in ids.tolist())

    def test_never_recommends_seen_items(
        self, model: Recommender, data: Processed, users: np.ndarray
    ) -> None:
        ids, _ = model.recommend(users, k=30)
        seen = train_pairs(data)
        recommended = {
            (u, i) for u, row in zip(users.tolist(), ids.tolist(), strict=True) for i in row
        }
        assert not recommended & seen

    def test_exclude_seen_false_ranks_every_candidate(
        self, model: Recommender, data: Processed, users: np.ndarray
    ) -> None:
        cand = model.train_item_ids
        ids, scores = model.recommend(users, k=len(cand), exclude_seen=False, candidates=cand)
        np.testing.assert_array_equal(np.sort(ids, axis=1), np.broadcast_to(cand, ids.shape))
        assert np.isfinite(scores).all()
        # With exclusion, the same list loses exactly each user's training items (padded -1).
        ids_ex, scores_ex = model.recommend(users, k=len(cand), candidates=cand)
        n_seen = np.array([len(model.seen_items(u)) for u in users])
        np.testing.assert_array_equal((ids_ex == -1).sum(axis=1), n_seen)
        assert np.isneginf(scores_ex[ids_ex == -1]).all()

    def test_rank_candidates_equals_recommend(self, model: Recommender, users: np.ndarray) -> None:
        """The serving re-ranking (index space) gives ``recommend``'s list over the same
        candidates, whatever their order."""
        rng = np.random.default_rng(0)
        cand = rng.permutation(model.default_candidates())[:25]
        for user in users[:10]:
            ids, scores = model.recommend(
                [user], k=10, exclude_seen=False, candidates=model.item_ids[cand]
            )
            top, top_scores = model.rank_candidates(int(model.encode_users([user])[0]), cand, 10)
            n = len(top)
            assert (ids[0, n:] == -1).all()
            assert_same_ranking(model.item_ids[top], top_scores, ids[0, :n], scores[0, :n])

    def test_rank_candidates_many_equals_one_user_at_a_time(
        self, model: Recommender, users: np.ndarray
    ) -> None:
        """The batched re-ranking of the service's micro-batches: rows of different lengths
        (one empty) give each user's own ``rank_candidates`` answer."""
        rng = np.random.default_rng(1)
        pool = model.default_candidates()
        user_idx = model.encode_users(users[:6])
        cands = [rng.permutation(pool)[: 5 * i] for i in range(len(user_idx))]
        many = model.rank_candidates_many(user_idx, cands, 7)
        assert len(many) == len(user_idx) and len(many[0][0]) == 0
        for u, c, (top, top_scores) in zip(user_idx, cands, many, strict=True):
            want, want_scores = model.rank_candidates(int(u), c, 7)
            assert_same_ranking(top, top_scores, want, want_scores)
            assert len(top) == min(7, len(c)) or not np.isfinite(want_scores).all()

    def test_candidates_restrict_the_ranking(self, model: Recommender, users: np.ndarray) -> None:
        cand = model.train_item_ids[::3]
        ids, _ = model.recommend(users, k=len(cand) + 5, candidates=cand)
        assert np.isin(ids, np.r_[cand, -1]).all()
        assert ((ids == -1).sum(axis=1) >= 5).all()
        assert np.isin(cand, ids).any()

    def test_recovers_planted_structure(self, checkerboard: Processed) -> None:
        if not self.personalized:
            pytest.skip("a non-personalised model ranks every user alike")
        model = self.make_model()
        model.fit(checkerboard)
        users = checkerboard.vocab.user_ids
        ids, _ = model.recommend(users, k=1)
        hit = ids[:, 0] == checkerboard_withheld(users)
        assert hit.mean() >= 0.9, f"withheld item first for only {hit.mean():.0%} of users"

    # --- scores, persistence, determinism ----------------------------------------------------
    def test_score_matches_recommend(self, model: Recommender, users: np.ndarray) -> None:
        ids, scores = model.recommend(users, k=5)
        pair_scores = model.score(np.repeat(users, 5), ids.ravel())
        assert pair_scores.dtype == np.float32
        np.testing.assert_allclose(pair_scores, scores.ravel(), rtol=1e-5, atol=1e-6)

    def test_save_load_round_trip(
        self, model: Recommender, users: np.ndarray, tmp_path: Path
    ) -> None:
        model.save(tmp_path / "model")
        loaded = Recommender.load(tmp_path / "model")
        assert type(loaded) is type(model)
        assert loaded.config_dict() == model.config_dict()
        assert loaded.train_result is not None and model.train_result is not None
        assert loaded.train_result.facts() == model.train_result.facts()  # timings not saved
        for exclude_seen in (True, False):
            want = model.recommend(users, k=10, exclude_seen=exclude_seen)
            got = loaded.recommend(users, k=10, exclude_seen=exclude_seen)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        items = model.train_item_ids[: len(users)]
        np.testing.assert_array_equal(
            loaded.score(users[: len(items)], items), model.score(users[: len(items)], items)
        )

    def test_deterministic_for_a_seed(self, data: Processed, users: np.ndarray) -> None:
        a, b = self.make_model(), self.make_model()
        a.fit(data)
        b.fit(data)
        ids_a, scores_a = a.recommend(users, k=10)
        ids_b, scores_b = b.recommend(users, k=10)
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(scores_a, scores_b)

    # --- ids and neighbours ------------------------------------------------------------------
    def test_unknown_user_is_an_error(self, model: Recommender, data: Processed) -> None:
        unknown = int(data.vocab.user_ids.max()) + 1000
        with pytest.raises(UnknownIdError):
            model.recommend([unknown])
        with pytest.raises(UnknownIdError):
            model.score([unknown], [int(data.vocab.item_ids[0])])

    def test_similar_items(self, model: Recommender) -> None:
        query = model.train_item_ids[:6]
        ids, sims = model.similar_items(query, k=5)
        assert ids.shape == sims.shape == (len(query), 5)
        assert not (ids == query[:, None]).any()
        allowed = model.item_ids if model.scores_cold_items else model.train_item_ids
        assert np.isin(ids, np.r_[allowed, -1]).all()
        finite = np.where(np.isfinite(sims), sims, -np.inf)
        assert (np.diff(finite, axis=1) <= 0).all()

    def test_cold_items_get_finite_scores(self, model: Recommender, data: Processed) -> None:
        if not self.cold_start:
            pytest.skip("collaborative model: cold items are outside its default candidates")
        cold = data.vocab.item_ids[~data.split.item_in_train(data.vocab.n_items)]
        assert len(cold) == N_COLD_ITEMS
        users = np.repeat(data.vocab.user_ids[:4], len(cold))
        scores = model.score(users, np.tile(cold, 4))
        assert np.isfinite(scores).all()
        ids, _ = model.recommend(data.vocab.user_ids[:4], k=len(cold), candidates=cold)
        assert np.isin(ids, cold).all()


class TestMostPopular(RecommenderContract):
    personalized = False

    def make_model(self) -> Recommender:
        return MostPopular()

    def test_every_user_gets_the_popularity_order(
        self, model: Recommender, data: Processed, users: np.ndarray
    ) -> None:
        ids, scores = model.recommend(users, k=5, exclude_seen=False)
        np.testing.assert_array_equal(ids, np.broadcast_to(ids[0], ids.shape))
        counts = data.split.train[ITEM_ID].value_counts()
        np.testing.assert_array_equal(scores[0], counts.loc[ids[0]].to_numpy(np.float32))


class TestItemKNN(RecommenderContract):
    def make_model(self) -> Recommender:
        return ItemKNN(k=20)


class TestEASE(RecommenderContract):
    def make_model(self) -> Recommender:
        return EASE(l2=50.0)


class TestBPRMF(RecommenderContract):
    def make_model(self) -> Recommender:
        return BPRMF(factors=16, epochs=40, batch_size=256, seed=3)


def float32_tolerance(scores: np.ndarray) -> float:
    """``FLOAT32_ULPS`` eps of the largest finite score (at least of 1.0)."""
    finite = np.abs(scores[np.isfinite(scores)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return FLOAT32_ULPS * float(np.finfo(np.float32).eps) * scale


def assert_same_ranking(
    got: np.ndarray, got_scores: np.ndarray, want: np.ndarray, want_scores: np.ndarray
) -> None:
    """The same ranked list with the same scores up to float32 reordering: the scores agree
    within ``float32_tolerance``, and the items agree position by position except where two
    items' scores are tied within that tolerance (only those may swap places)."""
    tol = float32_tolerance(want_scores)
    assert len(got) == len(want)
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=tol)
    for pos in np.flatnonzero(np.asarray(got) != np.asarray(want)):
        tied = np.abs(want_scores - want_scores[pos]) <= 2 * tol
        assert got[pos] in set(np.asarray(want)[tied].tolist()) or pos >= len(want) - 1, (
            f"position {pos}: {got[pos]} instead of {want[pos]}, not a float32 tie"
        )
