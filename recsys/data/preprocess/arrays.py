"""Array helpers shared by the preprocessing steps: sorted-set operations, equality, checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataError


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what} lack column(s) {missing}", fix=f"expected {list(columns)}")


def unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values; faster than ``np.unique``'s hashing for large int arrays."""
    s = np.sort(np.asarray(a))
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """[n] bool: ``values`` in ``sorted_set`` (sorted ascending)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    j = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[j] == values


def array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if np.issubdtype(a.dtype, np.floating):
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def frame_equal(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.equals(b)) and list(a.dtypes) == list(b.dtypes)


def encode_sorted(ids: np.ndarray, raw: Any) -> np.ndarray:
    raw = np.asarray(raw)
    if len(ids) == 0:
        return np.full(raw.shape, -1, dtype=np.int64)
    if ids.dtype.kind in "iu" and raw.dtype.kind in "iu" and ids[-1] - ids[0] == len(ids) - 1:
        # Sorted unique integers without gaps (MovieLens, synthetic data): an offset, not a
        # binary search over the catalogue (cache misses: ~0.1 ms per request at 1e6 items).
        pos = raw.astype(np.int64) - int(ids[0])
        return np.where((pos >= 0) & (pos < len(ids)), pos, -1)
    pos = np.searchsorted(ids, raw)
    found = ids[np.minimum(pos, len(ids) - 1)] == raw
    return np.where(found, pos, -1).astype(np.int64)
