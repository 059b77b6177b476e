"""Train / validation / test splits of the indexed interactions, every method in one place.

``split_interactions`` dispatches on ``SplitConfig.method``: ``random_holdout``,
``temporal_holdout``, ``global_temporal``, ``leave_one_out`` (with sampled negatives),
``predefined`` and ``kfold``. Every draw comes from an independent stream of ``cfg.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.config import SplitConfig
from recsys.data.preprocess.arrays import frame_equal, require_columns, unique
from recsys.data.preprocess.negatives import negatives_frame
from recsys.data.preprocess.vocabulary import ITEM_IDX, USER_IDX
from recsys.errors import ConfigError, DataError
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID

# Independent random streams of one seed: changing how one is used never shifts another.
_TIES, _VAL, _NEG, _VAL_NEG, _FOLDS = range(5)

SPLIT_FRAMES: Final = ("train", "val", "test", "negatives", "val_negatives")
"""The DataFrame fields of ``InteractionSplit`` (the last two may be None)."""


@dataclass(frozen=True, eq=False)
class InteractionSplit:
    """Train / validation / test rows of the cleaned interactions, with vocabulary indices.

    Each frame has ``INDEXED_COLUMNS`` sorted by ``(user_id, timestamp, item_id)``; the three
    are disjoint and their union is every cleaned interaction. Compare with ``equals``.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    """Empty (same columns) when ``val_fraction`` is 0."""
    test: pd.DataFrame
    negatives: pd.DataFrame | None
    """Leave-one-out only: [n_test_users * n_negatives] ``PAIR_COLUMNS``, items the user never
    interacted with, sorted by (user_idx, item_idx); None for other methods."""
    val_negatives: pd.DataFrame | None
    """Leave-one-out with validation: the same for the validation users, drawn separately."""
    method: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)
    """JSON-ready counts (rows, users, cold users/items/rows of test and val) and the method's
    own facts (cutoff timestamps, fold number, test pairs not found)."""

    def user_in_train(self, n_users: int) -> np.ndarray:
        """[n_users] bool: the user has at least one training interaction."""
        return np.bincount(self.train[USER_IDX].to_numpy(), minlength=n_users) > 0

    def item_in_train(self, n_items: int) -> np.ndarray:
        """[n_items] bool: the item has at least one training interaction."""
        return np.bincount(self.train[ITEM_IDX].to_numpy(), minlength=n_items) > 0

    def equals(self, other: object) -> bool:
        if not isinstance(other, InteractionSplit):
            return False
        return (
            all(frame_equal(getattr(self, f), getattr(other, f)) for f in SPLIT_FRAMES)
            and self.method == other.method
            and self.seed == other.seed
            and self.info == other.info
        )


def split_interactions(
    indexed: pd.DataFrame, cfg: SplitConfig, *, test_pairs: pd.DataFrame | None = None
) -> list[InteractionSplit]:
    """Dispatch on ``cfg.method``; one split, or ``cfg.n_folds`` for ``kfold``.

    Args:
      indexed: [n, 6] output of ``index_interactions``.
      cfg: the split settings.
      test_pairs: ``predefined`` only: rows with ``user_id``, ``item_id`` that form the test set.
    """
    check_split_config(cfg, test_pairs=test_pairs)
    if cfg.method == "random_holdout":
        return [random_holdout(indexed, cfg)]
    if cfg.method == "temporal_holdout":
        return [temporal_holdout(indexed, cfg)]
    if cfg.method == "global_temporal":
        return [global_temporal(indexed, cfg)]
    if cfg.method == "leave_one_out":
        return [leave_one_out(indexed, cfg)]
    if cfg.method == "predefined":
        assert test_pairs is not None  # checked above
        return [predefined(indexed, test_pairs, cfg)]
    return kfold(indexed, cfg)


