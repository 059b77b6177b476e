"""Source readers: MovieLens (every GroupLens layout) and generic logs -> canonical ``Dataset``.

Readers convert, they do not judge: NaN or out-of-range ratings, duplicates, future timestamps and
ids missing from the item table pass through unchanged, for the validation stage to report. What
they refuse is input they cannot convert at all (a missing file, a wrong separator or encoding, a
malformed line, a non-integer id, a missing column), with a ``DataError`` that names the file, the
column and the line. All parsing is vectorized (``recsys.data.io.read_delimited``); the slow
line-by-line pass runs only to locate an error.

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

import importlib
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pandas as pd

from recsys.config import CsvConfig, DataConfig, SyntheticConfig
from recsys.data import io
from recsys.errors import ConfigError, DataError, location
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
    ZIP_CODE,
    Dataset,
)

MOVIELENS_URL: Final = "https://files.grouplens.org/datasets/movielens"

MOVIELENS_MD5: Final[Mapping[str, str]] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-10m": "ce571fd55effeba0271552578f2648bd",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
"""MD5 of the official archives, as GroupLens publishes them in ``<name>.zip.md5`` (and as several
independent projects pin them). ml-latest and ml-latest-small are re-released in place, so they
are checked against the ``.md5`` file fetched from the same server instead."""

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

_ITEM_CORE: Final = (ITEM_ID, TITLE, GENRES)
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_TSV_SUFFIXES: Final = (".tsv", ".tab")
_NAME_RE: Final = re.compile(r"ml-[a-z0-9]+(?:-[a-z0-9]+)*")
_MD5_RE: Final = re.compile(r"\b[0-9a-fA-F]{32}\b")

SyntheticGenerator = Callable[[SyntheticConfig], Dataset]


# --- entry point ----------------------------------------------------------------------------
def load_source(
    cfg: DataConfig,
    path: Path | str | None = None,
    *,
    synthetic_generate: SyntheticGenerator | None = None,
) -> Dataset:
    """Read the configured source (``cfg.source``) into a canonical ``Dataset``.

    Args:
      cfg: the ``data`` section of ``params.yaml``.
      path: overrides ``cfg.path`` (a MovieLens directory, or the interaction file of a ``csv``
        source); unused for ``synthetic``.
      synthetic_generate: the generator for ``synthetic`` (default
        ``recsys.data.synthetic.generate``); tests pass a stand-in.
    """
    if cfg.source == "synthetic":
        if synthetic_generate is None:
            synthetic: object = importlib.import_module("recsys.data.synthetic")
            synthetic_generate = synthetic.generate  # type: ignore[attr-defined]
        return synthetic_generate(cfg.synthetic)
    chosen = path if path is not None else cfg.path
    if chosen is None or str(chosen) == "":
        example = "data/raw/ml-100k" if cfg.source == "movielens" else "data/raw/events.csv"
        raise ConfigError(
            f"no input path for data source '{cfg.source}'",
            where="params.yaml: data.path",
            fix=f"set data.path (e.g. {example}) or pass --path",
        )
    if cfg.source == "movielens":
        return read_movielens(Path(chosen))
    if cfg.source == "csv":
        return read_csv_source(Path(chosen), cfg.csv)
    raise ConfigError(
        f"unknown data source '{cfg.source}'",
        where="params.yaml: data.source",
        fix="use one of: synthetic, movielens, csv",
    )


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
    interactions = _require_rows(read_ratings_file(files["interactions"]), files["interactions"])
    items = users = None
    if (directory / "u.item").is_file():
        files["items"] = directory / "u.item"
        items = read_ml100k_items(files["items"])
    if (directory / "u.user").is_file():
        files["users"] = directory / "u.user"
        users = read_ml100k_users(files["users"])
    return _movielens_dataset("ml-100k", interactions, items, users, STAR_SCALE, files)


def _read_ml1m(directory: Path) -> Dataset:
    files = {"interactions": directory / "ratings.dat"}
    interactions = read_ratings_file(files["interactions"], sep="::", encoding="latin-1")
    _require_rows(interactions, files["interactions"])
    items = _read_dat_movies(directory, files, encoding="latin-1")
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
    files = {"interactions": directory / "ratings.dat"}
    interactions = read_ratings_file(files["interactions"], sep="::", encoding="utf-8")
    _require_rows(interactions, files["interactions"])
    items = _read_dat_movies(directory, files, encoding="utf-8")
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
    items[GENRES] = _canonical_genres(items[GENRES])
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
    interactions = _require_rows(raw.astype(INTERACTION_DTYPES), files["interactions"])
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
        items[GENRES] = _canonical_genres(items[GENRES])
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
    return Dataset(
        interactions=interactions,
        items=items,
        users=users,
        name=name,
        feedback=EXPLICIT,
        rating_scale=scale,
        source_files={table: str(p) for table, p in files.items()},
    )


def _join_flags(flags: np.ndarray, names: Sequence[str], index: pd.Index) -> pd.Series:
    """[n, g] booleans -> ``"A|B"`` per row (``""`` for none), one vectorized pass per genre."""
    joined = pd.Series("", index=index, dtype="str")
    for j, name in enumerate(names):
        joined = joined + np.where(flags[:, j], name + GENRE_SEPARATOR, "")
    return joined.str.removesuffix(GENRE_SEPARATOR)


def _canonical_genres(genres: pd.Series) -> pd.Series:
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


def _require_rows(interactions: pd.DataFrame, path: Path) -> pd.DataFrame:
    if interactions.empty:
        raise DataError(
            "file holds no interactions (only a header or blank lines)",
            where=location(path),
            fix="provide a file with at least one interaction",
        )
    return interactions


# --- generic CSV / TSV / Parquet logs -------------------------------------------------------
def read_csv_source(path: Path | str, cfg: CsvConfig) -> Dataset:
    """Read a generic interaction log (CSV, TSV or Parquet, by suffix) into a ``Dataset``.

    Columns: ``cfg.columns`` maps canonical names to the file's (unmapped ones are looked up under
    their own name). Without a header (``cfg.header: false``) the file's fields are named by
    position, ``"1"`` for the first; unmapped columns default to ``user_id`` 1, ``item_id`` 2,
    ``rating`` 3, ``timestamp`` 4 (implicit logs: ``timestamp`` 3). A ``.tsv``/``.tab`` file is
    tab-separated unless ``cfg.sep`` says otherwise.

    ``timestamp`` is required for every log, implicit ones included (temporal splits and the
    freshness checks need it): ``s`` and ``ms`` are Unix epochs (fractions are floored),
    ``datetime`` ISO 8601 strings (naive ones are taken as UTC). Implicit logs
    (``cfg.implicit``) keep a mapped ``rating`` column as the count, otherwise every row gets
    rating 1.0; their ``rating_scale`` is None. Explicit logs get ``cfg.rating_scale`` (default
    1..5), which validation checks unless ``validation.rating_min`` / ``max`` override it.

    ``cfg.items_path`` / ``cfg.users_path`` (relative paths: beside the log first, then as given)
    name optional side tables, with a header (or Parquet), mapped by ``item_columns`` /
    ``user_columns``. Items need ``item_id`` and ``title``; a missing ``genres`` or ``text``
    column reads as ``""``. Users need ``user_id``. Other mapped columns are kept as attributes.
    """
    path = Path(path)
    mapping = dict(cfg.columns)
    unknown = sorted(set(mapping) - set(INTERACTION_COLUMNS))
    if unknown:
        raise ConfigError(
            f"unknown canonical column(s) {unknown} in data.csv.columns",
            where="params.yaml: data.csv.columns",
            fix=f"keys are canonical names: {list(INTERACTION_COLUMNS)}",
        )
    wanted = [USER_ID, ITEM_ID, TIMESTAMP]
    if not cfg.implicit or RATING in mapping:
        wanted.insert(2, RATING)
    table = _LogFile(path, cfg)
    file_cols = table.resolve(wanted, mapping, _default_positions(cfg.implicit))
    numeric = [file_cols[RATING]] if RATING in file_cols else []
    if cfg.timestamp_unit != "datetime":
        numeric.append(file_cols[TIMESTAMP])
    raw = table.read(
        list(dict.fromkeys(file_cols.values())),
        integer=[file_cols[USER_ID], file_cols[ITEM_ID]],
        numeric=numeric,
    )
    _require_rows(raw, path)
    interactions = pd.DataFrame(
        {
            USER_ID: table.as_int64(raw, file_cols[USER_ID]),
            ITEM_ID: table.as_int64(raw, file_cols[ITEM_ID]),
            RATING: table.as_float(raw, file_cols[RATING]) if RATING in file_cols else 1.0,
            TIMESTAMP: table.as_unix_seconds(raw, file_cols[TIMESTAMP], cfg.timestamp_unit),
        }
    ).astype(INTERACTION_DTYPES)
    files = {"interactions": str(path)}
    items = users = None
    if cfg.items_path:
        items_file = _side_path(cfg.items_path, path, "items_path")
        items = _read_side_table(items_file, cfg, cfg.item_columns, [ITEM_ID, TITLE], "items")
        for optional in (GENRES, TEXT):
            if optional not in items:
                items[optional] = ""
            items[optional] = items[optional].fillna("").astype("str")
        items[GENRES] = _canonical_genres(items[GENRES])
        items = items[[ITEM_ID, TITLE, GENRES, *(c for c in items if c not in _ITEM_CORE)]]
        files["items"] = str(items_file)
    if cfg.users_path:
        users_file = _side_path(cfg.users_path, path, "users_path")
        users = _read_side_table(users_file, cfg, cfg.user_columns, [USER_ID], "users")
        if AGE in users and users[AGE].dtype != "int64":
            age = pd.to_numeric(users[AGE], errors="coerce")
            users[AGE] = age.astype("int64") if age.notna().all() and (age % 1 == 0).all() else age
        files["users"] = str(users_file)
    scale = None if cfg.implicit else cfg.rating_scale
    return Dataset(
        interactions=interactions,
        items=items,
        users=users,
        name=path.stem,
        feedback=IMPLICIT if cfg.implicit else EXPLICIT,
        rating_scale=scale,
        source_files=files,
    )


def _default_positions(implicit: bool) -> dict[str, str]:
    if implicit:
        return {USER_ID: "1", ITEM_ID: "2", TIMESTAMP: "3"}
    return {USER_ID: "1", ITEM_ID: "2", RATING: "3", TIMESTAMP: "4"}


class _LogFile:
    """One CSV/TSV/Parquet file: its format, header and row -> line mapping for messages."""

    def __init__(self, path: Path, cfg: CsvConfig, *, header: bool | None = None) -> None:
        self.path = path
        self.parquet = path.suffix.lower() in _PARQUET_SUFFIXES
        self.header = cfg.header if header is None else header
        self.encoding = cfg.encoding
        self.sep = cfg.sep
        if path.suffix.lower() in _TSV_SUFFIXES and cfg.sep == ",":
            self.sep = "\t"
        self.found: list[str] | None = None

    def columns(self) -> list[str]:
        """The file's column names (field numbers ``"1"``... without a header)."""
        if self.found is None:
            if self.parquet:
                self.found = io.parquet_column_names(self.path, "interaction log")
            else:
                first = io.read_header(
                    io.require_file(self.path, "interaction log"),
                    sep=self.sep,
                    encoding=self.encoding,
                    quoted=True,
                )
                self.found = first if self.header else [str(i + 1) for i in range(len(first))]
        return self.found

    def resolve(
        self, wanted: Sequence[str], mapping: Mapping[str, str], positions: Mapping[str, str]
    ) -> dict[str, str]:
        """Canonical name -> the file's column for each of ``wanted``; checks they exist."""
        by_position = not self.header and not self.parquet
        out = {c: mapping.get(c, positions.get(c, c) if by_position else c) for c in wanted}
        found = self.columns()
        for canonical, name in out.items():
            if name in found:
                continue
            if by_position:
                raise DataError(
                    f"'{canonical}' is mapped to field {name}, but the first line has "
                    f"{len(found)} {io.describe_separator(self.sep)}-separated fields",
                    where=location(self.path, row=1),
                    fix=f"set data.csv.columns.{canonical} to a field number from 1 to "
                    f"{len(found)}, or set data.csv.header: true if the file has a header",
                )
            io.check_columns(
                self.path,
                [name],
                found,
                sep=self.sep,
                fix=f"map it in params.yaml: data.csv.columns.{canonical}: <column in the file>",
            )
        return out

    def read(
        self, columns: Sequence[str], *, integer: Sequence[str], numeric: Sequence[str]
    ) -> pd.DataFrame:
        if self.parquet:
            return io.read_parquet_columns(self.path, columns)
        return io.read_delimited(
            self.path,
            list(self.columns()) if not self.header else columns,
            sep=self.sep,
            header=self.header,
            encoding=self.encoding,
            quoted=True,
            integer=integer,
            numeric=numeric,
            what="interaction log",
        )

    def where(self, column: str, index: int) -> str:
        """The location of data row ``index`` (0-based) of ``column``."""
        if self.parquet:
            return f"{location(self.path, column=column)}, row {index + 1}"
        line = io.record_line(
            self.path,
            index,
            sep=self.sep,
            header=self.header,
            encoding=self.encoding,
            quoted=True,
        )
        return location(self.path, column=column, row=line)

    def _fail(self, column: str, index: int, what: str, fix: str) -> DataError:
        return DataError(what, where=self.where(column, index), fix=fix)

    def as_int64(self, raw: pd.DataFrame, column: str) -> pd.Series:
        values = raw[column]
        if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
            return values.astype("int64")
        number = pd.to_numeric(values, errors="coerce")
        bad = number.isna().to_numpy() | (number.fillna(0) % 1 != 0).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise self._fail(
                column,
                i,
                f"column '{column}' must hold an integer id on every row; found {values.iloc[i]!r}",
                "fix the value, or map the column to the right one in data.csv.columns",
            )
        return number.astype("int64")

    def as_float(self, raw: pd.DataFrame, column: str) -> pd.Series:
        values = raw[column]
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            return values.astype("float64")
        number = pd.to_numeric(values, errors="coerce")
        bad = (number.isna() & values.notna()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise self._fail(
                column,
                i,
                f"column '{column}' must be numeric; found {values.iloc[i]!r}",
                "use numbers ('.' as the decimal point) and leave missing values empty",
            )
        return number.astype("float64")

    def as_unix_seconds(self, raw: pd.DataFrame, column: str, unit: str) -> pd.Series:
        values = raw[column]
        if unit == "datetime":
            if pd.api.types.is_datetime64_any_dtype(values.dtype):
                stamps = pd.to_datetime(values, utc=True)
            else:
                text = values.astype("str")
                stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
            bad = stamps.isna().to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise self._fail(
                    column,
                    i,
                    f"column '{column}' must hold ISO 8601 date-times; found {values.iloc[i]!r}",
                    "write e.g. 2024-05-01T12:30:00Z, or set data.csv.timestamp_unit to s or ms",
                )
            epoch = pd.Timestamp("1970-01-01", tz="UTC")
            return ((stamps - epoch) // pd.Timedelta(seconds=1)).astype("int64")
        if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
            seconds = values // 1000 if unit == "ms" else values
            return seconds.astype("int64")
        number = self.as_float(raw, column)
        bad = ~np.isfinite(number.to_numpy())
        if bad.any():
            i = int(np.argmax(bad))
            raise self._fail(
                column,
                i,
                f"column '{column}' needs a timestamp on every row; found {values.iloc[i]!r}",
                "fill in the timestamp (Unix seconds, or set data.csv.timestamp_unit)",
            )
        if unit == "ms":
            number = number / 1000.0
        return np.floor(number).astype("int64")


def _side_path(configured: str, log: Path, key: str) -> Path:
    candidate = Path(configured)
    if candidate.is_absolute():
        return candidate
    for option in (log.parent / candidate, candidate):
        if option.exists():
            return option
    raise DataError(
        f"data.csv.{key} not found: looked for {log.parent / candidate} and {candidate}",
        where=location(log.parent / candidate),
        fix=f"set data.csv.{key} to an existing file (relative paths: beside the log first)",
    )


def _read_side_table(
    path: Path,
    cfg: CsvConfig,
    mapping: Mapping[str, str],
    required: Sequence[str],
    table: str,
) -> pd.DataFrame:
    """A side table (items or users) with a header, mapped onto canonical names."""
    log = _LogFile(path, cfg, header=True)
    optional = (GENRES, TEXT) if table == "items" else (AGE, GENDER, OCCUPATION, ZIP_CODE)
    found = log.columns()
    wanted = {c: mapping.get(c, c) for c in required}
    extra = [c for c in (*optional, *mapping) if c not in wanted]
    for c in extra:
        if c in mapping or c in found:
            wanted[c] = mapping.get(c, c)
    for canonical, name in wanted.items():
        if name not in found:
            io.check_columns(
                path,
                [name],
                found,
                sep=log.sep,
                fix=f"map it in params.yaml: data.csv.{table[:-1]}_columns.{canonical}: "
                "<column in the file>",
            )
    id_column = wanted[required[0]]
    numeric = [wanted[AGE]] if AGE in wanted and not log.parquet else []
    raw = log.read(list(dict.fromkeys(wanted.values())), integer=[id_column], numeric=numeric)
    out = pd.DataFrame({canonical: raw[name] for canonical, name in wanted.items()})
    out[required[0]] = log.as_int64(raw, id_column)
    return out


# --- download -------------------------------------------------------------------------------
def download_movielens(
    name: str,
    dest: Path | str,
    *,
    base_url: str = MOVIELENS_URL,
    timeout: float = 60,
) -> Path:
    """Download ``<base_url>/<name>.zip``, verify its MD5 and extract it into ``dest/<name>/``.

    The checksum is ``MOVIELENS_MD5[name]`` where known, else the one GroupLens publishes in
    ``<name>.zip.md5`` beside the archive. The archive is streamed to a temporary file; the
    directory is swapped in only after the checksum matched and extraction finished, so a
    failure (no network, HTTP error, mismatch, bad zip) raises ``DataError`` and leaves ``dest``
    as it was. An existing ``dest/<name>/`` is replaced.
    """
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"not a MovieLens archive name: {name!r}",
            fix="use a GroupLens name such as ml-100k, ml-1m, ml-10m, ml-25m or ml-latest-small",
        )
    dest = Path(dest)
    out = dest / name
    url = f"{base_url.rstrip('/')}/{name}.zip"
    expected = MOVIELENS_MD5.get(name) or _published_md5(url, out, timeout)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}.download-", dir=dest) as tmp:
            archive = Path(tmp) / f"{name}.zip"
            with _open_url(url, out, timeout) as response:
                try:
                    digests = io.copy_stream(response, archive)
                except (OSError, HTTPException) as exc:
                    raise _network_error(url, out, exc) from exc
            if digests["md5"] != expected.lower():
                raise DataError(
                    f"checksum mismatch for {url}: expected md5 {expected.lower()}, "
                    f"got {digests['md5']}",
                    where=url,
                    fix="retry the download; if it persists, fetch the archive by hand and "
                    "compare it with the .md5 file GroupLens publishes beside it",
                )
            io.extract_zip(archive, out)
    except BaseException:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave no trace of a failed download
        raise
    return out


