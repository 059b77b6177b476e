"""MovieLens readers: every GroupLens layout -> canonical ``Dataset``.

Readers convert, they do not judge (see ``recsys.data.sources``).

MovieLens layouts, detected from the files in the directory:

==========  ==========================================  =========  ========  ===============
layout      files                                       separator  encoding  rating scale
==========  ==========================================  =========  ========  ===============
ml-100k     u.data, u.item, u.genre, u.user             tab / |    latin-1*  1..5
ml-1m       ratings.dat, movies.dat, users.dat          ::         latin-1   1..5
ml-10m      ratings.dat, movies.dat, tags.dat           ::         utf-8     0.5..5 (halves)
ml-20m +    ratings.csv, movies.csv, tags.csv (header)  ,          utf-8     0.5..5 (halves)
==========  ==========================================  =========  ========  ===============

(``ml-20m +`` is ml-20m, ml-25m, ml-32m, ml-latest and ml-latest-small.) Only the ratings file is
required; the item and user files are read when present, tags only together with the movies
file (they become the items' ``text``). *``u.data`` holds only digits; the text files are latin-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsys.data import io
from recsys.errors import DataError, location
from recsys.schema import (
    AGE,
    GENDER,
    GENRE_SEPARATOR,
    GENRES,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    OCCUPATION,
    RATING,
    TEXT,
    TIMESTAMP,
    TITLE,
    USER_ID,
    ZIP_CODE,
    Dataset,
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

STAR_SCALE: Final = (1.0, 5.0)
"""ml-100k and ml-1m: whole stars."""
HALF_STAR_SCALE: Final = (0.5, 5.0)
"""ml-10m and later: half stars."""


# --- MovieLens ------------------------------------------------------------------------------
def read_movielens(path: Path | str) -> Dataset:
    """Read a MovieLens directory in its original GroupLens layout (see the module docstring).

    ``path`` is the extracted directory (a directory holding exactly one such directory, or the
    ratings file itself, also works). Items get ``title``, ``genres`` (pipe-separated, ``""`` for
    none) and, where the release has tags, ``text``: the item's distinct tags, lower-cased and
    space-joined in first-use order. Users exist for ml-100k and ml-1m only.
    """
    layout, directory = detect_movielens_layout(path)
    if layout == "ml-100k":
        return _read_ml100k(directory)
    if layout == "ml-1m":
        return _read_ml1m(directory)
    if layout == "ml-10m":
        return _read_ml10m(directory)
    return _read_ml_csv(directory)


def detect_movielens_layout(path: Path | str) -> tuple[str, Path]:
    """``(layout, directory)``: layout is ``ml-100k``, ``ml-1m``, ``ml-10m`` or ``ml-csv``.

    Rules, first match wins: ``u.data`` -> ml-100k; ``ratings.dat`` with ``users.dat`` -> ml-1m;
    ``ratings.dat`` alone -> ml-10m; ``ratings.csv`` -> ml-csv (ml-20m, ml-25m, ml-latest...).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            "MovieLens directory not found",
            where=location(path),
            fix="download it (recsys data download --dataset ml-100k --dest data/raw), or set "
            "data.path / --path to where the files are",
        )
    if path.is_file():
        if path.name in ("u.data", "ratings.dat", "ratings.csv"):
            path = path.parent
        else:
            raise DataError(
                "expected a MovieLens directory, got a file",
                where=location(path),
                fix="point data.path at the extracted directory; read split files such as "
                "u1.base with read_ratings_file",
            )
    layout = _layout_of(path)
    if layout is not None:
        return layout, path
    nested = [d for d in sorted(path.iterdir()) if d.is_dir() and _layout_of(d) is not None]
    if len(nested) == 1:
        return str(_layout_of(nested[0])), nested[0]
    found = sorted(p.name for p in path.iterdir())
    raise DataError(
        "no MovieLens ratings file in directory; expected u.data (ml-100k), ratings.dat (ml-1m, "
        f"ml-10m) or ratings.csv (ml-20m, ml-25m, ml-latest); found: {found[:12]}",
        where=location(path),
        fix="point data.path at the directory extracted from the GroupLens archive",
    )


def _layout_of(directory: Path) -> str | None:
    if (directory / "u.data").is_file():
        return "ml-100k"
    if (directory / "ratings.dat").is_file():
        return "ml-1m" if (directory / "users.dat").is_file() else "ml-10m"
    if (directory / "ratings.csv").is_file():
        return "ml-csv"
    return None


