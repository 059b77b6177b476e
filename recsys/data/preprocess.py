"""Clean, index, featurize and split interactions: the pure core of the ``preprocess`` stage.

``preprocess`` runs ``deduplicate -> to_implicit -> kcore -> Vocabulary -> ContentFeatures ->
split`` and returns a frozen ``Processed``; ``save_processed`` / ``load_processed`` move it to and
from disk through ``recsys.data.io``. Every step is vectorized numpy/pandas (no Python loop per
row or per user) and a pure function of its inputs and ``SplitConfig.seed``. The cleaned
interactions are put in one canonical order, ``(user_id, timestamp, item_id)``, before anything
random happens, so a split depends only on the *set* of rows and the seed, never on file order.

Vocabulary decision: the id vocabularies cover every user and item of the cleaned interactions
**and** every row of the users and items tables (also those that k-core removed or that never
interacted), so content and hybrid models can score cold-start items and users. Which of them a
collaborative model has actually seen is ``InteractionSplit.item_in_train(n_items)`` /
``user_in_train(n_users)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.config import PreprocessConfig, SplitConfig, from_dict
from recsys.data import io
from recsys.errors import ConfigError, DataError
from recsys.schema import (
    AGE,
    EXPLICIT,
    GENDER,
    GENRE_SEPARATOR,
    GENRES,
    IMPLICIT,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    OCCUPATION,
    RATING,
    TEXT,
    TIMESTAMP,
    TITLE,
    USER_ID,
    Dataset,
)

USER_IDX: Final = "user_idx"
"""Contiguous 0..n_users-1 index of ``user_id`` in the ``Vocabulary`` (int64)."""
ITEM_IDX: Final = "item_idx"
INDEXED_COLUMNS: Final = (*INTERACTION_COLUMNS, USER_IDX, ITEM_IDX)
PAIR_COLUMNS: Final = (USER_ID, ITEM_ID, USER_IDX, ITEM_IDX)
"""Columns of a negatives table."""

PAD_TOKEN: Final = ""
OOV_TOKEN: Final = "[UNK]"
PAD_ID: Final = 0
OOV_ID: Final = 1
AGE_EDGES: Final = (18, 25, 35, 45, 50, 56)
"""MovieLens-1M age groups; ML-1M's own age codes (1, 18, 25, ...) fall into the same buckets."""
AGE_LABELS: Final = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
USER_CATEGORICALS: Final = (GENDER, OCCUPATION)

_YEAR_RE: Final = r"\((\d{4})\)\s*$"
"""A release year closing a title: ``"Toy Story (1995)"``."""
_TOKEN_RE: Final = r"[^\W_]+(?:'[^\W_]+)*"
"""Word tokens: runs of letters/digits, keeping inner apostrophes (``don't``)."""

# Independent random streams of one seed: changing how one is used never shifts another.
_TIES, _VAL, _NEG, _VAL_NEG, _FOLDS = range(5)

FORMAT_VERSION: Final = 1
META_FILE: Final = "meta.json"


# --- cleaning -------------------------------------------------------------------------------
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
    _require_columns(df, INTERACTION_COLUMNS, "interactions")
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
    _require_columns(df, (RATING,), "interactions")
    keep = np.flatnonzero(df[RATING].to_numpy(dtype=np.float64) >= threshold)
    out = df.iloc[keep].reset_index(drop=True)
    out[RATING] = np.ones(len(out), dtype=np.float64)
    return out


