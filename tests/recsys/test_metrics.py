"""recsys.evaluation.metrics: hand-computed values for every metric, PROTOCOL.md's tie rule,
properties against a plain-Python reference, and the REFERENCE.md most-popular rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.evaluation import bootstrap
from recsys.evaluation import metrics as M
from tests.conftest import REPO

L2, L3, L4, L5, L6 = (np.log2(x) for x in (2, 3, 4, 5, 6))


# --- hand-computed full-ranking example ------------------------------------------------------
# Catalogue 0..9 (n_items = 10). Four users, lists of K = 4, metrics at k = 3:
#   A: T = {2, 5},       ranked [5, 1, 2, 7]   -> rel@3 = [1, 0, 1]
#   B: T = {3, 4, 8, 9}, ranked [1, 4, 6, 9]   -> rel@3 = [0, 1, 0]   (9 is 4th: outside k=3)
#   C: T = {1},          ranked [-1 -1 -1 -1]  -> no recommendations: every metric 0
#   D: T = {2, 99},      ranked [2, 3, 4, -1]  -> rel@3 = [1, 0, 0]; 99 is not in train but
#                                                  counts in n_u = 2
RANKED = np.array([[5, 1, 2, 7], [1, 4, 6, 9], [-1, -1, -1, -1], [2, 3, 4, -1]])
RELEVANT = [[2, 5], [9, 4, 8, 3], [1], [2, 99]]


def test_hit_matrix_and_counts() -> None:
    rel = M.Relevance.from_lists(RELEVANT)
    assert rel.counts.tolist() == [2, 4, 1, 2]
    assert M.hit_matrix(RANKED, rel).astype(int).tolist() == [
        [1, 0, 1, 0],
        [0, 1, 0, 1],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    ]
    # A plain list of lists is accepted too; duplicates in a relevant set count once.
    assert M.Relevance.from_lists([[2, 2, 5]]).counts.tolist() == [2]
    assert (M.hit_matrix(RANKED, RELEVANT) == M.hit_matrix(RANKED, rel)).all()


def test_topk_metrics_hand_computed() -> None:
    m = M.topk_metrics(RANKED, RELEVANT, ks=(3,))
    np.testing.assert_allclose(
        m["recall@3"],
        [2 / 2, 1 / 4, 0, 1 / 2],  # D: 1 of {2, 99}; the untrainable 99 still counts
    )
    np.testing.assert_allclose(m["precision@3"], [2 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(
        m["ndcg@3"],
        [
            # A: hits at positions 1 and 3; ideal: min(2, 3) = 2 hits at positions 1, 2
            (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3),
            # B: a hit at position 2; ideal: min(4, 3) = 3 hits
            (1 / L3) / (1 / L2 + 1 / L3 + 1 / L4),
            0.0,
            # D: hit at position 1; ideal over min(2, 3) = 2 positions
            (1 / L2) / (1 / L2 + 1 / L3),
        ],
    )
    np.testing.assert_allclose(m["hr@3"], [1, 1, 0, 1])
    np.testing.assert_allclose(m["mrr@3"], [1, 1 / 2, 0, 1])
    np.testing.assert_allclose(
        m["map@3"],
        [
            (1 / 1 + 2 / 3) / 2,  # A: P@1 = 1, P@3 = 2/3; divided by min(2, 3)
            (1 / 2) / 3,  # B: P@2 = 1/2; divided by min(4, 3)
            0.0,
            (1 / 1) / 2,  # D: P@1; divided by min(2, 3)
        ],
    )
    # At k = 4 user B also hits 9 at position 4.
    m4 = M.topk_metrics(RANKED, RELEVANT, ks=(4,))
    assert m4["recall@4"][1] == pytest.approx(2 / 4)
    assert m4["ndcg@4"][1] == pytest.approx((1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4 + 1 / L5))
    assert m4["map@4"][1] == pytest.approx((1 / 2 + 2 / 4) / 4)
    assert m4["precision@4"][3] == pytest.approx(1 / 4)  # a short list still divides by K


def test_topk_brief_example() -> None:
    # User with test items {2, 5}, ranked [5, 1, 2]: NDCG@3 = (1/log2 2 + 1/log2 4) / (1/log2 2 +
    # 1/log2 3), in the single-metric API on the hit matrix.
    hits = M.hit_matrix(np.array([[5, 1, 2]]), [[2, 5]])
    ndcg = M.ndcg_at_k(hits, np.array([2]), 3)
    assert ndcg[0] == pytest.approx((1 / L2 + 1 / L4) / (1 / L2 + 1 / L3))
    assert M.recall_at_k(hits, np.array([2]), 1)[0] == pytest.approx(1 / 2)
    assert M.hit_rate_at_k(hits, 1)[0] == 1.0
    with pytest.raises(ValueError, match="hits must be"):
        M.ndcg_at_k(hits, np.array([2]), 4)


def test_coverage_hand_computed() -> None:
    # k=3: {5,1,2} ∪ {1,4,6} ∪ {} ∪ {2,3,4} = {1,...,6}: 6 of 10 items; padding is not an item.
    assert M.coverage_at_k(RANKED, 3, n_items=10) == pytest.approx(6 / 10)
    # k=1: {5, 1, 2}
    assert M.coverage_at_k(RANKED, 1, n_items=10) == pytest.approx(3 / 10)
    with pytest.raises(ValueError):
        M.coverage_at_k(RANKED, 1, n_items=0)


def test_users_without_recommendations_or_relevant_items_score_zero() -> None:
    ranked = np.array([[-1, -1], [3, 4]])
    m = M.topk_metrics(ranked, [[3], []], ks=(2,))
    for name, values in m.items():
        assert values.tolist() == [0.0, 0.0], name


def test_relevance_validation() -> None:
    with pytest.raises(ValueError):
        M.Relevance(np.array([0, 3]), np.array([1, 2]))
    with pytest.raises(ValueError):
        M.Relevance.from_pairs(np.array([0, 2]), np.array([1, 1]), n_users=2)
    with pytest.raises(ValueError, match="relevant has"):
        M.hit_matrix(RANKED, [[1]])
    empty = M.Relevance.from_lists([[], []])
    assert empty.counts.tolist() == [0, 0]
    assert not M.hit_matrix(np.array([[1], [2]]), empty).any()


# --- leave-one-out ------------------------------------------------------------------------------
def test_loo_constant_scorer_gets_the_random_guess_value() -> None:
    # g = 0, t = 99: rank uniform on 0..99, so HR@10 = 10 / 100 exactly.
    m = M.loo_metrics(np.zeros(3), np.zeros((3, 99)), ks=(10,))
    assert m["hr@10"].tolist() == [0.1, 0.1, 0.1]
    ndcg = sum(1 / np.log2(r + 2) for r in range(10)) / 100
    np.testing.assert_allclose(m["ndcg@10"], ndcg)


def test_loo_hand_computed_with_ties() -> None:
    # held-out 0.5 vs [0.9, 0.7, 0.5, 0.5, 0.1]: g = 2 higher, t = 2 tied -> rank ∈ {2, 3, 4}
    pos, neg = np.array([0.5]), np.array([[0.9, 0.7, 0.5, 0.5, 0.1]])
    g, t = M.loo_rank_counts(pos, neg)
    assert (g.tolist(), t.tolist()) == ([2], [2])
    m = M.loo_metrics(pos, neg, ks=(3, 10))
    assert m["hr@3"][0] == pytest.approx(1 / 3)  # only rank 2 is < 3
    assert m["ndcg@3"][0] == pytest.approx((1 / L4) / 3)
    assert m["hr@10"][0] == pytest.approx(1.0)
    assert m["ndcg@10"][0] == pytest.approx((1 / L4 + 1 / L5 + 1 / L6) / 3)


def test_loo_best_and_miss() -> None:
    pos = np.array([1.0, 0.0])
    neg = np.array([[0.0] * 12, [1.0] * 12])  # first: rank 0; second: rank 12 >= 10
    m = M.loo_metrics(pos, neg, ks=(10,))
    assert m["hr@10"].tolist() == [1.0, 0.0]
    assert m["ndcg@10"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        M.loo_metrics(np.array([np.nan]), np.zeros((1, 3)))


@given(
    g=st.integers(0, 120),
    t=st.integers(0, 120),
    k=st.integers(1, 30),
)
def test_loo_closed_form_equals_mean_over_rank_range(g: int, t: int, k: int) -> None:
    ranks = np.arange(g, g + t + 1)
    m = M.loo_metrics_from_counts(np.array([g]), np.array([t]), ks=(k,))
    assert m[f"hr@{k}"][0] == pytest.approx(np.mean(ranks < k))
    assert m[f"ndcg@{k}"][0] == pytest.approx(np.mean((ranks < k) / np.log2(ranks + 2)))


# --- rating -------------------------------------------------------------------------------------
def test_rating_metrics_hand_computed() -> None:
    pred = np.array([3.0, 4.0, 5.0, 4.0, 4.5])
    true = np.array([4.0, 4.0, 3.0, 1.0, 5.0])
    # errors -1, 0, 2, 3, -0.5: squares 1 + 0 + 4 + 9 + 0.25 = 14.25
    assert M.rmse(pred, true) == pytest.approx(np.sqrt(14.25 / 5))
    assert M.mae(pred, true) == pytest.approx(6.5 / 5)
    # at 4: predicted liked [F T T T T], actually liked [T T F F T]: tp = 2
    t = M.threshold_metrics(pred, true, 4.0)
    assert t["accuracy"] == pytest.approx(2 / 5)
    assert t["precision"] == pytest.approx(2 / 4)
    assert t["recall"] == pytest.approx(2 / 3)
    assert t["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))  # 4/7
    none = M.threshold_metrics(np.array([1.0]), np.array([1.0]), 4.0)
    assert none == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="finite"):
        M.rmse(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError):
        M.mae(np.array([1.0]), np.array([1.0, 2.0]))


# --- bootstrap ----------------------------------------------------------------------------------
def test_bootstrap_is_seeded_and_bounded_memory_blocks_agree() -> None:
    v = np.random.default_rng(0).random(50)
    assert M.bootstrap_ci(v, seed=3) == M.bootstrap_ci(v, seed=3)
    assert M.bootstrap_ci(v, seed=3) != M.bootstrap_ci(v, seed=4)
    assert M.bootstrap_ci(np.full(7, 0.25)) == (0.25, 0.25)
    with pytest.raises(ValueError):
        M.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        M.bootstrap_ci(v, alpha=1.5)


def test_bootstrap_cis_equal_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    values = {"a": rng.random(30), "b": rng.random(30) ** 2}
    together = M.bootstrap_cis(values, n_boot=300, seed=5)
    assert together == {k: M.bootstrap_ci(v, n_boot=300, seed=5) for k, v in values.items()}
    monkeypatch.setattr(bootstrap, "_BOOT_BLOCK_ELEMENTS", 7 * 30)  # many blocks of 7 resamples
    assert M.bootstrap_cis(values, n_boot=300, seed=5)["a"] == M.bootstrap_ci(
        values["a"], n_boot=300, seed=5
    )
    assert M.bootstrap_cis({}) == {}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=40))
def test_bootstrap_ci_contains_mean_and_narrows_with_more_users(values: list[float]) -> None:
    v = np.array(values)
    lo, hi = M.bootstrap_ci(v, n_boot=400, seed=1)
    assert lo - 1e-9 <= v.mean() <= hi + 1e-9
    big_lo, big_hi = M.bootstrap_ci(np.tile(v, 25), n_boot=400, seed=1)  # same data, 25x users
    assert big_lo - 1e-9 <= v.mean() <= big_hi + 1e-9
    if np.ptp(v) > 1e-6:
        assert big_hi - big_lo < hi - lo


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(300)
    better = M.paired_bootstrap(b + 0.2, b, seed=0)
    assert better.p_value < 0.01
    assert better.mean_diff == pytest.approx(0.2)
    assert better.ci[0] <= 0.2 <= better.ci[1]
    worse = M.paired_bootstrap(b - 0.2 + 0.01 * rng.standard_normal(300), b, seed=0)
    assert worse.p_value > 0.99
    same = M.paired_bootstrap(b, b, seed=0)
    assert same.p_value == 0.5
    assert same.ci == (0.0, 0.0)
    # Differences with mean exactly 0 and symmetric: p is close to one half.
    e = rng.random(150)
    noisy = M.paired_bootstrap(b + np.r_[e, -e], b, seed=0)
    assert abs(noisy.p_value - 0.5) < 0.1
    with pytest.raises(ValueError):
        M.paired_bootstrap(b, b[:-1])


# --- properties against a plain-Python reference -------------------------------------------------
def reference_metrics(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """PROTOCOL.md read literally, one user at a time."""
    top = ranked[:k]
    rel = [1.0 if (i != -1 and i in relevant) else 0.0 for i in top]
    n_u, hits = len(relevant), sum(rel)
    if n_u == 0:
        return dict.fromkeys(M.TOPK_METRICS, 0.0)
    dcg = sum(r / np.log2(i + 2) for i, r in enumerate(rel))
    idcg = sum(1 / np.log2(i + 2) for i in range(min(n_u, k)))
    first = next((i for i, r in enumerate(rel) if r), None)
    ap = sum(r * sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel))
    return {
        "ndcg": dcg / idcg,
        "recall": hits / n_u,
        "precision": hits / k,
        "hr": float(hits > 0),
        "mrr": 0.0 if first is None else 1 / (first + 1),
        "map": ap / min(n_u, k),
    }


@st.composite
def rankings(draw: st.DrawFn) -> tuple[np.ndarray, list[set[int]], int]:
    n_users = draw(st.integers(1, 8))
    k = draw(st.integers(1, 8))
    n_items = draw(st.integers(k, 25))
    rows, rel = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(range(n_items)))[:k]
        pad = draw(st.integers(0, k))
        rows.append(list(perm[: k - pad]) + [-1] * pad)
        rel.append(draw(st.sets(st.integers(0, n_items + 5), max_size=10)))  # some beyond train
    return np.array(rows, dtype=np.int64), rel, k


@settings(max_examples=150, deadline=None)
@given(rankings())
def test_topk_matches_reference_and_properties(
    case: tuple[np.ndarray, list[set[int]], int],
) -> None:
    ranked, rel, k = case
    m = M.topk_metrics(ranked, [sorted(r) for r in rel], ks=(k,))
    for u in range(len(rel)):
        ref = reference_metrics(ranked[u].tolist(), rel[u], k)
        for name in M.TOPK_METRICS:
            assert m[f"{name}@{k}"][u] == pytest.approx(ref[name], abs=1e-12), (name, u)
    for values in m.values():
        assert ((values >= 0) & (values <= 1 + 1e-12)).all()
    n_u = np.array([len(r) for r in rel])
    np.testing.assert_allclose(m[f"precision@{k}"] * k, m[f"recall@{k}"] * n_u)
    # Permuting users permutes the per-user values and leaves the means unchanged.
    perm = np.random.default_rng(len(rel)).permutation(len(rel))
    mp = M.topk_metrics(ranked[perm], [sorted(rel[i]) for i in perm], ks=(k,))
    for name, values in m.items():
        np.testing.assert_allclose(mp[name], values[perm])
        assert mp[name].mean() == pytest.approx(values.mean())


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 30), min_size=1, max_size=12), min_size=1, max_size=6),
    st.integers(1, 10),
)
def test_perfect_ranking(rel: list[set[int]], k: int) -> None:
    # Relevant items first, then non-relevant fillers (ids >= 100).
    ranked = np.array([(sorted(r) + list(range(100, 100 + k)))[:k] for r in rel])
    m = M.topk_metrics(ranked, [sorted(r) for r in rel], ks=(k,))
    n_u = np.array([len(r) for r in rel])
    np.testing.assert_allclose(m[f"ndcg@{k}"], 1.0)
    np.testing.assert_allclose(m[f"recall@{k}"], np.minimum(k, n_u) / n_u)
    np.testing.assert_allclose(m[f"map@{k}"], 1.0)
    np.testing.assert_allclose(m[f"mrr@{k}"], 1.0)


# --- the REFERENCE.md most-popular rows: proof that the code follows PROTOCOL.md -----------------
def read_split(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path, sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"]
    )


@pytest.mark.shared
def test_mostpop_reproduces_reference_topk(bench_splits_dir: Path) -> None:
    train = read_split(bench_splits_dir / "ml100k-u1" / "train.tsv")
    test = read_split(bench_splits_dir / "ml100k-u1" / "test.tsv")
    items, item_pos = np.unique(train["item_id"].to_numpy(), return_inverse=True)
    popularity = np.bincount(item_pos, minlength=len(items))
    users = np.intersect1d(test["user_id"].unique(), train["user_id"].unique())
    assert (len(users), len(items)) == (459, 1650)
    # Rank every train item: most interactions first, ties by the lower item id.
    order = np.lexsort((items, -popularity))  # [n_items] positions into items
    rank_of = np.empty(len(items), dtype=np.int64)
    rank_of[order] = np.arange(len(items))
    seen = np.zeros((len(users), len(items)), dtype=bool)
    tr = train[train["user_id"].isin(users)]
    seen[
        np.searchsorted(users, tr["user_id"].to_numpy()), np.searchsorted(items, tr["item_id"])
    ] = True
    key = np.where(seen, len(items) + rank_of[None, :], rank_of[None, :])  # seen items last
    top = np.argsort(key, axis=1, kind="stable")[:, :20]
    ranked = items[top]
    assert not np.take_along_axis(seen, top, axis=1).any()
    te = test[test["user_id"].isin(users)]
    relevant = M.Relevance.from_pairs(
        np.searchsorted(users, te["user_id"].to_numpy()), te["item_id"].to_numpy(), len(users)
    )
    m = {k: float(v.mean()) for k, v in M.topk_metrics(ranked, relevant, ks=(10, 20)).items()}
    m["coverage@10"] = M.coverage_at_k(ranked, 10, len(items))
    reference = {
        "ndcg@10": 0.3254,
        "recall@10": 0.0975,
        "precision@10": 0.3048,
        "hr@10": 0.8715,
        "mrr@10": 0.5449,
        "map@10": 0.1992,
        "ndcg@20": 0.3004,
        "recall@20": 0.1482,
        "coverage@10": 0.0309,
    }
    assert {k: round(m[k], 4) for k in reference} == reference


@pytest.mark.shared
def test_mostpop_reproduces_reference_loo(bench_splits_dir: Path) -> None:
    d = bench_splits_dir / "ml100k-loo"
    train, test, neg = (read_split(d / f) for f in ("train.tsv", "test.tsv", "negatives.tsv"))
    popularity = np.bincount(train["item_id"], minlength=int(neg["item_id"].max()) + 2)
    test = test.sort_values("user_id")
    neg = neg.sort_values(["user_id", "item_id"])
    assert len(test) == 943 and len(neg) == 943 * 99
    pos = popularity[test["item_id"].to_numpy()]
    negs = popularity[neg["item_id"].to_numpy()].reshape(943, 99)  # many ties: the rule matters
    m = {k: round(float(v.mean()), 4) for k, v in M.loo_metrics(pos, negs, ks=(10,)).items()}
    assert m == {"hr@10": 0.4083, "ndcg@10": 0.2292}


def test_metrics_imports_numpy_only() -> None:
    code = (
        "import sys, recsys.evaluation.metrics; "
        "heavy = {'pandas', 'scipy', 'tensorflow', 'keras', 'jax'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