def _published_md5(url: str, out: Path, timeout: float) -> str:
    md5_url = f"{url}.md5"
    with _open_url(md5_url, out, timeout) as response:
        try:
            text = response.read(4096).decode("ascii", errors="replace")
        except (OSError, HTTPException) as exc:
            raise _network_error(md5_url, out, exc) from exc
    match = _MD5_RE.search(text)
    if match is None:
        raise DataError(
            f"no MD5 digest in {md5_url}: {text[:80]!r}",
            where=md5_url,
            fix="check base_url, or download and verify the archive by hand",
        )
    return match.group(0).lower()


class _Response(io.Readable, Protocol):
    def __enter__(self) -> _Response: ...
    def __exit__(self, *exc: object) -> None: ...


def _open_url(url: str, out: Path, timeout: float) -> _Response:
    request = urllib.request.Request(url, headers={"User-Agent": "recsys-download"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raise DataError(
            f"download failed: HTTP {exc.code} {exc.reason} for {url}",
            where=url,
            fix=f"check the data set name and base_url, or {_manual_fix(url, out)}",
        ) from exc
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        raise _network_error(url, out, exc) from exc


def _network_error(url: str, out: Path, exc: BaseException) -> DataError:
    reason = getattr(exc, "reason", None) or exc
    return DataError(
        f"cannot download {url}: {reason} (no network, or the server is unreachable)",
        where=url,
        fix=_manual_fix(url, out),
    )


def _manual_fix(url: str, out: Path) -> str:
    url = url.removesuffix(".md5")  # the same advice when the checksum file was unreachable
    archive = url.rsplit("/", 1)[-1]
    return (
        f"download {url} on a machine with network access, unzip it and place its files "
        f"(u.data, ratings.dat or ratings.csv and the rest) in {out}/, then set data.path "
        f"to that directory; verify {archive} against {url}.md5 first"
    )


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
