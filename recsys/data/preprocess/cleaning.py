"""Cleaning steps on raw canonical interactions: deduplicate, implicit threshold, k-core."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.preprocess.arrays import require_columns
from recsys.errors import ConfigError
from recsys.schema import (
    EXPLICIT,
    IMPLICIT,
    INTERACTION_COLUMNS,
    ITEM_ID,
    RATING,
    TIMESTAMP,
    USER_ID,
)


def deduplicate(df: pd.DataFrame, feedback: str) -> tuple[pd.DataFrame, int]:
    """Collapse repeated ``(user_id, item_id)`` pairs to one row each.

    Explicit feedback keeps the latest rating (equal timestamps: the last row in file order).
    Implicit feedback sums the counts into that same row, which keeps the latest timestamp.

    Args:
      df: [n, >=4] interactions with the canonical columns.
      feedback: ``"explicit"`` or ``"implicit"``.

    Returns:
      ([m, same columns] rows in the file order of the rows kept, n - m).
    """
    require_columns(df, INTERACTION_COLUMNS, "interactions")
    if feedback not in (EXPLICIT, IMPLICIT):
        raise ConfigError(f"feedback must be '{EXPLICIT}' or '{IMPLICIT}', got {feedback!r}")
    n = len(df)
    if n == 0:
        return df.reset_index(drop=True), 0
    users = df[USER_ID].to_numpy()
    items = df[ITEM_ID].to_numpy()
    # Sort by pair, then time, then file position: the last row of each pair is the one to keep.
    order = np.lexsort((np.arange(n), df[TIMESTAMP].to_numpy(), items, users))
    u_sorted, i_sorted = users[order], items[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = (u_sorted[1:] != u_sorted[:-1]) | (i_sorted[1:] != i_sorted[:-1])
    keep = order[last]  # [m] positions, one per pair, in pair order
    by_position = np.argsort(keep, kind="stable")
    out = df.iloc[keep[by_position]].reset_index(drop=True)
    if feedback == IMPLICIT:
        group = np.cumsum(np.r_[True, last[:-1]]) - 1  # [n] pair number of each sorted row
        sums = np.bincount(group, weights=df[RATING].to_numpy(dtype=np.float64)[order])
        out[RATING] = sums[by_position]
    return out, n - len(out)


def to_implicit(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Keep rows with ``rating >= threshold`` as positives (rating 1.0); drop the rest.

    The number dropped is ``len(df) - len(result)``.
    """
    require_columns(df, (RATING,), "interactions")
    keep = np.flatnonzero(df[RATING].to_numpy(dtype=np.float64) >= threshold)
    out = df.iloc[keep].reset_index(drop=True)
    out[RATING] = np.ones(len(out), dtype=np.float64)
    return out


def kcore(df: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Remove users with < ``min_user`` and items with < ``min_item`` rows, to a fixed point.

    Removing an item can push a user below the threshold and vice versa, so the two rules are
    applied alternately until neither removes anything. Row order is kept.
    """
    require_columns(df, (USER_ID, ITEM_ID), "interactions")
    keep, _ = kcore_mask(df[USER_ID].to_numpy(), df[ITEM_ID].to_numpy(), min_user, min_item)
    return df.iloc[np.flatnonzero(keep)].reset_index(drop=True)


def kcore_mask(
    users: np.ndarray, items: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, int]:
    """The rows ``kcore`` keeps.

    Args:
      users: [n] raw user ids.
      items: [n] raw item ids.

    Returns:
      ([n] bool mask, number of passes that removed something).
    """
    n = len(users)
    u_codes = pd.factorize(users)[0]
    i_codes = pd.factorize(items)[0]
    n_u, n_i = int(u_codes.max(initial=-1)) + 1, int(i_codes.max(initial=-1)) + 1
    alive = np.arange(n)  # surviving row positions; shrinks each pass
    passes = 0
    while len(alive):
        u, i = u_codes[alive], i_codes[alive]
        ok = (np.bincount(u, minlength=n_u)[u] >= min_user) & (
            np.bincount(i, minlength=n_i)[i] >= min_item
        )
        if ok.all():
            break
        alive = alive[ok]
        passes += 1
    mask = np.zeros(n, dtype=bool)
    mask[alive] = True
    return mask, passes