def kcore(df: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Remove users with < ``min_user`` and items with < ``min_item`` rows, to a fixed point.

    Removing an item can push a user below the threshold and vice versa, so the two rules are
    applied alternately until neither removes anything. Row order is kept.
    """
    _require_columns(df, (USER_ID, ITEM_ID), "interactions")
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


# --- vocabulary -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Raw id <-> contiguous index maps; position i of each array holds the raw id encoded as i.

    Ids are sorted ascending, so the index of an id does not depend on row order.
    Compare two vocabularies with ``equals`` (``==`` is identity: the fields are arrays).
    """

    user_ids: np.ndarray
    """[n_users] raw user ids, strictly increasing."""
    item_ids: np.ndarray
    """[n_items] raw item ids, strictly increasing."""

    def __post_init__(self) -> None:
        for name in ("user_ids", "item_ids"):
            ids = np.array(getattr(self, name), copy=True)
            if ids.ndim != 1 or (len(ids) > 1 and not (ids[1:] > ids[:-1]).all()):
                raise DataError(f"Vocabulary.{name} must be 1-D, unique and sorted ascending")
            ids.flags.writeable = False
            object.__setattr__(self, name, ids)

    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Vocabulary:
        """Every id in the interactions plus every row of the side tables, sorted."""
        user_parts = [interactions[USER_ID].to_numpy()]
        item_parts = [interactions[ITEM_ID].to_numpy()]
        if users is not None:
            user_parts.append(users[USER_ID].to_numpy())
        if items is not None:
            item_parts.append(items[ITEM_ID].to_numpy())
        return cls(_unique(np.concatenate(user_parts)), _unique(np.concatenate(item_parts)))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode_users(self, raw: Any) -> np.ndarray:
        """[n] raw user ids -> [n] int64 indices; -1 where the id is unknown."""
        return _encode(self.user_ids, raw)

    def encode_items(self, raw: Any) -> np.ndarray:
        """[n] raw item ids -> [n] int64 indices; -1 where the id is unknown."""
        return _encode(self.item_ids, raw)

    def decode_users(self, idx: Any) -> np.ndarray:
        """[n] indices -> [n] raw user ids; ``IndexError`` on -1 or out of range."""
        return _decode(self.user_ids, idx, "user")

    def decode_items(self, idx: Any) -> np.ndarray:
        """[n] indices -> [n] raw item ids; ``IndexError`` on -1 or out of range."""
        return _decode(self.item_ids, idx, "item")

    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(users [user_idx, user_id], items [item_idx, item_id])`` for saving."""
        users = pd.DataFrame({USER_IDX: np.arange(self.n_users), USER_ID: self.user_ids})
        items = pd.DataFrame({ITEM_IDX: np.arange(self.n_items), ITEM_ID: self.item_ids})
        return users, items

    @classmethod
    def from_frames(cls, users: pd.DataFrame, items: pd.DataFrame) -> Vocabulary:
        """Inverse of ``to_frames``; checks that the indices are 0..n-1 in order."""
        for frame, idx in ((users, USER_IDX), (items, ITEM_IDX)):
            if not np.array_equal(frame[idx].to_numpy(), np.arange(len(frame))):
                raise DataError(f"vocabulary column '{idx}' is not 0..n-1 in order")
        return cls(users[USER_ID].to_numpy(), items[ITEM_ID].to_numpy())

    def equals(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and _array_equal(self.user_ids, other.user_ids)
            and _array_equal(self.item_ids, other.item_ids)
        )


def _encode(ids: np.ndarray, raw: Any) -> np.ndarray:
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


def _decode(ids: np.ndarray, idx: Any, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    bad = (idx < 0) | (idx >= len(ids))
    if bad.any():
        raise IndexError(f"{what} index {idx[bad][0]} outside 0..{len(ids) - 1}")
    return ids[idx]


def index_interactions(df: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Add ``user_idx`` / ``item_idx`` and sort by ``(user_id, timestamp, item_id)``.

    Args:
      df: [n, 4] canonical interactions; every id must be in ``vocab``.

    Returns:
      [n, 6] ``INDEXED_COLUMNS`` with canonical dtypes and a fresh RangeIndex.
    """
    out = df.loc[:, list(INTERACTION_COLUMNS)].astype(INTERACTION_DTYPES)
    out[USER_IDX] = vocab.encode_users(out[USER_ID].to_numpy())
    out[ITEM_IDX] = vocab.encode_items(out[ITEM_ID].to_numpy())
    for col, raw in ((USER_IDX, USER_ID), (ITEM_IDX, ITEM_ID)):
        unknown = out[col].to_numpy() < 0
        if unknown.any():
            sample = out.loc[unknown, raw].head(5).tolist()
            raise DataError(
                f"{int(unknown.sum())} interactions have a {raw} unknown to the "
                f"vocabulary, e.g. {sample}"
            )
    order = np.lexsort(
        (out[ITEM_IDX].to_numpy(), out[TIMESTAMP].to_numpy(), out[USER_IDX].to_numpy())
    )
    return out.iloc[order].reset_index(drop=True)


# --- content features -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ContentFeatures:
    """Item and user side features, row i aligned to vocabulary index i.

    Items or users missing from their side table get all-zero rows (tokens: all padding) and a
    NaN year. Encode new items or users (cold start at serving time) with the ``encode_*``
    methods, which use the same vocabularies and code as training (no train/serve skew).
    """

    item_genres: np.ndarray
    """[n_items, n_genres] float32 multi-hot."""
    genre_names: tuple[str, ...]
    """[n_genres] sorted genre names; column j of ``item_genres``."""
    item_tokens: np.ndarray
    """[n_items, max_title_tokens] int32 ids of the lower-cased title (year removed) followed by
    the ``text`` column; 0 = padding, 1 = out of vocabulary."""
    tokens: tuple[str, ...]
    """Token id -> token; ids 0 and 1 are ``""`` and ``"[UNK]"`` (the Keras convention)."""
    item_year: np.ndarray
    """[n_items] float32 year from a title ending in ``(YYYY)``; NaN when unknown."""
    user_features: np.ndarray
    """[n_users, n_user_features] float32 one-hots: age bucket, gender, occupation."""
    user_feature_names: tuple[str, ...]
    """``"age=18-24"``, ``"gender=F"``, ``"occupation=artist"``, ... per column."""

    def __post_init__(self) -> None:
        for name, dtype, ndim in (
            ("item_genres", np.float32, 2),
            ("item_tokens", np.int32, 2),
            ("item_year", np.float32, 1),
            ("user_features", np.float32, 2),
        ):
            arr = np.array(getattr(self, name), dtype=dtype, copy=True)
            if arr.ndim != ndim:
                raise DataError(f"ContentFeatures.{name} must be {ndim}-D, got {arr.shape}")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        for name in ("genre_names", "tokens", "user_feature_names"):
            object.__setattr__(self, name, tuple(str(s) for s in getattr(self, name)))

    @property
    def max_title_tokens(self) -> int:
        return int(self.item_tokens.shape[1])

    def encode_genres(self, genres: pd.Series) -> np.ndarray:
        """[n] pipe-separated genre strings -> [n, n_genres] float32; unknown genres ignored."""
        return _multi_hot(genres, self.genre_names)

    def encode_texts(
        self, titles: pd.Series, texts: pd.Series | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[n] titles (+ optional [n] texts) -> ([n, max_title_tokens] int32, [n] float32 year)."""
        years, words = _title_words(titles, texts)
        return _token_matrix(words, len(years), self.tokens, self.max_title_tokens), years

    def encode_user_attributes(self, users: pd.DataFrame) -> np.ndarray:
        """[n] rows of a users table -> [n, n_user_features] float32; missing values -> 0."""
        return _user_one_hot(users, self.user_feature_names)

    def equals(self, other: object) -> bool:
        if not isinstance(other, ContentFeatures):
            return False
        return all(
            _array_equal(getattr(self, f.name), getattr(other, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
        )


def build_features(
    vocab: Vocabulary,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    cfg: PreprocessConfig,
) -> ContentFeatures:
    """Fit the genre, token and user-attribute vocabularies on the side tables and encode them.

    Side-table rows whose id is not in ``vocab`` are ignored (``Vocabulary.build`` includes
    them all).

    The token vocabulary is the ``cfg.max_vocab_tokens - 2`` most frequent tokens over all
    items (ties by token string), after the two reserved ids; it uses item metadata only, never
    interactions, so it cannot leak the test period.
    """
    if cfg.max_title_tokens < 0 or cfg.max_vocab_tokens < 2:
        raise ConfigError(
            "preprocess.max_title_tokens must be >= 0 and max_vocab_tokens >= 2 (the two "
            f"reserved ids), got {cfg.max_title_tokens} and {cfg.max_vocab_tokens}"
        )
    genre_names: tuple[str, ...] = ()
    tokens: tuple[str, ...] = (PAD_TOKEN, OOV_TOKEN)
    item_genres = np.zeros((vocab.n_items, 0), dtype=np.float32)
    item_tokens = np.zeros((vocab.n_items, cfg.max_title_tokens), dtype=np.int32)
    item_year = np.full(vocab.n_items, np.nan, dtype=np.float32)
    if items is not None and len(items):
        items = items.drop_duplicates(ITEM_ID, keep="first")
        rows = vocab.encode_items(items[ITEM_ID].to_numpy())
        items, rows = items.iloc[rows >= 0], rows[rows >= 0]  # rows outside the vocabulary
        genre_lists = _split_pipes(items[GENRES]) if GENRES in items else pd.Series([], dtype=str)
        genre_names = tuple(sorted(genre_lists.dropna().unique().tolist()))
        item_genres = np.zeros((vocab.n_items, len(genre_names)), dtype=np.float32)
        if GENRES in items:
            item_genres[rows] = _multi_hot(items[GENRES], genre_names)
        titles = items[TITLE] if TITLE in items else pd.Series([""] * len(items))
        years, words = _title_words(titles, items.get(TEXT))
        counts = words.dropna().value_counts()
        ranked = counts.rename_axis("token").reset_index(name="n")
        ranked = ranked.sort_values(["n", "token"], ascending=[False, True], kind="stable")
        tokens = (PAD_TOKEN, OOV_TOKEN, *ranked["token"].head(cfg.max_vocab_tokens - 2))
        item_tokens[rows] = _token_matrix(words, len(items), tokens, cfg.max_title_tokens)
        item_year[rows] = years
    user_names: tuple[str, ...] = ()
    user_features = np.zeros((vocab.n_users, 0), dtype=np.float32)
    if users is not None:
        users = users.drop_duplicates(USER_ID, keep="first")
        user_rows = vocab.encode_users(users[USER_ID].to_numpy())
        users, user_rows = users.iloc[user_rows >= 0], user_rows[user_rows >= 0]
        user_names = _user_feature_names(users)
        user_features = np.zeros((vocab.n_users, len(user_names)), dtype=np.float32)
        user_features[user_rows] = _user_one_hot(users, user_names)
    return ContentFeatures(
        item_genres=item_genres,
        genre_names=genre_names,
        item_tokens=item_tokens,
        tokens=tokens,
        item_year=item_year,
        user_features=user_features,
        user_feature_names=user_names,
    )


def _split_pipes(values: pd.Series) -> pd.Series:
    """[n] ``"A|B"`` strings -> exploded [m] names, index = source row position; NaN for none."""
    s = pd.Series(values.to_numpy(), dtype="str").fillna("")
    parts = s.str.split(GENRE_SEPARATOR, regex=False).explode().str.strip()
    return parts.where(parts != "")


def _multi_hot(values: pd.Series, names: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(values), len(names)), dtype=np.float32)
    parts = _split_pipes(values).dropna()
    col = pd.Index(names).get_indexer(parts.to_numpy())
    known = col >= 0
    out[parts.index.to_numpy()[known], col[known]] = 1.0
    return out


def _title_words(titles: pd.Series, texts: pd.Series | None) -> tuple[np.ndarray, pd.Series]:
    """([n] float32 years, exploded word tokens indexed by row position; NaN for no words)."""
    t = pd.Series(titles.to_numpy(), dtype="str").fillna("")
    years = pd.to_numeric(t.str.extract(_YEAR_RE, expand=False), errors="coerce")
    body = t.str.replace(_YEAR_RE, "", regex=True)
    if texts is not None:
        body = body + " " + pd.Series(texts.to_numpy(), dtype="str").fillna("")
    words = body.str.lower().str.findall(_TOKEN_RE).explode()
    return years.to_numpy(dtype=np.float32), words


def _token_matrix(words: pd.Series, n_rows: int, tokens: Sequence[str], width: int) -> np.ndarray:
    """Exploded words (index = row position) -> [n_rows, width] int32 ids, 0-padded."""
    out = np.full((n_rows, width), PAD_ID, dtype=np.int32)
    words = words.dropna()
    if width == 0 or not len(words):
        return out
    rows = words.index.to_numpy()
    pos = words.groupby(level=0, sort=False).cumcount().to_numpy()
    ids = pd.Index(tokens[2:]).get_indexer(words.to_numpy())
    ids = np.where(ids >= 0, ids + 2, OOV_ID)
    fits = pos < width
    out[rows[fits], pos[fits]] = ids[fits]
    return out


def _category_labels(values: pd.Series) -> pd.Series:
    """Values as strings for one-hot names; integral floats lose their ``.0``; NaN stays NaN."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if (finite == np.floor(finite)).all():
            values = values.astype("Int64")
    labels = values.reset_index(drop=True).astype("str")
    return labels.where(values.notna().to_numpy())


def _age_labels(values: pd.Series) -> pd.Series:
    age = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bucket = np.searchsorted(np.asarray(AGE_EDGES, dtype=np.float64), age, side="right")
    labels = np.asarray(AGE_LABELS, dtype=object)[np.minimum(bucket, len(AGE_LABELS) - 1)]
    return pd.Series(labels, dtype="str").where(~np.isnan(age))


def _user_label_columns(users: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    cols: list[tuple[str, pd.Series]] = []
    if AGE in users:
        cols.append((AGE, _age_labels(users[AGE])))
    cols.extend((c, _category_labels(users[c])) for c in USER_CATEGORICALS if c in users)
    return cols


def _user_feature_names(users: pd.DataFrame) -> tuple[str, ...]:
    names: list[str] = []
    for col, labels in _user_label_columns(users):
        values = AGE_LABELS if col == AGE else sorted(labels.dropna().unique().tolist())
        names.extend(f"{col}={v}" for v in values)
    return tuple(names)


def _user_one_hot(users: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(users), len(names)), dtype=np.float32)
    index = pd.Index(names)
    for col, labels in _user_label_columns(users):
        ok = labels.notna().to_numpy()
        col_idx = index.get_indexer((col + "=" + labels[ok]).to_numpy())
        rows = np.flatnonzero(ok)
        known = col_idx >= 0
        out[rows[known], col_idx[known]] = 1.0
    return out


# --- splits ---------------------------------------------------------------------------------
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
            all(_frame_equal(getattr(self, f), getattr(other, f)) for f in _SPLIT_FRAMES)
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
    items = indexed[ITEM_IDX].to_numpy()
    pool = _unique(items)
    negatives = _negatives_frame(
        indexed, u[test], u, items, pool, cfg.n_negatives, _rng(cfg.seed, _NEG)
    )
    val_negatives = None
    if cfg.val_fraction > 0:
        val_negatives = _negatives_frame(
            indexed, u[val], u, items, pool, cfg.n_negatives, _rng(cfg.seed, _VAL_NEG)
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
    _require_columns(test_pairs, (USER_ID, ITEM_ID), "test pairs")
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
    users = _unique(users)
    pool = _unique(pool)
    m = len(pool)
    if n == 0 or len(users) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    u_pos = _encode(users, seen_users)
    p_pos = _encode(pool, seen_items)
    ok = (u_pos >= 0) & (p_pos >= 0)
    seen = _unique(u_pos[ok] * m + p_pos[ok])  # sorted keys user_pos * m + pool_pos
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
        acc = _unique(np.concatenate([acc, key[~_isin_sorted(key, seen)]]))
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


def _negatives_frame(
    indexed: pd.DataFrame,
    users: np.ndarray,
    seen_users: np.ndarray,
    seen_items: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    u, i = sample_negatives(users, seen_users, seen_items, pool, n, rng)
    # Raw ids come from the interactions themselves (every sampled index occurs there).
    raw = {}
    for idx_col, id_col in ((USER_IDX, USER_ID), (ITEM_IDX, ITEM_ID)):
        idx = indexed[idx_col].to_numpy()
        raw[id_col] = np.zeros(int(idx.max(initial=-1)) + 1, dtype=np.int64)
        raw[id_col][idx] = indexed[id_col].to_numpy()
    return pd.DataFrame(
        {USER_ID: raw[USER_ID][u], ITEM_ID: raw[ITEM_ID][i], USER_IDX: u, ITEM_IDX: i}
    )


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
        train=train_df,
        val=val_df,
        test=test_df,
        negatives=negatives,
        val_negatives=val_negatives,
        method=method,
        seed=cfg.seed,
        info={**_split_counts(train_df, val_df, test_df), **info},
    )


def _split_counts(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    train_users = _unique(train[USER_IDX].to_numpy())
    train_items = _unique(train[ITEM_IDX].to_numpy())
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
        out[f"n_{name}_users"] = len(_unique(u))
        out[f"cold_{name}_users"] = len(_unique(u[cold_u]))
        out[f"cold_{name}_items"] = len(_unique(i[cold_i]))
        out[f"cold_{name}_rows"] = int((cold_u | cold_i).sum())
    return out


# --- the stage ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Processed:
    """Everything the preprocess stage produces; compare with ``equals``."""

    interactions: pd.DataFrame
    """[n, 6] cleaned interactions, ``INDEXED_COLUMNS``, sorted by (user_id, timestamp,
    item_id)."""
    vocab: Vocabulary
    features: ContentFeatures
    split: InteractionSplit
    """The split to train on; for ``kfold`` fold 0."""
    folds: tuple[InteractionSplit, ...]
    """``kfold``: all folds (fold k tests on its k-th share); other methods: empty."""
    stats: dict[str, Any]
    """Row counts of each cleaning step and the final sizes (JSON-ready)."""
    config: PreprocessConfig
    feedback: str
    """``implicit`` once a threshold was applied, else the data set's own."""

    def equals(self, other: object) -> bool:
        return (
            isinstance(other, Processed)
            and _frame_equal(self.interactions, other.interactions)
            and self.vocab.equals(other.vocab)
            and self.features.equals(other.features)
            and self.split.equals(other.split)
            and len(self.folds) == len(other.folds)
            and all(a.equals(b) for a, b in zip(self.folds, other.folds, strict=True))
            and (self.stats, self.config, self.feedback)
            == (other.stats, other.config, other.feedback)
        )


def preprocess(
    dataset: Dataset, cfg: PreprocessConfig, *, test_pairs: pd.DataFrame | None = None
) -> Processed:
    """Deduplicate -> implicit -> k-core -> vocabulary -> features -> split.

    Args:
      dataset: a validated canonical data set.
      cfg: the ``preprocess`` section of ``params.yaml``.
      test_pairs: ``predefined`` split only: the test set's ``(user_id, item_id)`` pairs.

    Raises:
      ConfigError: a split setting the method cannot honour.
      DataError: nothing left after cleaning, or too few items for the negatives.
    """
    check_split_config(cfg.split, test_pairs=test_pairs)
    _require_columns(dataset.interactions, INTERACTION_COLUMNS, "interactions")
    df = dataset.interactions.loc[:, list(INTERACTION_COLUMNS)].astype(INTERACTION_DTYPES)
    stats: dict[str, Any] = {"dataset": dataset.name, "rows_in": len(df)}
    df, stats["duplicates_removed"] = deduplicate(df, dataset.feedback)
    feedback = dataset.feedback
    stats["implicit_dropped"] = 0
    if cfg.implicit_threshold is not None:
        before = len(df)
        df = to_implicit(df, cfg.implicit_threshold)
        stats["implicit_dropped"] = before - len(df)
        feedback = IMPLICIT
    users_before, items_before = df[USER_ID].nunique(), df[ITEM_ID].nunique()
    keep, passes = kcore_mask(
        df[USER_ID].to_numpy(),
        df[ITEM_ID].to_numpy(),
        cfg.min_user_interactions,
        cfg.min_item_interactions,
    )
    stats["kcore_removed_rows"] = int(len(df) - keep.sum())
    df = df.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    stats["kcore_removed_users"] = users_before - df[USER_ID].nunique()
    stats["kcore_removed_items"] = items_before - df[ITEM_ID].nunique()
    stats["kcore_passes"] = passes
    if df.empty:
        raise DataError(
            f"no interactions left after cleaning {dataset.name!r}",
            fix="lower preprocess.min_user_interactions / min_item_interactions or "
            "implicit_threshold",
        )
    vocab = Vocabulary.build(df, dataset.items, dataset.users)
    indexed = index_interactions(df, vocab)
    features = build_features(vocab, dataset.items, dataset.users, cfg)
    splits = split_interactions(indexed, cfg.split, test_pairs=test_pairs)
    stats.update(
        n_interactions=len(indexed),
        n_interacting_users=int(indexed[USER_ID].nunique()),
        n_interacting_items=int(indexed[ITEM_ID].nunique()),
        n_users=vocab.n_users,
        n_items=vocab.n_items,
        feedback=feedback,
    )
    return Processed(
        interactions=indexed,
        vocab=vocab,
        features=features,
        split=splits[0],
        folds=tuple(splits) if cfg.split.method == "kfold" else (),
        stats={k: v.item() if isinstance(v, np.generic) else v for k, v in stats.items()},
        config=cfg,
        feedback=feedback,
    )


# --- artifacts ------------------------------------------------------------------------------
_FEATURE_ARRAYS: Final = ("item_genres", "item_tokens", "item_year", "user_features")
_SPLIT_FRAMES: Final = ("train", "val", "test", "negatives", "val_negatives")


def save_processed(p: Processed, out: Path) -> None:
    """Write ``p`` under ``out`` in one atomic directory swap; same input, same bytes.

    Layout::

      meta.json                      format version, config, stats, feedback, split info
      interactions.parquet           cleaned interactions (INDEXED_COLUMNS)
      vocab/users.parquet            user_idx, user_id
      vocab/items.parquet            item_idx, item_id
      features/<array>.npy           item_genres, item_tokens, item_year, user_features
      features/names.json            genre names, token vocabulary, user feature names
      split/{train,val,test}.parquet the split to train on (kfold: fold 0)
      split/negatives.parquet        leave-one-out only (and val_negatives.parquet)
      folds/<k>/...                  kfold only: every fold, same files as split/
    """
    with io.atomic_dir(Path(out)) as tmp:
        io.write_table(p.interactions, tmp / "interactions.parquet")
        users, items = p.vocab.to_frames()
        io.write_table(users, tmp / "vocab" / "users.parquet")
        io.write_table(items, tmp / "vocab" / "items.parquet")
        for name in _FEATURE_ARRAYS:
            io.write_array(getattr(p.features, name), tmp / "features" / f"{name}.npy")
        names = {
            "genre_names": list(p.features.genre_names),
            "tokens": list(p.features.tokens),
            "user_feature_names": list(p.features.user_feature_names),
        }
        io.write_json(names, tmp / "features" / "names.json")
        meta = {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(p.config),
            "stats": p.stats,
            "feedback": p.feedback,
            "split": _write_split(p.split, tmp / "split"),
            "folds": [_write_split(f, tmp / "folds" / str(k)) for k, f in enumerate(p.folds)],
        }
        io.write_json(meta, tmp / META_FILE)


def load_processed(directory: Path) -> Processed:
    """Read a directory written by ``save_processed``."""
    directory = Path(directory)
    meta = io.read_json(directory / META_FILE)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"unsupported processed-data format {meta.get('format_version')!r}",
            where=str(directory / META_FILE),
            fix="re-run the preprocess stage",
        )
    vocab = Vocabulary.from_frames(
        io.read_table(directory / "vocab" / "users.parquet"),
        io.read_table(directory / "vocab" / "items.parquet"),
    )
    names = io.read_json(directory / "features" / "names.json")
    features = ContentFeatures(
        **{n: io.read_array(directory / "features" / f"{n}.npy") for n in _FEATURE_ARRAYS},
        genre_names=tuple(names["genre_names"]),
        tokens=tuple(names["tokens"]),
        user_feature_names=tuple(names["user_feature_names"]),
    )
    return Processed(
        interactions=io.read_table(directory / "interactions.parquet"),
        vocab=vocab,
        features=features,
        split=_read_split(directory / "split", meta["split"]),
        folds=tuple(
            _read_split(directory / "folds" / str(k), m) for k, m in enumerate(meta["folds"])
        ),
        stats=meta["stats"],
        config=from_dict(PreprocessConfig, meta["config"], f"{directory / META_FILE}:config"),
        feedback=meta["feedback"],
    )


def _write_split(split: InteractionSplit, directory: Path) -> dict[str, Any]:
    written = []
    for name in _SPLIT_FRAMES:
        frame = getattr(split, name)
        if frame is not None:
            io.write_table(frame, directory / f"{name}.parquet")
            written.append(name)
    return {"method": split.method, "seed": split.seed, "info": split.info, "tables": written}


def _read_split(directory: Path, meta: dict[str, Any]) -> InteractionSplit:
    tables = {
        name: io.read_table(directory / f"{name}.parquet") if name in meta["tables"] else None
        for name in _SPLIT_FRAMES
    }
    for name in ("train", "val", "test"):
        if tables[name] is None:
            raise DataError(f"split table '{name}' missing", where=str(directory))
    return InteractionSplit(
        train=tables["train"],
        val=tables["val"],
        test=tables["test"],
        negatives=tables["negatives"],
        val_negatives=tables["val_negatives"],
        method=meta["method"],
        seed=int(meta["seed"]),
        info=meta["info"],
    )


# --- helpers --------------------------------------------------------------------------------
def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{what} lack column(s) {missing}", fix=f"expected {list(columns)}")


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values; faster than ``np.unique``'s hashing for large int arrays."""
    s = np.sort(np.asarray(a))
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def _isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """[n] bool: ``values`` in ``sorted_set`` (sorted ascending)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    j = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[j] == values


def _array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if np.issubdtype(a.dtype, np.floating):
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _frame_equal(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.equals(b)) and list(a.dtypes) == list(b.dtypes)
