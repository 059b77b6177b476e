"""Ranking, leave-one-out and rating metrics, with bootstrap confidence intervals (numpy only).

Every definition follows ``../shared/benchmarks/PROTOCOL.md`` to the letter, so a number computed
here means the same as the numbers in ``REFERENCE.md``:

- full ranking (``topk``): ``hit_matrix`` turns ``[n_users, K]`` ranked item ids and each user's
  relevant set (a CSR ``Relevance``) into a ``[n_users, K]`` bool matrix in one vectorized
  lookup; every per-user metric (Recall, Precision, NDCG, HR, MRR, MAP @K) is then a few array
  operations on that matrix. ``coverage_at_k`` is one number over all users.
- leave-one-out with sampled negatives (``loo``): ``loo_metrics`` takes the held-out item's
  rank as uniform on ``{g, ..., g+t}`` (g negatives strictly higher, t tied), in closed form.
- rating prediction (``rating``): RMSE, MAE, and accuracy/precision/recall/F1 at a threshold.
- ``bootstrap_ci`` / ``paired_bootstrap`` (re-exported from ``recsys.evaluation.bootstrap``):
  percentile bootstrap over users (the unit that the means average over).

Per-user functions return ``[n_users]`` float64 arrays, so callers can average, bootstrap or
pair them; users with no relevant items or no recommendations score 0.

This module imports numpy only: it must import in milliseconds (no TensorFlow, no pandas).
About 430 lines, kept in one module on purpose: it is the one place that states PROTOCOL.md's
definitions, read side by side with the protocol (the bootstrap lives in ``bootstrap``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

# The bootstrap lives in its own module; its names stay importable from here (gate, tests).
from recsys.evaluation.bootstrap import PairedBootstrap as PairedBootstrap
from recsys.evaluation.bootstrap import bootstrap_ci as bootstrap_ci
from recsys.evaluation.bootstrap import bootstrap_cis as bootstrap_cis
from recsys.evaluation.bootstrap import bootstrap_means as bootstrap_means
from recsys.evaluation.bootstrap import paired_bootstrap as paired_bootstrap

TOPK_METRICS: Final = ("ndcg", "recall", "precision", "hr", "mrr", "map")
"""Per-user full-ranking metrics, in the order of ``REFERENCE.md``; keys are ``f"{name}@{k}"``."""
LOO_METRICS: Final = ("hr", "ndcg")
PAD: Final = -1
"""Item id that pads a ranked list shorter than K (``Recommender.recommend``)."""


# --- relevant sets ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Relevance:
    """Each user's set of relevant items, in CSR layout.

    User (row) ``r`` owns ``items[indptr[r]:indptr[r + 1]]``, sorted ascending and distinct.
    Build with ``from_pairs`` (vectorized, from a test table) or ``from_lists``, which
    guarantee that; the bare constructor checks only ``indptr``.
    """

    indptr: np.ndarray
    """[n_users + 1] int64 row offsets into ``items``."""
    items: np.ndarray
    """[nnz] int64 raw item ids."""

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        if (
            indptr.ndim != 1
            or len(indptr) < 1
            or indptr[0] != 0
            or indptr[-1] != len(items)
            or (np.diff(indptr) < 0).any()
        ):
            raise ValueError("Relevance.indptr must be non-decreasing from 0 to len(items)")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "items", items)

    @classmethod
    def from_pairs(cls, rows: np.ndarray, items: np.ndarray, n_users: int) -> Relevance:
        """From ``(row, item)`` pairs in any order; duplicate pairs count once.

        Args:
          rows: [nnz] int user positions in ``0..n_users-1`` (rows of the ranked matrix).
          items: [nnz] int raw item ids.
          n_users: number of rows, also those with no relevant item.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        items = np.asarray(items, dtype=np.int64).ravel()
        if rows.shape != items.shape:
            raise ValueError("rows and items must have the same length")
        if len(rows) and (rows.min() < 0 or rows.max() >= n_users):
            raise ValueError(f"rows must lie in 0..{n_users - 1}")
        order = np.lexsort((items, rows))
        rows, items = rows[order], items[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
        rows, items = rows[first], items[first]
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_users))]
        return cls(indptr, items)

    @classmethod
    def from_lists(cls, relevant: Iterable[Iterable[int] | np.ndarray]) -> Relevance:
        """From one iterable of item ids per user (duplicates count once)."""
        arrays = [
            np.asarray(list(r) if not isinstance(r, np.ndarray) else r, dtype=np.int64)
            for r in relevant
        ]
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        rows = np.repeat(np.arange(len(arrays)), lengths)
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls.from_pairs(rows, items.ravel(), len(arrays))

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        """[n_users] int64 n_u = |T_u|, the denominators of Recall, NDCG and MAP."""
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """[nnz] int64 the user (row) of each entry of ``items``."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.counts)


def as_relevance(relevant: Relevance | Sequence[Iterable[int] | np.ndarray]) -> Relevance:
    return relevant if isinstance(relevant, Relevance) else Relevance.from_lists(relevant)


# --- full ranking (PROTOCOL "topk") ------------------------------------------------------------
def hit_matrix(
    ranked: np.ndarray, relevant: Relevance | Sequence[Iterable[int] | np.ndarray]
) -> np.ndarray:
    """rel_i of PROTOCOL.md: whether the item at each position is relevant to its user.

    One vectorized lookup: every ``(row, item)`` pair is encoded as the integer key
    ``row * n_distinct + code(item)`` (``code`` ranks the distinct relevant items), so the
    ranked pairs are matched against the relevant pairs with one ``searchsorted``.

    Args:
      ranked: [n_users, K] int item ids, best first, distinct within a row (as
        ``Recommender.recommend`` returns them); ``-1`` pads a short list.
      relevant: ``Relevance`` with ``n_users`` rows, or one item collection per user.

    Returns:
      [n_users, K] bool; padding is never a hit.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [n_users, K], got shape {ranked.shape}")
    rel = as_relevance(relevant)
    n, k = ranked.shape
    if rel.n_users != n:
        raise ValueError(f"relevant has {rel.n_users} users, ranked has {n} rows")
    if rel.items.size == 0 or ranked.size == 0:
        return np.zeros((n, k), dtype=bool)
    vocab = np.unique(rel.items)  # sorted distinct relevant ids
    width = np.int64(len(vocab))
    rel_keys = np.sort(rel.rows() * width + np.searchsorted(vocab, rel.items))
    flat = ranked.astype(np.int64, copy=False).ravel()
    pos = np.minimum(np.searchsorted(vocab, flat), len(vocab) - 1)
    known = (vocab[pos] == flat) & (flat != PAD)
    keys = np.repeat(np.arange(n, dtype=np.int64), k) * width + pos
    j = np.minimum(np.searchsorted(rel_keys, keys), len(rel_keys) - 1)
    return (known & (rel_keys[j] == keys)).reshape(n, k)


