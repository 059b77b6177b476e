"""Negative sampling: items a user never interacted with, for leave-one-out evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.preprocess.arrays import encode_sorted, isin_sorted, unique
from recsys.data.preprocess.vocabulary import ITEM_IDX, USER_IDX
from recsys.errors import DataError
from recsys.schema import ITEM_ID, USER_ID, id_array


def sample_negatives(
    users: np.ndarray,
    seen_users: np.ndarray,
    seen_items: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items per user, uniform without replacement from ``pool`` minus the user's items.

    Users whose allowed set is large use batched rejection sampling; the few users who have
    seen most of the pool draw exactly, by the ``n`` smallest of one random key per pool item.

    Args:
      users: [u] user indices to sample for (deduplicated and sorted here).
      seen_users, seen_items: [r] every (user, item) interaction to exclude.
      pool: [m] candidate item indices.
      n: negatives per user.

    Returns:
      ([u * n] user, [u * n] item) sorted by user then item.

    Raises:
      DataError: some user has fewer than ``n`` never-interacted items in the pool.
    """
    users = unique(users)
    pool = unique(pool)
    m = len(pool)
    if n == 0 or len(users) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    u_pos = encode_sorted(users, seen_users)
    p_pos = encode_sorted(pool, seen_items)
    ok = (u_pos >= 0) & (p_pos >= 0)
    seen = unique(u_pos[ok] * m + p_pos[ok])  # sorted keys user_pos * m + pool_pos
    allowed = m - np.bincount(seen // m, minlength=len(users))
    if (allowed < n).any():
        short = np.flatnonzero(allowed < n)
        raise DataError(
            f"{len(short)} users have fewer than n_negatives={n} never-interacted items among "
            f"the {m} candidate items (e.g. user index {users[short[0]]}: {allowed[short[0]]})",
            fix="lower preprocess.split.n_negatives or relax k-core",
        )
    dense = (allowed < 4 * n) | (allowed * 5 < m)
    picked = []  # keys row * m + pool_pos
    # Exact path, a chunk of dense users at a time: keys [chunk, m], seen items pushed last.
    dense_rows = np.flatnonzero(dense)
    dense_seen = seen[dense[seen // m]]
    chunk = max(1, (1 << 22) // m)
    for start in range(0, len(dense_rows), chunk):
        rows = dense_rows[start : start + chunk]
        keys = rng.random((len(rows), m))
        lo, hi = np.searchsorted(dense_seen, [rows[0] * m, (rows[-1] + 1) * m])
        block = dense_seen[lo:hi]
        keys[np.searchsorted(rows, block // m), block % m] = 2.0
        cols = np.argpartition(keys, n - 1, axis=1)[:, :n]
        picked.append((rows[:, None] * m + cols).ravel())
    # Rejection path: iid uniform draws over the pool, seen items rejected, in batches until
    # every sparse user has >= n distinct items; then n of those, uniformly. The procedure is
    # symmetric in a user's allowed items, so the result is a uniform n-subset of them.
    acc = np.empty(0, dtype=np.int64)  # sorted distinct accepted keys
    need = np.where(dense, 0, n)
    while (pending := np.flatnonzero(need > 0)).size:
        k, a = need[pending], allowed[pending]
        # expected draws for k distinct accepted items, with a little slack
        b = np.ceil((k + 3 * np.sqrt(k) + 2) * (m / a) * (1 + k / a)).astype(np.int64)
        key = np.repeat(pending, b) * m + rng.integers(0, m, size=int(b.sum()))
        acc = unique(np.concatenate([acc, key[~isin_sorted(key, seen)]]))
        got = np.bincount(acc // m, minlength=len(users))
        need = np.where(dense, 0, np.maximum(n - got, 0))
    if len(acc):
        # n per user by random 32-bit keys: one int64 sort, grouped by user (users < 2**31)
        row = acc // m
        order = np.argsort((row << 32) | rng.integers(0, 1 << 32, len(acc)), kind="stable")
        counts = np.bincount(row, minlength=len(users))
        rank = np.arange(len(acc)) - (np.cumsum(counts) - counts)[row[order]]
        picked.append(acc[order[rank < n]])
    out = np.sort(np.concatenate(picked))
    return users[out // m].astype(np.int64), pool[out % m].astype(np.int64)


def negatives_frame(
    indexed: pd.DataFrame, users: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``sample_negatives`` for ``users``, excluding every row of ``indexed``, as a
    ``PAIR_COLUMNS`` table."""
    seen_users, seen_items = indexed[USER_IDX].to_numpy(), indexed[ITEM_IDX].to_numpy()
    u, i = sample_negatives(users, seen_users, seen_items, pool, n, rng)
    # Raw ids come from the interactions themselves (every sampled index occurs there).
    raw = {}
    for idx_col, id_col in ((USER_IDX, USER_ID), (ITEM_IDX, ITEM_ID)):
        idx, ids = indexed[idx_col].to_numpy(), id_array(indexed[id_col])
        raw[id_col] = np.zeros(int(idx.max(initial=-1)) + 1, dtype=ids.dtype)  # int64 or str
        raw[id_col][idx] = ids
    return pd.DataFrame(
        {USER_ID: raw[USER_ID][u], ITEM_ID: raw[ITEM_ID][i], USER_IDX: u, ITEM_IDX: i}
    )
