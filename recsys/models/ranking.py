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
