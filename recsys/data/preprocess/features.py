"""Content features: item genres, title/text tokens and years, user demographic one-hots."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from recsys.config import PreprocessConfig
from recsys.data.preprocess.arrays import array_equal
from recsys.data.preprocess.vocabulary import Vocabulary
from recsys.errors import ConfigError, DataError
from recsys.schema import (
    AGE,
    GENDER,
    GENRE_SEPARATOR,
    GENRES,
    ITEM_ID,
    OCCUPATION,
    TEXT,
    TITLE,
    USER_ID,
)

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
            array_equal(getattr(self, f.name), getattr(other, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
        )


def build_features(
    vocab: Vocabulary,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    cfg: PreprocessConfig,
    *,
    like: ContentFeatures | None = None,
) -> ContentFeatures:
    """Fit the genre, token and user-attribute vocabularies on the side tables and encode them.

    ``like``: encode with its vocabularies (genres, tokens, user attributes, title width)
    instead of fitting new ones: an update keeps its champion's encodings (a new token is out
    of vocabulary, a new genre or attribute value is ignored) until the next full retrain.

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
    genre_names: tuple[str, ...] = () if like is None else like.genre_names
    tokens: tuple[str, ...] = (PAD_TOKEN, OOV_TOKEN) if like is None else like.tokens
    item_genres = np.zeros((vocab.n_items, len(genre_names)), dtype=np.float32)
    width = cfg.max_title_tokens if like is None else like.max_title_tokens
    item_tokens = np.zeros((vocab.n_items, width), dtype=np.int32)
    item_year = np.full(vocab.n_items, np.nan, dtype=np.float32)
    if items is not None and len(items):
        items = items.drop_duplicates(ITEM_ID, keep="first")
        rows = vocab.encode_items(items[ITEM_ID].to_numpy())
        items, rows = items.iloc[rows >= 0], rows[rows >= 0]  # rows outside the vocabulary
        if like is None:
            genres = _split_pipes(items[GENRES]) if GENRES in items else pd.Series([], dtype=str)
            genre_names = tuple(sorted(genres.dropna().unique().tolist()))
        item_genres = np.zeros((vocab.n_items, len(genre_names)), dtype=np.float32)
        if GENRES in items:
            item_genres[rows] = _multi_hot(items[GENRES], genre_names)
        titles = items[TITLE] if TITLE in items else pd.Series([""] * len(items))
        years, words = _title_words(titles, items.get(TEXT))
        if like is None:
            tokens = _token_vocabulary(words, cfg.max_vocab_tokens)
        item_tokens[rows] = _token_matrix(words, len(items), tokens, item_tokens.shape[1])
        item_year[rows] = years
    user_names: tuple[str, ...] = () if like is None else like.user_feature_names
    user_features = np.zeros((vocab.n_users, len(user_names)), dtype=np.float32)
    if users is not None:
        users = users.drop_duplicates(USER_ID, keep="first")
        user_rows = vocab.encode_users(users[USER_ID].to_numpy())
        users, user_rows = users.iloc[user_rows >= 0], user_rows[user_rows >= 0]
        user_names = _user_feature_names(users) if like is None else like.user_feature_names
        user_features = np.zeros((vocab.n_users, len(user_names)), dtype=np.float32)
        user_features[user_rows] = _user_one_hot(users, user_names)
    return ContentFeatures(
        item_genres=item_genres, genre_names=genre_names,
        item_tokens=item_tokens, tokens=tokens, item_year=item_year,
        user_features=user_features, user_feature_names=user_names,
    )  # fmt: skip


def _token_vocabulary(words: pd.Series, size: int) -> tuple[str, ...]:
    """The two reserved ids, then the ``size - 2`` most frequent tokens (ties by string)."""
    counts = words.dropna().value_counts()
    ranked = counts.rename_axis("token").reset_index(name="n")
    ranked = ranked.sort_values(["n", "token"], ascending=[False, True], kind="stable")
    return (PAD_TOKEN, OOV_TOKEN, *ranked["token"].head(size - 2))


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
