"""recsys.evaluation.evaluate: exact numbers through the ``Recommender`` interface on tiny data
(a fake model over a fixed score table), and the REFERENCE.md most-popular rows end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recsys.config import PreprocessConfig
from recsys.data.preprocess import (
    ITEM_IDX,
    InteractionSplit,
    Processed,
    Vocabulary,
    build_features,
    index_interactions,
)
from recsys.errors import DataError
from recsys.evaluation.evaluate import (
    cross_validate,
    evaluate_loo,
    evaluate_rating,
    evaluate_topk,
)
from recsys.models.base import Recommender
from recsys.schema import INTERACTION_COLUMNS

L2, L3, L4 = np.log2(2), np.log2(3), np.log2(4)


# --- fixtures: tiny data and fake models --------------------------------------------------------
def frame(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    """``(user, item, rating)`` rows -> canonical interactions (timestamp = row number)."""
    return pd.DataFrame(
        [(u, i, r, t) for t, (u, i, r) in enumerate(rows)], columns=list(INTERACTION_COLUMNS)
    )


def make_data(
    train: pd.DataFrame, test: pd.DataFrame, extra_items: tuple[int, ...] = ()
) -> Processed:
    """A ``Processed`` whose split is exactly (train, test); vocabulary: every id of both."""
    both = pd.concat([train, test], ignore_index=True)
    vocab = Vocabulary(
        np.unique(both["user_id"].to_numpy()),
        np.unique(np.r_[both["item_id"].to_numpy(), np.array(extra_items, dtype=np.int64)]),
    )
    tr, te = index_interactions(train, vocab), index_interactions(test, vocab)
    split = InteractionSplit(
        train=tr,
        val=tr.iloc[:0],
        test=te,
        negatives=None,
        val_negatives=None,
        method="predefined",
        seed=0,
    )
    cfg = PreprocessConfig()
    return Processed(
        interactions=index_interactions(both, vocab),
        vocab=vocab,
        features=build_features(vocab, None, None, cfg),
        split=split,
        folds=(),
        stats={},
        config=cfg,
        feedback="explicit",
    )


class FixedScores(Recommender):
    """Scores from a fixed table keyed by raw ``(user, item)``; otherwise the item id itself
    (so, by default, a higher item id ranks first)."""

    name = "fixed"

    def __init__(self, table: dict[tuple[int, int], float] | None = None) -> None:
        super().__init__()
        self.table = dict(table or {})
        self.matrix = np.zeros((0, 0), dtype=np.float32)

    def config_dict(self) -> dict[str, Any]:
        return {}

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        v = data.vocab
        self.matrix = np.tile(v.item_ids.astype(np.float32), (v.n_users, 1))
        for (u, i), s in self.table.items():
            self.matrix[v.encode_users([u])[0], v.encode_items([i])[0]] = s
        return {}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.matrix[np.ix_(user_idx, item_idx)]

    def _save(self, path: Path) -> None:
        pass

    def _load(self, path: Path) -> None:
        pass


class ColdFixedScores(FixedScores):
    """The same, claiming to score items never seen in training (content models do)."""

    name = "fixed-cold"
    scores_cold_items: ClassVar[bool] = True


class Popularity(FixedScores):
    """Most popular: the number of training interactions; ties by lower item id (base.top_k)."""

    name = "popularity"

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        counts = np.bincount(split.train[ITEM_IDX].to_numpy(), minlength=data.vocab.n_items)
        self.matrix = counts.astype(np.float32)[None, :]
        return {}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return np.repeat(self.matrix[:, item_idx], len(user_idx), axis=0)


# Users 1..5, items 10..15 (+14 only in the vocabulary). Train items: {10, 11, 12, 13}.
TRAIN = frame([(1, 10, 4), (1, 11, 2), (2, 12, 5), (3, 10, 3), (4, 13, 1)])  # mean rating 3.0
TEST = frame([(1, 12, 5), (1, 15, 4), (2, 10, 3), (3, 11, 4), (3, 13, 4), (5, 10, 2)])


@pytest.fixture(scope="module")
def tiny() -> Processed:
    return make_data(TRAIN, TEST, extra_items=(14,))


def fitted(model: FixedScores, data: Processed) -> FixedScores:
    model.fit(data)
    return model


# --- topk ---------------------------------------------------------------------------------------
def test_evaluate_topk_exact(tiny: Processed) -> None:
    # Cold-scoring model: without explicit candidates it would rank 15 and 14 first.
    model = fitted(ColdFixedScores(), tiny)
    r = evaluate_topk(model, TRAIN, TEST, ks=(2, 3), n_boot=200)
    # Evaluated: users with test and train rows -> 1, 2, 3 (4: no test; 5: no train).
    assert r.user_ids.tolist() == [1, 2, 3] and r.n_users == 3 and r.n_items == 4
    # Candidates {10..13} minus seen, highest id first:
    assert r.item_ids.tolist() == [[13, 12, -1], [13, 11, 10], [13, 12, 11]]
    # k=2  u1 T={12,15}: [13,12] rel [0,1]   u2 T={10}: [13,11] none   u3 T={11,13}: rel [1,0]
    # k=3  u1: [13,12,-] rel [0,1,0]  u2: [13,11,10] rel [0,0,1]  u3: [13,12,11] rel [1,0,1]
    expected = {
        "recall@2": [1 / 2, 0, 1 / 2],  # u1: 15 (absent from train) stays in n_u = 2
        "precision@2": [1 / 2, 0, 1 / 2],
        "ndcg@2": [(1 / L3) / (1 / L2 + 1 / L3), 0, (1 / L2) / (1 / L2 + 1 / L3)],
        "hr@2": [1, 0, 1],
        "mrr@2": [1 / 2, 0, 1],
        "map@2": [(1 / 2) / 2, 0, 1 / 2],
        "recall@3": [1 / 2, 1, 1],
        "precision@3": [1 / 3, 1 / 3, 2 / 3],
        "ndcg@3": [(1 / L3) / (1 / L2 + 1 / L3), (1 / L4) / 1, (1 + 1 / L4) / (1 + 1 / L3)],
        "hr@3": [1, 1, 1],
        "mrr@3": [1 / 2, 1 / 3, 1],
        "map@3": [(1 / 2) / 2, (1 / 3) / 1, (1 + 2 / 3) / 2],
    }
    assert set(r.per_user) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(r.per_user[name], values, err_msg=name)
        assert r.metrics[name] == pytest.approx(np.mean(values))
        lo, hi = r.ci[name]
        assert lo - 1e-12 <= r.metrics[name] <= hi + 1e-12
    assert r.metrics["coverage@2"] == pytest.approx(3 / 4)  # {13, 12, 11} of 4 train items
    assert r.metrics["coverage@3"] == pytest.approx(4 / 4)
    assert list(r.metrics)[:6] == ["ndcg@2", "recall@2", "precision@2", "hr@2", "mrr@2", "map@2"]

    recs = r.recommendations()
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert recs[["user_id", "item_id", "rank"]].values.tolist() == [
        [1, 13, 1], [1, 12, 2], [2, 13, 1], [2, 11, 2], [2, 10, 3],
        [3, 13, 1], [3, 12, 2], [3, 11, 3],
    ]  # fmt: skip
    assert recs["score"].tolist() == [13, 12, 13, 11, 10, 13, 12, 11]
    summary = json.loads(json.dumps(r.to_dict()))
    assert summary["n_users"] == 3 and summary["metrics"]["recall@2"] == pytest.approx(1 / 3)
    assert "per_user" not in summary and summary["ci"]["ndcg@2"][0] <= summary["ci"]["ndcg@2"][1]


def test_evaluate_topk_list_length_and_errors(tiny: Processed) -> None:
    model = fitted(FixedScores(), tiny)
    r = evaluate_topk(model, TRAIN, TEST, ks=(1,), list_length=5, n_boot=10)
    assert r.item_ids.shape == (3, 5)
    assert r.metrics["hr@1"] == pytest.approx(1 / 3)  # only u3's 13 hits
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate_topk(model, TRAIN, TEST[TEST["user_id"] == 5], n_boot=10)
    with pytest.raises(ValueError):
        evaluate_topk(model, TRAIN, TEST, ks=(0,))


# --- loo ----------------------------------------------------------------------------------------
def test_evaluate_loo_exact(tiny: Processed) -> None:
    # u2's pairs tie at 5.0 (held-out 10 vs 11 and 13); 99 and 77 are outside the vocabulary.
    table = {(2, 10): 5.0, (2, 11): 5.0, (2, 13): 5.0, (2, 15): 1.0}
    model = fitted(FixedScores(table), tiny)
    test = frame([(3, 77, 1), (1, 12, 1), (2, 10, 1)])
    negatives = frame([(1, 14, 0), (1, 11, 0), (1, 10, 0), (2, 11, 0), (2, 13, 0), (2, 15, 0),
                       (2, 99, 0), (3, 10, 0), (3, 11, 0), (4, 10, 0)])  # fmt: skip
    r = evaluate_loo(model, test, negatives, ks=(1, 2), n_boot=50)
    assert r.user_ids.tolist() == [1, 2, 3]
    # u1: 12 vs {14, 11, 10}: g = 1, t = 0 -> rank 1
    # u2: 5 vs {5, 5, 1, -inf}: g = 0, t = 2 -> rank uniform on {0, 1, 2}
    # u3: held-out unknown (-inf) vs {10, 11}: g = 2 -> rank 2, a miss
    np.testing.assert_allclose(r.per_user["hr@1"], [0, 1 / 3, 0])
    np.testing.assert_allclose(r.per_user["ndcg@1"], [0, 1 / 3, 0])
    np.testing.assert_allclose(r.per_user["hr@2"], [1, 2 / 3, 0])
    np.testing.assert_allclose(r.per_user["ndcg@2"], [1 / L3, (1 + 1 / L3) / 3, 0])
    assert r.metrics["hr@2"] == pytest.approx((1 + 2 / 3) / 3)
    assert r.n_unscored == 2  # (3, 77) and (2, 99); user 4 is not a test user
    assert list(r.scores.columns) == ["user_id", "item_id", "score"]
    assert r.scores[["user_id", "item_id"]].values.tolist() == [
        [1, 12], [1, 14], [1, 11], [1, 10],
        [2, 10], [2, 11], [2, 13], [2, 15], [2, 99],
        [3, 77], [3, 10], [3, 11],
    ]  # fmt: skip
    assert r.scores["score"].tolist() == [12, 14, 11, 10, 5, 5, 5, 1, -np.inf, -np.inf, 10, 11]
    assert json.loads(json.dumps(r.to_dict()))["n_users"] == 3


def test_evaluate_loo_constant_model_random_guess(tiny: Processed) -> None:
    data = make_data(TRAIN, TEST, extra_items=tuple(range(100, 199)))  # 99 extra items
    table = {(1, i): 0.0 for i in [12, *range(100, 199)]}
    model = fitted(FixedScores(table), data)
    negatives = frame([(1, i, 0) for i in range(100, 199)])
    r = evaluate_loo(model, frame([(1, 12, 1)]), negatives, ks=(10,), n_boot=10)
    assert r.metrics["hr@10"] == 0.1  # 10 / 100 exactly


def test_evaluate_loo_errors(tiny: Processed) -> None:
    model = fitted(FixedScores(), tiny)
    neg = frame([(1, 10, 0), (2, 10, 0)])
    with pytest.raises(DataError, match="several rows"):
        evaluate_loo(model, frame([(1, 12, 1), (1, 13, 1)]), neg)
    with pytest.raises(DataError, match="no negatives"):
        evaluate_loo(model, frame([(1, 12, 1), (3, 11, 1)]), neg)


# --- rating -------------------------------------------------------------------------------------
RATING_TEST = frame([(1, 12, 5), (2, 10, 3), (3, 11, 4), (1, 15, 4), (5, 10, 2), (3, 99, 1)])


def test_evaluate_rating_exact(tiny: Processed) -> None:
    table = {(1, 12): 4.5, (2, 10): 3.5, (3, 11): 2.0, (1, 15): 4.0}
    model = fitted(FixedScores(table), tiny)
    r = evaluate_rating(model, TRAIN, RATING_TEST, threshold=4.0, n_boot=200)
    # Fallback 3.0 (training mean) for: (1, 15) item not in train, (5, 10) user not in train,
    # (3, 99) item unknown to the model.
    assert r.fallback == 3.0 and r.n_fallback == 3
    assert r.predictions["prediction"].tolist() == [4.5, 3.5, 2.0, 3.0, 3.0, 3.0]
    assert list(r.predictions.columns) == ["user_id", "item_id", "prediction"]
    # errors -0.5, 0.5, -2, -1, 1, 2: squares 0.25 + 0.25 + 4 + 1 + 1 + 4 = 10.5
    assert r.metrics["rmse"] == pytest.approx(np.sqrt(10.5 / 6))
    assert r.metrics["mae"] == pytest.approx(7 / 6)
    # liked at 4: predicted [T F F F F F], actual [T F T T F F]: tp 1
    assert r.metrics["accuracy"] == pytest.approx(4 / 6)
    assert r.metrics["precision"] == pytest.approx(1.0)
    assert r.metrics["recall"] == pytest.approx(1 / 3)
    assert r.metrics["f1"] == pytest.approx(0.5)
    for name in ("rmse", "mae"):
        lo, hi = r.ci[name]
        assert lo <= r.metrics[name] <= hi
    np.testing.assert_allclose(r.per_row["absolute_error"], [0.5, 0.5, 2, 1, 1, 2])
    assert json.loads(json.dumps(r.to_dict()))["n_fallback"] == 3
    # A model that scores cold items predicts (1, 15) itself.
    cold = fitted(ColdFixedScores(table), tiny)
    rc = evaluate_rating(cold, TRAIN, RATING_TEST, n_boot=10)
    assert rc.n_fallback == 2 and rc.predictions["prediction"].tolist()[3] == 4.0
    clipped = evaluate_rating(model, TRAIN, RATING_TEST, clip=(1.0, 4.0), n_boot=10)
    assert clipped.predictions["prediction"].max() == 4.0


# --- cross-validation ---------------------------------------------------------------------------
def test_cross_validate_fits_a_fresh_model_per_fold(tiny: Processed) -> None:
    other_test = frame([(1, 13, 5), (2, 11, 4)])
    other = make_data(TRAIN, other_test)
    made: list[FixedScores] = []

    def make_model() -> Recommender:
        made.append(FixedScores())
        return made[-1]

    def evaluate(model: Recommender, split: InteractionSplit) -> Any:
        return evaluate_topk(model, split.train, split.test, ks=(2,), n_boot=10)

    cv = cross_validate(make_model, [(tiny, tiny.split), (other, other.split)], evaluate)
    assert len(made) == 2 and made[0] is not made[1] and cv.n_folds == 2
    # Fold 2: u1 [13, 12] hits 13 at 1 -> recall 1; u2 [13, 11] hits 11 at 2 -> recall 1.
    first = evaluate_topk(fitted(FixedScores(), tiny), TRAIN, TEST, ks=(2,), n_boot=10)
    assert cv.per_fold[0] == first.metrics
    assert cv.per_fold[1]["recall@2"] == 1.0
    assert cv.mean["recall@2"] == pytest.approx((1 / 3 + 1) / 2)
    assert cv.std["recall@2"] == pytest.approx((1 - 1 / 3) / 2)  # ddof = 0
    summary = json.loads(json.dumps(cv.to_dict()))
    assert summary["n_folds"] == 2 and len(summary["fit_seconds"]) == 2
    with pytest.raises(ValueError):
        cross_validate(make_model, [], evaluate)


# --- the REFERENCE.md most-popular rows, end to end through the interface -----------------------
def read_split(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=list(INTERACTION_COLUMNS))


@pytest.mark.shared
def test_popularity_model_reproduces_reference(bench_splits_dir: Path) -> None:
    u1 = bench_splits_dir / "ml100k-u1"
    train, test = read_split(u1 / "train.tsv"), read_split(u1 / "test.tsv")
    model = fitted(Popularity(), make_data(train, test))
    r = evaluate_topk(model, train, test, ks=(10, 20), list_length=50, n_boot=200)
    assert (r.n_users, r.n_items, r.item_ids.shape[1]) == (459, 1650, 50)
    got = {k: round(v, 4) for k, v in r.metrics.items()}
    assert got | {
        "ndcg@10": 0.3254, "recall@10": 0.0975, "precision@10": 0.3048, "hr@10": 0.8715,
        "mrr@10": 0.5449, "map@10": 0.1992, "ndcg@20": 0.3004, "recall@20": 0.1482,
        "coverage@10": 0.0309,
    } == got  # fmt: skip

    loo = bench_splits_dir / "ml100k-loo"
    train, test = read_split(loo / "train.tsv"), read_split(loo / "test.tsv")
    model = fitted(Popularity(), make_data(train, test))
    rl = evaluate_loo(model, test, read_split(loo / "negatives.tsv"), n_boot=200)
    assert rl.n_users == 943 and len(rl.scores) == 943 * 100 and rl.n_unscored == 0
    assert {k: round(v, 4) for k, v in rl.metrics.items()} == {"hr@10": 0.4083, "ndcg@10": 0.2292}
