"""One MovieLens file at a time: ratings, movies (items) and users of every GroupLens layout.

``read_movielens`` composes these for a whole directory; ``recsys.data.sources.formats`` uses
the same functions for a single file (``recsys benchmark --items movies.dat``), so a file reads
the same whichever way it arrives. Ids follow ``recsys.data.sources.ids`` (integers as int64,
anything else as text). Text files whose encoding the layout does not fix (``movies.dat``,
``users.dat``, ``tags.dat``: latin-1 in ML-1M, UTF-8 in ML-10M) are read as UTF-8 when they
decode as UTF-8, else as latin-1 (``text_encoding``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsys.data import io
from recsys.data.sources.ids import canonical_ids, interactions_frame
from recsys.errors import location
from recsys.schema import (
    AGE,
    GENDER,
    GENRE_SEPARATOR,
    GENRES,
    ITEM_ID,
    OCCUPATION,
    RATING,
    TEXT,
    TIMESTAMP,
    TITLE,
    USER_ID,
    ZIP_CODE,
)

ML100K_GENRES: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in order (README); used when ``u.genre`` is absent."""

ML1M_AGE_GROUPS: Final[Mapping[int, str]] = {
    1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+",
}  # fmt: skip
"""ml-1m ``users.dat`` age codes (ml-1m README); the code is the lower bound of the range."""

ML1M_OCCUPATIONS: Final[Mapping[int, str]] = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin",
    4: "college/grad student", 5: "customer service", 6: "doctor/health care",
    7: "executive/managerial", 8: "farmer", 9: "homemaker", 10: "K-12 student", 11: "lawyer",
    12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist", 16: "self-employed",
    17: "technician/engineer", 18: "tradesman/craftsman", 19: "unemployed", 20: "writer",
}  # fmt: skip
"""ml-1m ``users.dat`` occupation codes (ml-1m README; 0 is '"other" or not specified')."""

NO_GENRES: Final = "(no genres listed)"
"""How ml-20m and later mark an item without genres; read as ``""``."""

AGE_GROUP: Final = "age_group"
RELEASE_DATE: Final = "release_date"
IMDB_URL: Final = "imdb_url"
ML_CSV_RATINGS: Final = ("userId", "movieId", "rating", "timestamp")
"""The header of ml-20m-and-later ``ratings.csv``."""