def read_ratings_file(
    path: Path | str, *, sep: str = "\t", encoding: str = "utf-8"
) -> pd.DataFrame:
    """Read a headerless ``user<sep>item<sep>rating<sep>timestamp`` file -> interactions.

    The format of ml-100k ``u.data`` and its splits (``u1.base``, ``ua.test``, ...), of the
    benchmark splits (``train.tsv``, ``test.tsv``, ``negatives.tsv``) and, with ``sep="::"``, of
    ml-1m / ml-10m ``ratings.dat``. Returns ``INTERACTION_COLUMNS`` with ``INTERACTION_DTYPES``,
    rows in file order.
    """
    frame = io.read_delimited(
        Path(path),
        INTERACTION_COLUMNS,
        sep=sep,
        encoding=encoding,
        integer=(USER_ID, ITEM_ID, TIMESTAMP),
        numeric=(RATING,),
        what="ratings file",
    )
    return frame.astype(INTERACTION_DTYPES)


def _read_ml100k(directory: Path) -> Dataset:
    files = {"interactions": directory / "u.data"}
    interactions = io.require_rows(read_ratings_file(files["interactions"]), files["interactions"])
    items = users = None
    if (directory / "u.item").is_file():
        files["items"] = directory / "u.item"
        items = read_ml100k_items(files["items"])
    if (directory / "u.user").is_file():
        files["users"] = directory / "u.user"
        users = read_ml100k_users(files["users"])
    return _movielens_dataset("ml-100k", interactions, items, users, STAR_SCALE, files)


def _read_dat_release(
    directory: Path, encoding: str
) -> tuple[dict[str, Path], pd.DataFrame, pd.DataFrame | None]:
    """The files read so far, ``ratings.dat`` and ``movies.dat`` (None when absent) of a
    ``::``-separated release (ML-1M in latin-1, ML-10M in UTF-8)."""
    files = {"interactions": directory / "ratings.dat"}
    interactions = read_ratings_file(files["interactions"], sep="::", encoding=encoding)
    io.require_rows(interactions, files["interactions"])
    return files, interactions, _read_dat_movies(directory, files, encoding=encoding)


def _read_ml1m(directory: Path) -> Dataset:
    files, interactions, items = _read_dat_release(directory, encoding="latin-1")
    users = None
    if (directory / "users.dat").is_file():
        files["users"] = directory / "users.dat"
        raw = io.read_delimited(
            files["users"],
            [USER_ID, GENDER, "age_code", "occupation_code", ZIP_CODE],
            sep="::",
            encoding="latin-1",
            integer=[USER_ID, "age_code", "occupation_code"],
            what="user file",
        )
        users = pd.DataFrame(
            {
                USER_ID: raw[USER_ID],
                AGE: raw["age_code"],
                AGE_GROUP: _label_codes(raw["age_code"], ML1M_AGE_GROUPS),
                GENDER: raw[GENDER],
                OCCUPATION: _label_codes(raw["occupation_code"], ML1M_OCCUPATIONS),
                ZIP_CODE: raw[ZIP_CODE],
            }
        )
    return _movielens_dataset("ml-1m", interactions, items, users, STAR_SCALE, files)


def _read_ml10m(directory: Path) -> Dataset:
    files, interactions, items = _read_dat_release(directory, encoding="utf-8")
    if items is not None and (directory / "tags.dat").is_file():
        files["tags"] = directory / "tags.dat"
        tags = io.read_delimited(
            files["tags"],
            [USER_ID, ITEM_ID, "tag", TIMESTAMP],
            sep="::",
            encoding="utf-8",
            integer=[USER_ID, ITEM_ID, TIMESTAMP],
            what="tag file",
        )
        items[TEXT] = _tag_text(items[ITEM_ID], tags[ITEM_ID], tags["tag"])
    return _movielens_dataset("ml-10m", interactions, items, None, HALF_STAR_SCALE, files)


def _read_dat_movies(directory: Path, files: dict[str, Path], encoding: str) -> pd.DataFrame | None:
    if not (directory / "movies.dat").is_file():
        return None
    files["items"] = directory / "movies.dat"
    items = io.read_delimited(
        files["items"],
        [ITEM_ID, TITLE, GENRES],
        sep="::",
        encoding=encoding,
        integer=[ITEM_ID],
        what="item file",
    )
    items[GENRES] = canonical_genres(items[GENRES])
    return items