def _check_k(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if hits.ndim != 2 or hits.shape[1] < k:
        raise ValueError(f"hits must be [n_users, >= {k}], got shape {hits.shape}")
    return hits[:, :k].astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    """[k] 1 / log2(i + 1) for positions i = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@K = hits / n_u (0 when n_u = 0).

    Args:
      hits: [n_users, >= k] bool from ``hit_matrix``.
      n_relevant: [n_users] n_u, including relevant items no system can recommend.

    Returns:
      [n_users] float64.
    """
    return _safe_divide(_check_k(hits, k).sum(axis=1), n_relevant)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@K = hits / K (a short or empty list still divides by K). [n_users] float64."""
    return _check_k(hits, k).sum(axis=1) / k


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K = Σ_{i≤K} rel_i / log2(i+1) over the ideal Σ_{i≤min(n_u,K)} 1 / log2(i+1).

    Args:
      hits: [n_users, >= k] bool.
      n_relevant: [n_users] n_u.

    Returns:
      [n_users] float64 in [0, 1]; 0 when n_u = 0.
    """
    disc = _discounts(k)
    dcg = _check_k(hits, k) @ disc
    ideal = np.r_[0.0, np.cumsum(disc)][np.minimum(np.asarray(n_relevant, dtype=np.int64), k)]
    return _safe_divide(dcg, ideal)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """HR@K = 1 if any of the top K is relevant. [n_users] float64."""
    return (_check_k(hits, k).sum(axis=1) > 0).astype(np.float64)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """MRR@K = 1 / (position of the first hit within K), else 0. [n_users] float64."""
    h = _check_k(hits, k) > 0
    first = np.argmax(h, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@K = (1 / min(n_u, K)) · Σ_{i≤K} rel_i · Precision@i (0 when n_u = 0).

    Args:
      hits: [n_users, >= k] bool.
      n_relevant: [n_users] n_u.

    Returns:
      [n_users] float64.
    """
    h = _check_k(hits, k)
    precision_at_i = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    return _safe_divide((h * precision_at_i).sum(axis=1), np.minimum(n_relevant, k))


def coverage_at_k(ranked: np.ndarray, k: int, n_items: int) -> float:
    """coverage@K = |∪_u R_u| / n_items: distinct items in the top K of any user.

    Args:
      ranked: [n_users, >= k] item ids; ``-1`` padding is not an item.
      n_items: catalogue size (PROTOCOL.md: the number of items in train).
    """
    if n_items <= 0:
        raise ValueError(f"n_items must be > 0, got {n_items}")
    top = np.asarray(ranked)[:, :k].ravel()
    return float(len(np.unique(top[top != PAD])) / n_items)


def topk_metrics(
    ranked: np.ndarray,
    relevant: Relevance | Sequence[Iterable[int] | np.ndarray],
    ks: Sequence[int] = (10, 20),
) -> dict[str, np.ndarray]:
    """Every per-user full-ranking metric of PROTOCOL.md at every K.

    Args:
      ranked: [n_users, >= max(ks)] item ids, best first, ``-1`` padded.
      relevant: n_users relevant sets (``Relevance`` or one collection per user).
      ks: cut-offs.

    Returns:
      ``{"ndcg@10": [n_users] float64, "recall@10": ..., ...}`` for each name in
      ``TOPK_METRICS`` and each k.
    """
    rel = as_relevance(relevant)
    hits = hit_matrix(ranked, rel)
    n_u = rel.counts
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(hits, n_u, k)
        out[f"recall@{k}"] = recall_at_k(hits, n_u, k)
        out[f"precision@{k}"] = precision_at_k(hits, k)
        out[f"hr@{k}"] = hit_rate_at_k(hits, k)
        out[f"mrr@{k}"] = mrr_at_k(hits, k)
        out[f"map@{k}"] = map_at_k(hits, n_u, k)
    return out


# --- leave-one-out with sampled negatives (PROTOCOL "loo") --------------------------------------
def loo_rank_counts(
    pos_scores: np.ndarray, neg_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """g and t of PROTOCOL.md: negatives scoring strictly higher than / equal to the held-out.

    Args:
      pos_scores: [n_users] score of each user's held-out item.
      neg_scores: [n_users, n_neg] scores of that user's negatives.

    Returns:
      ([n_users] int64 g, [n_users] int64 t).

    Raises:
      ValueError: a NaN score (it would silently compare as neither higher nor equal).
    """
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    neg = np.asarray(neg_scores, dtype=np.float64)
    if neg.ndim != 2 or neg.shape[0] != len(pos):
        raise ValueError(f"neg_scores must be [{len(pos)}, n_neg], got shape {neg.shape}")
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("scores contain NaN")
    higher = (neg > pos[:, None]).sum(axis=1)
    tied = (neg == pos[:, None]).sum(axis=1)
    return higher.astype(np.int64), tied.astype(np.int64)


def group_negatives(users: np.ndarray, neg_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sampled negative's row among the held-out users (the ragged ``loo`` layout).

    Args:
      users: [n_users] held-out users, sorted ascending and distinct.
      neg_users: [m] the user of each negative, any order.

    Returns:
      ([m'] int64 row in ``users`` of each negative whose user is held out; [m] bool which are).
    """
    row = np.minimum(np.searchsorted(users, neg_users), max(len(users) - 1, 0))
    mine = users[row] == neg_users if len(users) else np.zeros(len(neg_users), dtype=bool)
    return row[mine], mine


def loo_rank_counts_grouped(
    pos_scores: np.ndarray, neg_scores: np.ndarray, neg_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``loo_rank_counts`` for any number of negatives per user (``group_negatives``' rows).

    Args:
      pos_scores: [n_users] score of each user's held-out item.
      neg_scores: [m] score of each negative.
      neg_row: [m] the row (user) of each negative.

    Returns:
      ([n_users] int64 g, [n_users] int64 t).
    """
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    n = len(pos)
    higher = np.bincount(neg_row, weights=neg > pos[neg_row], minlength=n)
    tied = np.bincount(neg_row, weights=neg == pos[neg_row], minlength=n)
    return higher.astype(np.int64), tied.astype(np.int64)


def loo_metrics_from_counts(
    n_higher: np.ndarray, n_tied: np.ndarray, ks: Sequence[int] = (10,)
) -> dict[str, np.ndarray]:
    """HR@K and NDCG@K with the held-out item's 0-based rank uniform on {g, ..., g+t}.

    HR@K = |{g..g+t} ∩ {0..K-1}| / (t+1); NDCG@K = Σ_{r=g}^{min(g+t, K-1)} 1/log2(r+2) / (t+1),
    both from a cumulative table, so ties cost: a constant scorer with m negatives gets
    HR@K = K / (m+1) exactly (PROTOCOL.md).

    Args:
      n_higher: [n_users] g.
      n_tied: [n_users] t.

    Returns:
      ``{"hr@10": [n_users] float64, "ndcg@10": ...}`` for each k.
    """
    g = np.asarray(n_higher, dtype=np.int64)
    t = np.asarray(n_tied, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        lo = np.minimum(g, k)  # first rank of the range, capped at k
        hi = np.minimum(g + t + 1, k)  # one past the last rank below k
        cum = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0))]
        out[f"hr@{k}"] = (hi - lo) / (t + 1.0)
        out[f"ndcg@{k}"] = (cum[hi] - cum[lo]) / (t + 1.0)
    return out


def loo_metrics(
    pos_scores: np.ndarray, neg_scores: np.ndarray, ks: Sequence[int] = (10,)
) -> dict[str, np.ndarray]:
    """``loo_metrics_from_counts`` of the scores; see ``loo_rank_counts`` for the shapes."""
    return loo_metrics_from_counts(*loo_rank_counts(pos_scores, neg_scores), ks)


# --- rating prediction (PROTOCOL "rating") ------------------------------------------------------
def _pair(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if p.shape != a.shape:
        raise ValueError(f"predicted {p.shape} and actual {a.shape} differ in length")
    if not len(p):
        raise ValueError("no predictions to score")
    if not (np.isfinite(p).all() and np.isfinite(a).all()):
        raise ValueError(
            "predictions and ratings must be finite (PROTOCOL: a missing prediction "
            "is an error; predict a fallback)"
        )
    return p, a


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error over all rows. Both [n]."""
    p, a = _pair(predicted, actual)
    return float(np.sqrt(np.mean((p - a) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error over all rows. Both [n]."""
    p, a = _pair(predicted, actual)
    return float(np.mean(np.abs(p - a)))


def threshold_metrics(
    predicted: np.ndarray, actual: np.ndarray, threshold: float = 4.0
) -> dict[str, float]:
    """Ratings as a binary "liked" label: predicted >= threshold vs actual >= threshold.

    Args:
      predicted: [n] predicted ratings.
      actual: [n] true ratings.

    Returns:
      ``{"accuracy", "precision", "recall", "f1"}``; a ratio with a zero denominator is 0.
    """
    p, a = _pair(predicted, actual)
    pred_pos, true_pos = p >= threshold, a >= threshold
    tp = float((pred_pos & true_pos).sum())
    precision = tp / pred_pos.sum() if pred_pos.any() else 0.0
    recall = tp / true_pos.sum() if true_pos.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "accuracy": float((pred_pos == true_pos).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