def check_split_config(cfg: SplitConfig, *, test_pairs: pd.DataFrame | None = None) -> None:
    """Raise ``ConfigError`` for values the split cannot honour."""
    holdout = ("random_holdout", "temporal_holdout", "global_temporal")
    if cfg.method in holdout and not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(
            f"preprocess.split.test_fraction must be in (0, 1), got {cfg.test_fraction}"
        )
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(
            f"preprocess.split.val_fraction must be in [0, 1), got {cfg.val_fraction}"
        )
    if cfg.n_negatives < 0:
        raise ConfigError(f"preprocess.split.n_negatives must be >= 0, got {cfg.n_negatives}")
    if cfg.method == "kfold" and cfg.n_folds < 2:
        raise ConfigError(f"preprocess.split.n_folds must be >= 2, got {cfg.n_folds}")
    if cfg.method == "predefined" and test_pairs is None:
        raise ConfigError(
            "the predefined split needs test pairs",
            fix="pass test_pairs (e.g. read from split.test_file)",
        )
    if cfg.method != "predefined" and test_pairs is not None:
        raise ConfigError(f"test_pairs are only used by the predefined split, not '{cfg.method}'")


def random_holdout(indexed: pd.DataFrame, cfg: SplitConfig) -> InteractionSplit:
    """Per user, a random ``test_fraction`` of rows is test and a random ``val_fraction`` of the
    rest is validation.

    Counts per user: ``round_half_up(fraction * n)``, at least 1 when ``n >= 2``, and at most
    ``n - 1`` so that every user with 2+ interactions keeps a training row.
    """
    return _per_user_holdout(indexed, cfg, temporal=False)


def temporal_holdout(indexed: pd.DataFrame, cfg: SplitConfig) -> InteractionSplit:
    """Per user, the latest ``test_fraction`` of rows is test, the latest ``val_fraction`` of
    the rest validation (counts as in ``random_holdout``).

    Per user: max(train.timestamp) <= min(val.timestamp) <= ... <= min(test.timestamp); rows at
    the same second are ordered by a seeded random draw.
    """
    return _per_user_holdout(indexed, cfg, temporal=True)


def global_temporal(indexed: pd.DataFrame, cfg: SplitConfig) -> InteractionSplit:
    """One cutoff time for everybody: test is every row with ``timestamp >= cutoff``.

    The cutoff is the timestamp that makes the test share closest to ``test_fraction`` (all
    rows of one second fall on the same side), so max(train.timestamp) < cutoff <=
    min(test.timestamp). Validation is the latest ``val_fraction`` of the remaining rows by a
    second cutoff. Users or items first seen after the cutoff are cold in test (``info``).
    """
    ts = indexed[TIMESTAMP].to_numpy()
    n = len(ts)
    cutoff = _global_cutoff(ts, max(1, _round_half_up(cfg.test_fraction * n)))
    if cutoff is None:
        raise DataError(
            "global_temporal split impossible: every interaction has the same timestamp",
            fix="use random_holdout",
        )
    test = ts >= cutoff
    val = np.zeros(n, dtype=bool)
    val_cutoff = None
    if cfg.val_fraction > 0:
        rest = np.flatnonzero(~test)
        target = max(1, _round_half_up(cfg.val_fraction * len(rest)))
        val_cutoff = _global_cutoff(ts[rest], target)
        if val_cutoff is not None:
            val[rest[ts[rest] >= val_cutoff]] = True
    info = {
        "cutoff_timestamp": int(cutoff),
        "val_cutoff_timestamp": val_cutoff,
        "max_train_timestamp": int(ts[~(test | val)].max()),
        "min_test_timestamp": int(ts[test].min()),
    }
    return _assemble(indexed, test, val, cfg, "global_temporal", info)