def _read_ml_csv(directory: Path) -> Dataset:
    files = {"interactions": directory / "ratings.csv"}
    raw = io.read_delimited(
        files["interactions"],
        ["userId", "movieId", "rating", "timestamp"],
        sep=",",
        header=True,
        quoted=True,
        integer=["userId", "movieId", "timestamp"],
        numeric=["rating"],
        what="ratings file",
    )
    raw.columns = list(INTERACTION_COLUMNS)
    interactions = io.require_rows(raw.astype(INTERACTION_DTYPES), files["interactions"])
    items = None
    if (directory / "movies.csv").is_file():
        files["items"] = directory / "movies.csv"
        items = io.read_delimited(
            files["items"],
            ["movieId", "title", "genres"],
            sep=",",
            header=True,
            quoted=True,
            integer=["movieId"],
            what="item file",
        )
        items.columns = [ITEM_ID, TITLE, GENRES]
        items[GENRES] = canonical_genres(items[GENRES])
        if (directory / "tags.csv").is_file():
            files["tags"] = directory / "tags.csv"
            tags = io.read_delimited(
                files["tags"],
                ["movieId", "tag"],
                sep=",",
                header=True,
                quoted=True,
                integer=["movieId"],
                what="tag file",
            )
            items[TEXT] = _tag_text(items[ITEM_ID], tags["movieId"], tags["tag"])
    name = directory.name if directory.name.startswith("ml-") else "movielens"
    return _movielens_dataset(name, interactions, items, None, HALF_STAR_SCALE, files)


def _movielens_dataset(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    scale: tuple[float, float],
    files: Mapping[str, Path],
) -> Dataset:
    """Every MovieLens release holds star ratings: ``Dataset``'s default, explicit feedback."""
    sources = {table: str(p) for table, p in files.items()}
    return Dataset(interactions, items, users, name=name, rating_scale=scale, source_files=sources)


def _join_flags(flags: np.ndarray, names: Sequence[str], index: pd.Index) -> pd.Series:
    """[n, g] booleans -> ``"A|B"`` per row (``""`` for none), one vectorized pass per genre."""
    joined = pd.Series("", index=index, dtype="str")
    for j, name in enumerate(names):
        joined = joined + np.where(flags[:, j], name + GENRE_SEPARATOR, "")
    return joined.str.removesuffix(GENRE_SEPARATOR)


def canonical_genres(genres: pd.Series) -> pd.Series:
    return genres.where(genres != NO_GENRES, "")


def _label_codes(codes: pd.Series, labels: Mapping[int, str]) -> pd.Series:
    """Code -> label; a code the README does not list keeps its number (as text)."""
    return codes.map(labels).fillna(codes.astype("str")).astype("str")


def _tag_text(item_ids: pd.Series, tag_items: pd.Series, tags: pd.Series) -> pd.Series:
    """Per item of ``item_ids``: its distinct tags, lower-cased, space-joined ("" for none)."""
    frame = pd.DataFrame({ITEM_ID: tag_items, "tag": tags.str.strip().str.lower()})
    frame = frame[frame["tag"] != ""].drop_duplicates()
    text = frame.groupby(ITEM_ID, sort=False)["tag"].agg(" ".join)
    return item_ids.map(text).fillna("").astype("str")


# --- single MovieLens 100K side files -------------------------------------------------------
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
        integer=[ITEM_ID, *flags],
        what="item file",
    )
    return pd.DataFrame(
        {
            ITEM_ID: raw[ITEM_ID],
            TITLE: raw[TITLE],
            GENRES: _join_flags(raw[flags].to_numpy() != 0, genres, raw.index),
            RELEASE_DATE: raw[RELEASE_DATE],
            IMDB_URL: raw[IMDB_URL],
        }
    )


def read_ml100k_users(path: Path | str) -> pd.DataFrame:
    """Read an ml-100k ``u.user`` file -> ``user_id, age, gender, occupation, zip_code``."""
    return io.read_delimited(
        Path(path),
        [USER_ID, AGE, GENDER, OCCUPATION, ZIP_CODE],
        sep="|",
        encoding="latin-1",
        integer=[USER_ID, AGE],
        what="user file",
    )
