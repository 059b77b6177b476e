"""Data-set profiles and the drift between two of them (total-variation distances).

A ``profile`` is stored with each accepted version; the next validation compares against it.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.data.validation_report import jsonable
from recsys.schema import IMPLICIT, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

PROFILE_VERSION: Final = 1
TOP_ITEMS: Final = 1000
"""Items kept in a profile's popularity counts (the most popular first)."""
MAX_EXACT_RATINGS: Final = 100
"""Explicit ratings with at most this many distinct values get an exact histogram."""
RATING_BINS: Final = 20


def profile(dataset: Dataset, *, top_items: int = TOP_ITEMS) -> dict[str, Any]:
    """A compact, JSON-serializable summary to store with an accepted version (drift base).

    Holds row counts, distinct users/items, the timestamp range, a rating histogram (exact
    values for explicit ratings with few distinct values, else fixed bins) and the interaction
    counts of the ``top_items`` most popular items.
    """
    inter = dataset.interactions
    out: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "dataset": dataset.name,
        "feedback": dataset.feedback,
        "rows": {name: len(t) for name, t in dataset.tables().items()},
    }
    if USER_ID in inter:
        out["n_users"] = int(inter[USER_ID].nunique())
    if ITEM_ID in inter:
        counts = inter[ITEM_ID].value_counts()
        counts = counts.iloc[np.lexsort((counts.index.astype(str), -counts.to_numpy()))]
        out["n_items"] = len(counts)
        out["item_popularity"] = {
            "total": int(counts.sum()),
            "top": {_key(k): int(v) for k, v in counts.iloc[:top_items].items()},
        }
    if TIMESTAMP in inter and pd.api.types.is_numeric_dtype(inter[TIMESTAMP]):
        ts = inter[TIMESTAMP].dropna()
        out["timestamp"] = (
            {"min": int(ts.min()), "max": int(ts.max())} if len(ts) else {"min": None, "max": None}
        )
    if RATING in inter and pd.api.types.is_numeric_dtype(inter[RATING]):
        ratings = inter[RATING].dropna()
        binning, hist = _rating_histogram(ratings, dataset)
        out["rating"] = {
            "min": float(ratings.min()) if len(ratings) else None,
            "max": float(ratings.max()) if len(ratings) else None,
            "mean": float(ratings.mean()) if len(ratings) else None,
            "binning": binning,
            "histogram": hist,
        }
    return jsonable(out)


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """0.5 * sum |p - q| over the union of keys, after normalizing each side to sum 1."""
    sp, sq = sum(p.values()), sum(q.values())
    if sp <= 0 or sq <= 0:
        return 0.0 if sp == sq else 1.0
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) / sp - q.get(k, 0.0) / sq) for k in keys)


def drift(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rating-histogram and item-popularity TVD between two profiles, with their context.

    Popularity is compared on the items present in both profiles' top lists, each side
    renormalized over them; ``new_item_share`` reports how much of the current top list falls
    on items the previous one did not hold.
    """
    out: dict[str, dict[str, Any]] = {}
    # A profile without a part (an older format, a data set without ratings) skips that part.
    prev_r, cur_r = previous.get("rating") or {}, current.get("rating") or {}
    if "histogram" in prev_r and "histogram" in cur_r:
        out["rating_histogram_tvd"] = {
            "tvd": total_variation(prev_r["histogram"], cur_r["histogram"]),
            "binning": cur_r.get("binning"),
            "previous_binning": prev_r.get("binning"),
        }
    prev_p, cur_p = previous.get("item_popularity") or {}, current.get("item_popularity") or {}
    if "top" in prev_p and "top" in cur_p:
        shared = set(prev_p["top"]) & set(cur_p["top"])
        cur_top = sum(cur_p["top"].values())
        out["item_popularity_tvd"] = {
            "tvd": total_variation(
                {k: prev_p["top"][k] for k in shared}, {k: cur_p["top"][k] for k in shared}
            )
            if shared
            else 1.0,
            "shared_items": len(shared),
            # Interactions of the current top list on items outside the previous one.
            "new_item_share": (
                sum(v for k, v in cur_p["top"].items() if k not in shared) / cur_top
                if cur_top
                else 0.0
            ),
        }
    return out


def _rating_histogram(ratings: pd.Series, dataset: Dataset) -> tuple[str, dict[str, int]]:
    """(binning, counts): exact values, log2 buckets (implicit counts) or equal-width bins."""
    values = ratings.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if dataset.feedback == IMPLICIT:
        # 0, 1, 2-3, 4-7, ...: counts have a long tail; fixed buckets compare across versions.
        exp = np.where(values >= 1, np.floor(np.log2(np.maximum(values, 1))) + 1, 0).astype(int)
        keys, counts = np.unique(exp, return_counts=True)
        return "log2", {
            ("0" if k == 0 else f"{2 ** (k - 1):g}-{2**k - 1:g}"): int(c)
            for k, c in zip(keys, counts, strict=True)
        }
    rounded = np.round(values, 2)
    keys, counts = np.unique(rounded, return_counts=True)
    if len(keys) <= MAX_EXACT_RATINGS:
        return "exact", {f"{k:g}": int(c) for k, c in zip(keys, counts, strict=True)}
    lo, hi = dataset.rating_scale or (float(values.min()), float(values.max()))
    edges = np.linspace(lo, hi, RATING_BINS + 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, RATING_BINS - 1)
    keys, counts = np.unique(idx, return_counts=True)
    return f"bins{RATING_BINS}[{lo:g},{hi:g}]", {
        f"{edges[k]:.4g}": int(c) for k, c in zip(keys, counts, strict=True)
    }


def _key(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if hasattr(value, "item") else value)