def leave_one_out(indexed: pd.DataFrame, cfg: SplitConfig) -> InteractionSplit:
    """Each user's latest row is test; with ``val_fraction > 0`` the latest remaining row is
    validation. Ties at the same second: seeded random.

    Users with one row stay in train (no test); with two, no validation. ``n_negatives`` items
    per test (and validation) user are drawn uniformly without replacement from the items of the
    cleaned interactions that the user never interacted with (in any split), as in He et al.
    2017 and ``benchmarks/PROTOCOL.md``.
    """
    u = indexed[USER_IDX].to_numpy()
    n_users = int(u.max(initial=-1)) + 1
    ties = _rng(cfg.seed, _TIES).random(len(u))
    back, counts = _rank_from_end(u, n_users, (ties, indexed[TIMESTAMP].to_numpy()))
    n_u = counts[u]
    test = (back == 0) & (n_u >= 2)
    val = (back == 1) & (n_u >= 3) & (cfg.val_fraction > 0)
    pool = unique(indexed[ITEM_IDX].to_numpy())
    negatives = negatives_frame(indexed, u[test], pool, cfg.n_negatives, _rng(cfg.seed, _NEG))
    val_negatives = None
    if cfg.val_fraction > 0:
        val_negatives = negatives_frame(
            indexed, u[val], pool, cfg.n_negatives, _rng(cfg.seed, _VAL_NEG)
        )
    info = {"n_negatives": cfg.n_negatives, "negative_pool_items": len(pool)}
    return _assemble(indexed, test, val, cfg, "leave_one_out", info, negatives, val_negatives)


def predefined(
    indexed: pd.DataFrame, test_pairs: pd.DataFrame, cfg: SplitConfig
) -> InteractionSplit:
    """Rows whose ``(user_id, item_id)`` is in ``test_pairs`` are test; the rest train, with a
    per-user random ``val_fraction`` of it as validation (as the benchmark's ``val_*`` files).

    Test pairs absent from the cleaned interactions (removed by cleaning, or unknown) are
    counted in ``info["test_pairs_not_found"]``.
    """
    require_columns(test_pairs, (USER_ID, ITEM_ID), "test pairs")
    pairs = test_pairs.loc[:, [USER_ID, ITEM_ID]].drop_duplicates()
    rows = pd.MultiIndex.from_frame(indexed[[USER_ID, ITEM_ID]])
    wanted = pd.MultiIndex.from_frame(pairs)
    test = rows.isin(wanted)
    found = int(wanted.isin(rows).sum())
    val = _random_val(indexed[USER_IDX].to_numpy(), ~test, cfg.val_fraction, _rng(cfg.seed, _VAL))
    info = {"test_pairs": len(pairs), "test_pairs_not_found": len(pairs) - found}
    return _assemble(indexed, test, val, cfg, "predefined", info)


def kfold(indexed: pd.DataFrame, cfg: SplitConfig) -> list[InteractionSplit]:
    """``n_folds`` splits; every row is test in exactly one of them.

    Each user's rows are dealt round-robin over the folds in a seeded random order, starting at
    a random fold per user, so a user's rows spread evenly and a user with 2+ rows always keeps
    a training row. Validation: per-user random ``val_fraction`` of each fold's train.
    """
    u = indexed[USER_IDX].to_numpy()
    n_users = int(u.max(initial=-1)) + 1
    rng = _rng(cfg.seed, _FOLDS)
    pos, _ = _position_in_user(u, n_users, (rng.random(len(u)),))
    fold = (pos + rng.integers(0, cfg.n_folds, n_users)[u]) % cfg.n_folds
    splits = []
    for k in range(cfg.n_folds):  # one pass per fold, not per row
        test = fold == k
        val = _random_val(u, ~test, cfg.val_fraction, _rng(cfg.seed, _VAL, k))
        splits.append(
            _assemble(indexed, test, val, cfg, "kfold", {"fold": k, "n_folds": cfg.n_folds})
        )
    return splits


def _per_user_holdout(
    indexed: pd.DataFrame, cfg: SplitConfig, *, temporal: bool
) -> InteractionSplit:
    u = indexed[USER_IDX].to_numpy()
    n_users = int(u.max(initial=-1)) + 1
    ties = _rng(cfg.seed, _TIES).random(len(u))
    keys = (ties, indexed[TIMESTAMP].to_numpy()) if temporal else (ties,)
    back, counts = _rank_from_end(u, n_users, keys)  # 0 = latest (temporal) / first drawn
    n_test = _n_holdout(counts, cfg.test_fraction)
    n_val = _n_holdout(counts - n_test, cfg.val_fraction)
    test = back < n_test[u]
    val = ~test & (back < (n_test + n_val)[u])
    method = "temporal_holdout" if temporal else "random_holdout"
    return _assemble(indexed, test, val, cfg, method, {})


