"""Retrieval indexes and the two-stage recommender (issue 5, deliver 2 and 5)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import RetrievalConfig
from recsys.errors import ConfigError, DataError
from recsys.models.twostage import rankable_mask
from recsys.retrieval import ExactIndex, build_index, recall_at_k
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures


def clustered(n: int = 4000, d: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres: the structure real item embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    v = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_is_brute_force_with_lower_index_ties() -> None:
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    ids, scores = ExactIndex(v).search(np.array([[1.0, 0.0]]), 3)
    assert ids.tolist() == [[0, 2, 3]]  # items 0 and 2 tie: the lower index first
    np.testing.assert_allclose(scores, [[1.0, 1.0, 0.5]])


def test_exact_index_pads_when_filters_leave_fewer_than_k() -> None:
    v = np.eye(4, dtype=np.float32)
    allowed = np.array([True, True, False, False])
    ids, scores = ExactIndex(v).search(np.ones((1, 4)), 3, exclude=[np.array([0])], allowed=allowed)
    assert ids.tolist() == [[1, -1, -1]]
    assert np.isneginf(scores[0, 1:]).all()


@pytest.mark.parametrize("storage", ["float32", "float16", "int8"])
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_filters_and_determinism(kind: str, storage: str) -> None:
    v = clustered()
    q = clustered(100, seed=1)
    exact, _ = build_index(v, RetrievalConfig(kind="exact")).search(q, 10)
    cfg = RetrievalConfig(kind=kind, storage=storage)  # type: ignore[arg-type]
    index = build_index(v, cfg)
    approx, scores = index.search(q, 10)
    assert index.kind == kind
    assert recall_at_k(approx, exact) >= 0.95
    # the stored codes' scores: within the quantizer's error of the exact inner products
    tolerance = {"float32": 1e-5, "float16": 2e-3, "int8": 3e-2}[storage]
    found = approx >= 0
    np.testing.assert_allclose(
        scores[found], np.einsum("qd,qkd->qk", q, v[approx])[found], atol=tolerance
    )
    again, _ = build_index(v, cfg).search(q, 10)
    np.testing.assert_array_equal(approx, again)  # same vectors -> same index -> same answers
    allowed = np.arange(len(v)) % 2 == 0
    filtered, _ = index.search(q, 10, allowed=allowed, exclude=[exact[i, :2] for i in range(100)])
    got = filtered[filtered >= 0]
    assert (got % 2 == 0).all()
    assert not any(np.isin(exact[i, :2], filtered[i]).any() for i in range(100))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_storage_shrinks_the_stored_vectors(kind: str) -> None:
    v = clustered(2000, d=32)
    size = {
        storage: build_index(v, RetrievalConfig(kind=kind, storage=storage)).index_bytes  # type: ignore[arg-type, attr-defined]
        for storage in ("float32", "float16", "int8")
    }
    assert size == {"float32": 2000 * 32 * 4, "float16": 2000 * 32 * 2, "int8": 2000 * 32}


def test_auto_uses_exact_below_the_threshold() -> None:
    v = clustered(500)
    assert build_index(v, RetrievalConfig(exact_below=501)).kind == "exact"
    assert build_index(v, RetrievalConfig(exact_below=500)).kind == "ivf"  # bench/ann_recall.py


def test_bad_config_and_vectors_are_refused() -> None:
    with pytest.raises(ConfigError, match="kind"):
        RetrievalConfig(kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="nprobe"):
        RetrievalConfig(nprobe=0)
    with pytest.raises(ConfigError, match=r"storage must be float32\|float16\|int8"):
        RetrievalConfig(storage="int4")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="NaN"):
        ExactIndex(np.array([[np.nan, 1.0]]))


def test_two_stage_with_exact_retrieval_of_everything_equals_the_champion() -> None:
    """M >= catalogue and exact search: the two-stage answer is the ranker's own recommend."""
    ranker = fixtures.ranker()
    model = fixtures.model(rerank_top=len(ranker.item_ids), retrieval=RetrievalConfig(kind="exact"))
    users = synthetic_data().vocab.user_ids[:100]
    ids, scores = model.recommend(users, 10)
    want_ids, want_scores = ranker.recommend(users, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_two_stage_reranks_only_retrieved_candidates() -> None:
    ranker = fixtures.ranker()
    model = fixtures.model(rerank_top=15, retrieval=RetrievalConfig(kind="hnsw"))
    users = synthetic_data().vocab.user_ids[:20]
    ids, _ = model.recommend(users, 5)
    for row, user in enumerate(users):
        q = model.user_vectors([user])
        seen = ranker.encode_items(ranker.seen_items(int(user)))
        cand, _ = model.index.search(q, 15, exclude=[seen], allowed=rankable_mask(ranker))
        assert set(ids[row][ids[row] >= 0]) <= set(ranker.item_ids[cand[0][cand[0] >= 0]])
        assert not set(ids[row]) & set(ranker.seen_items(int(user)))
