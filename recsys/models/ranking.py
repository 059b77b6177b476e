"""Array helpers of ranking, shared by every model: the training interaction matrix,
deterministic top-k and user blocks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.preprocess import ITEM_IDX, USER_IDX, Vocabulary


def interaction_matrix(
    train: pd.DataFrame, vocab: Vocabulary, *, values: str | None = None
) -> sp.csr_matrix:
    """[n_users, n_items] CSR of training interactions (1.0, or the ``values`` column)."""
    data = (
        np.ones(len(train), dtype=np.float32)
        if values is None
        else train[values].to_numpy(dtype=np.float32)
    )
    m = sp.csr_matrix(
        (data, (train[USER_IDX].to_numpy(), train[ITEM_IDX].to_numpy())),
        shape=(vocab.n_users, vocab.n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    return m


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[n, min(k, m)] column indices of the largest scores per row, best first.

    Ties are broken by the lower column index, so results never depend on the sort's whims.
    """
    n, m = scores.shape
    k = min(k, m)
    if k == m:
        part = np.tile(np.arange(m), (n, 1))
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition may cut through a tie at the k-th score: pull in lower-index tied items.
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        tied = (scores == kth).sum(axis=1) > (np.take_along_axis(scores, part, axis=1) == kth).sum(
            axis=1
        )
        if tied.any():
            rows = np.flatnonzero(tied)
            full = np.lexsort(
                (np.broadcast_to(np.arange(m), (len(rows), m)), -scores[rows]), axis=1
            )
            part[rows] = full[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def blocks(values: np.ndarray, size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    for lo in range(0, len(values), size):
        hi = min(lo + size, len(values))
        yield lo, hi, values[lo:hi]


def item_similarities(
    vectors: np.ndarray | None, seen: sp.csr_matrix, items: np.ndarray
) -> np.ndarray:
    """[len(items), n_items] float32 cosine similarities of ``items`` to every item: of the
    item vectors where the model has them, else of the items' training user columns."""
    if vectors is None:
        columns = seen.T.tocsr().astype(np.float32)
        norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1))).ravel()
        sims = np.asarray((columns[items] @ columns.T).todense(), dtype=np.float32)
        sims /= np.maximum(norms[items, None] * norms[None, :], 1e-12)
        return sims
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.asarray(v[items] @ v.T, dtype=np.float32)


def top_items(
    sims: np.ndarray,
    k: int,
    item_raw: np.ndarray,
    *,
    allowed: np.ndarray,
    exclude: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each row of ``sims`` among ``allowed`` items, row i's ``exclude[i]`` left
    out: ([n, k] raw item ids, [n, k] float32), -1 / -inf padded."""
    sims = np.array(sims, dtype=np.float32, copy=True)
    sims[:, ~allowed] = -np.inf
    sims[np.arange(len(exclude)), exclude] = -np.inf
    top = top_k(sims, k)
    top_s = np.take_along_axis(sims, top, axis=1)
    ids = np.where(np.isfinite(top_s), item_raw[top], -1)
    return ids, np.where(np.isfinite(top_s), top_s, -np.inf).astype(np.float32)