def _random_val(
    u: np.ndarray, eligible: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """[n] bool: per user, a random ``fraction`` (``_n_holdout`` counts) of the eligible rows."""
    val = np.zeros(len(u), dtype=bool)
    if fraction <= 0:
        return val
    rows = np.flatnonzero(eligible)
    sub = u[rows]
    back, counts = _rank_from_end(sub, int(u.max(initial=-1)) + 1, (rng.random(len(rows)),))
    val[rows[back < _n_holdout(counts, fraction)[sub]]] = True
    return val


def _position_in_user(
    u: np.ndarray, n_users: int, keys: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """([n] 0-based position of each row within its user, ordered by ``keys`` (last key most
    significant), [n_users] rows per user)."""
    order = np.lexsort((*keys, u))
    counts = np.bincount(u, minlength=n_users)
    starts = np.cumsum(counts) - counts
    pos = np.empty(len(u), dtype=np.int64)
    pos[order] = np.arange(len(u)) - starts[u[order]]
    return pos, counts


def _rank_from_end(
    u: np.ndarray, n_users: int, keys: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Like ``_position_in_user`` but 0 = the user's last row in ``keys`` order."""
    pos, counts = _position_in_user(u, n_users, keys)
    return counts[u] - 1 - pos, counts


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _n_holdout(counts: np.ndarray, fraction: float) -> np.ndarray:
    """[n_users] rows to hold out: round_half_up(fraction * n), >= 1 if fraction > 0 and n >= 2,
    <= n - 1 (a user with 2+ rows keeps one)."""
    want = np.floor(fraction * counts + 0.5).astype(np.int64)
    if fraction > 0:
        want = np.maximum(want, 1)
    return np.clip(want, 0, np.maximum(counts - 1, 0))


def _global_cutoff(ts: np.ndarray, target: int) -> int | None:
    """The timestamp c for which ``count(ts >= c)`` is closest to ``target`` while leaving both
    sides non-empty (ties: the earlier c); None when no c does."""
    s = np.sort(ts)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    uniq, n_ge = s[first], len(s) - first
    valid = (n_ge >= 1) & (n_ge <= len(s) - 1)
    if not valid.any():
        return None
    err = np.where(valid, np.abs(n_ge - target), np.iinfo(np.int64).max)
    return int(uniq[np.argmin(err)])


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _assemble(
    indexed: pd.DataFrame,
    test: np.ndarray,
    val: np.ndarray,
    cfg: SplitConfig,
    method: str,
    info: dict[str, Any],
    negatives: pd.DataFrame | None = None,
    val_negatives: pd.DataFrame | None = None,
) -> InteractionSplit:
    def take(mask: np.ndarray) -> pd.DataFrame:
        return indexed.iloc[np.flatnonzero(mask)].reset_index(drop=True)

    train_df, val_df, test_df = take(~(test | val)), take(val & ~test), take(test)
    return InteractionSplit(
        train=train_df, val=val_df, test=test_df,
        negatives=negatives, val_negatives=val_negatives,
        method=method, seed=cfg.seed, info={**_split_counts(train_df, val_df, test_df), **info},
    )  # fmt: skip


def _split_counts(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    train_users = unique(train[USER_IDX].to_numpy())
    train_items = unique(train[ITEM_IDX].to_numpy())
    out: dict[str, Any] = {
        "n_train": len(train),
        "n_train_users": len(train_users),
        "n_train_items": len(train_items),
    }
    for name, df in (("val", val), ("test", test)):
        u, i = df[USER_IDX].to_numpy(), df[ITEM_IDX].to_numpy()
        cold_u = ~np.isin(u, train_users)
        cold_i = ~np.isin(i, train_items)
        out[f"n_{name}"] = len(df)
        out[f"n_{name}_users"] = len(unique(u))
        out[f"cold_{name}_users"] = len(unique(u[cold_u]))
        out[f"cold_{name}_items"] = len(unique(i[cold_i]))
        out[f"cold_{name}_rows"] = int((cold_u | cold_i).sum())
    return out