def text_encoding(path: Path) -> str:
    """``utf-8`` when the file decodes as UTF-8, else ``latin-1`` (ML-1M's text files)."""
    try:
        io.require_file(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _ids(frame: pd.DataFrame, column: str, path: Path, **layout: object) -> pd.Series:
    """``frame[column]`` as canonical ids; errors name the file, column and line."""

    def locate(i: int) -> str:
        line = io.record_line(path, i, **layout)  # type: ignore[arg-type]
        return location(path, column=column, row=line)

    return canonical_ids(frame[column], column, locate)


# --- ratings --------------------------------------------------------------------------------
def read_ratings_file(
    path: Path | str, *, sep: str = "\t", encoding: str = "utf-8"
) -> pd.DataFrame:
    """Read a headerless ``user<sep>item<sep>rating<sep>timestamp`` file -> interactions.

    The format of ml-100k ``u.data`` and its splits (``u1.base``, ``ua.test``, ...), of the
    benchmark splits (``train.tsv``, ``test.tsv``, ``negatives.tsv``) and, with ``sep="::"``, of
    ml-1m / ml-10m ``ratings.dat``. Returns ``INTERACTION_COLUMNS`` (ids int64 or text),
    rows in file order.
    """
    path = Path(path)
    frame = io.read_delimited(
        path,
        [USER_ID, ITEM_ID, RATING, TIMESTAMP],
        sep=sep,
        encoding=encoding,
        integer=(TIMESTAMP,),
        numeric=(RATING,),
        what="ratings file",
    )
    layout = {"sep": sep, "encoding": encoding}
    return interactions_frame(
        _ids(frame, USER_ID, path, **layout),
        _ids(frame, ITEM_ID, path, **layout),
        frame[RATING],
        frame[TIMESTAMP],
    )


def read_ml_csv_ratings(path: Path | str) -> pd.DataFrame:
    """Read an ml-20m-and-later ``ratings.csv`` (header ``userId,movieId,rating,timestamp``)."""
    path = Path(path)
    user, item, rating, timestamp = ML_CSV_RATINGS
    raw = io.read_delimited(
        path,
        list(ML_CSV_RATINGS),
        sep=",",
        header=True,
        quoted=True,
        integer=[timestamp],
        numeric=[rating],
        what="ratings file",
    )
    layout = {"sep": ",", "header": True, "quoted": True}
    return interactions_frame(
        _ids(raw, user, path, **layout),
        _ids(raw, item, path, **layout),
        raw[rating],
        raw[timestamp],
    )


# --- items ----------------------------------------------------------------------------------
def read_dat_movies(path: Path | str, encoding: str | None = None) -> pd.DataFrame:
    """Read an ml-1m / ml-10m ``movies.dat`` (``id::title::genres``) -> items.

    A ``tags.dat`` beside it (ml-10m) becomes the items' ``text`` (``tag_text``).
    """
    path = Path(path)
    encoding = encoding or text_encoding(path)
    items = io.read_delimited(
        path, [ITEM_ID, TITLE, GENRES], sep="::", encoding=encoding, what="item file"
    )
    items[ITEM_ID] = _ids(items, ITEM_ID, path, sep="::", encoding=encoding)
    items[GENRES] = canonical_genres(items[GENRES])
    tags = path.parent / "tags.dat"
    if tags.is_file():
        tag_encoding = text_encoding(tags)
        raw = io.read_delimited(
            tags,
            [USER_ID, ITEM_ID, "tag", TIMESTAMP],
            sep="::",
            encoding=tag_encoding,
            what="tag file",
        )
        tag_items = _ids(raw, ITEM_ID, tags, sep="::", encoding=tag_encoding)
        items[TEXT] = tag_text(items[ITEM_ID], tag_items, raw["tag"])
    return items


def read_csv_movies(path: Path | str) -> pd.DataFrame:
    """Read an ml-20m-and-later ``movies.csv`` (``movieId,title,genres``) -> items.

    A ``tags.csv`` beside it becomes the items' ``text`` (``tag_text``).
    """
    path = Path(path)
    layout = {"sep": ",", "header": True, "quoted": True}
    items = io.read_delimited(
        path, ["movieId", "title", "genres"], sep=",", header=True, quoted=True, what="item file"
    )
    items["movieId"] = _ids(items, "movieId", path, **layout)
    items.columns = [ITEM_ID, TITLE, GENRES]
    items[GENRES] = canonical_genres(items[GENRES])
    tags = path.parent / "tags.csv"
    if tags.is_file():
        raw = io.read_delimited(
            tags, ["movieId", "tag"], sep=",", header=True, quoted=True, what="tag file"
        )
        items[TEXT] = tag_text(items[ITEM_ID], _ids(raw, "movieId", tags, **layout), raw["tag"])
    return items


def read_ml100k_items(path: Path | str) -> pd.DataFrame:
    """Read an ml-100k ``u.item`` file on its own -> canonical items table.

    Columns ``item_id``, ``title``, ``genres`` (pipe-separated names of the 19 flags, ``""`` for
    none), ``release_date``, ``imdb_url``; the same table ``read_movielens`` builds, without
    needing ``u.data`` beside it. Genre names come from a ``u.genre`` in the same directory when
    there is one, else ``ML100K_GENRES``.
    """
    path = Path(path)
    genres = ML100K_GENRES
    if (path.parent / "u.genre").is_file():
        table = io.read_delimited(
            path.parent / "u.genre",
            ["genre", "index"],
            sep="|",
            encoding="latin-1",
            integer=["index"],
            what="genre file",
        )
        genres = tuple(table.sort_values("index", kind="stable")["genre"])
    flags = [f"genre_{i}" for i in range(len(genres))]
    raw = io.read_delimited(
        path,
        [ITEM_ID, TITLE, RELEASE_DATE, "video_release_date", IMDB_URL, *flags],
        sep="|",
        encoding="latin-1",
        integer=flags,
        what="item file",
    )
    return pd.DataFrame(
        {
            ITEM_ID: _ids(raw, ITEM_ID, path, sep="|", encoding="latin-1"),
            TITLE: raw[TITLE],
            GENRES: _join_flags(raw[flags].to_numpy() != 0, genres, raw.index),
            RELEASE_DATE: raw[RELEASE_DATE],
            IMDB_URL: raw[IMDB_URL],
        }
    )


# --- users ----------------------------------------------------------------------------------
def read_ml100k_users(path: Path | str) -> pd.DataFrame:
    """Read an ml-100k ``u.user`` file -> ``user_id, age, gender, occupation, zip_code``."""
    path = Path(path)
    users = io.read_delimited(
        path,
        [USER_ID, AGE, GENDER, OCCUPATION, ZIP_CODE],
        sep="|",
        encoding="latin-1",
        integer=[AGE],
        what="user file",
    )
    users[USER_ID] = _ids(users, USER_ID, path, sep="|", encoding="latin-1")
    return users


def read_dat_users(path: Path | str) -> pd.DataFrame:
    """Read an ml-1m ``users.dat`` -> ``user_id, age, age_group, gender, occupation, zip_code``.

    ``age`` is the README's age code (the lower bound of the group), ``age_group`` its label,
    ``occupation`` the label of the occupation code (an unlisted code keeps its number).
    """
    path = Path(path)
    encoding = text_encoding(path)
    raw = io.read_delimited(
        path,
        [USER_ID, GENDER, "age_code", "occupation_code", ZIP_CODE],
        sep="::",
        encoding=encoding,
        integer=["age_code", "occupation_code"],
        what="user file",
    )
    return pd.DataFrame(
        {
            USER_ID: _ids(raw, USER_ID, path, sep="::", encoding=encoding),
            AGE: raw["age_code"],
            AGE_GROUP: _label_codes(raw["age_code"], ML1M_AGE_GROUPS),
            GENDER: raw[GENDER],
            OCCUPATION: _label_codes(raw["occupation_code"], ML1M_OCCUPATIONS),
            ZIP_CODE: raw[ZIP_CODE],
        }
    )


# --- helpers --------------------------------------------------------------------------------
def _join_flags(flags: np.ndarray, names: Sequence[str], index: pd.Index) -> pd.Series:
    """[n, g] booleans -> ``"A|B"`` per row (``""`` for none), one vectorized pass per genre."""
    joined = pd.Series("", index=index, dtype="str")
    for j, name in enumerate(names):
        joined = joined + np.where(flags[:, j], name + GENRE_SEPARATOR, "")
    return joined.str.removesuffix(GENRE_SEPARATOR)


def canonical_genres(genres: pd.Series) -> pd.Series:
    """``(no genres listed)`` -> ``""``; other values unchanged."""
    return genres.where(genres != NO_GENRES, "")


def _label_codes(codes: pd.Series, labels: Mapping[int, str]) -> pd.Series:
    """Code -> label; a code the README does not list keeps its number (as text)."""
    return codes.map(labels).fillna(codes.astype("str")).astype("str")


def tag_text(item_ids: pd.Series, tag_items: pd.Series, tags: pd.Series) -> pd.Series:
    """Per item of ``item_ids``: its distinct tags, lower-cased, space-joined ("" for none)."""
    frame = pd.DataFrame({ITEM_ID: tag_items, "tag": tags.str.strip().str.lower()})
    frame = frame[frame["tag"] != ""].drop_duplicates()
    text = frame.groupby(ITEM_ID, sort=False)["tag"].agg(" ".join)
    return item_ids.map(text).fillna("").astype("str")
