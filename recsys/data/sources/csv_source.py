"""Generic interaction logs (CSV, TSV or Parquet) and their side tables -> canonical ``Dataset``.

Readers convert, they do not judge (see ``recsys.data.sources``); ``read_csv_source`` describes
the column mapping and the timestamp units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsys.config import CsvConfig
from recsys.data import io
from recsys.data.sources.ids import canonical_ids, check_dataset_ids, interactions_frame
from recsys.data.sources.movielens_files import canonical_genres
from recsys.errors import ConfigError, DataError, location
from recsys.schema import (
    AGE,
    EXPLICIT,
    GENRE_SEPARATOR,
    GENRES,
    IMPLICIT,
    INTERACTION_COLUMNS,
    ITEM_ID,
    ITEM_REQUIRED,
    RATING,
    TEXT,
    TIMESTAMP,
    TITLE,
    USER_ATTRIBUTES,
    USER_ID,
    Dataset,
)

WEIGHT: Final = "weight"
"""``data.csv.columns`` key of an implicit strength (plays, clicks): read into ``rating``, and
the log is implicit feedback."""
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_TSV_SUFFIXES: Final = (".tsv", ".tab")


# --- generic CSV / TSV / Parquet logs -------------------------------------------------------
def read_csv_source(path: Path | str, cfg: CsvConfig) -> Dataset:
    """Read a generic interaction log (CSV, TSV or Parquet, by suffix) into a ``Dataset``.

    Columns: ``cfg.columns`` maps canonical names to the file's (unmapped ones are looked up under
    their own name). Without a header (``cfg.header: false``) the file's fields are named by
    position, ``"1"`` for the first; unmapped columns default to ``user_id`` 1, ``item_id`` 2,
    ``rating`` 3, ``timestamp`` 4 (implicit logs: ``timestamp`` 3). A ``.tsv``/``.tab`` file is
    tab-separated unless ``cfg.sep`` says otherwise.

    ``timestamp`` is required for every log, implicit ones included (temporal splits and the
    freshness checks need it), unless ``timestamp_unit`` is ``none`` (every row 0): ``s`` and
    ``ms`` are Unix epochs (fractions are floored), ``datetime`` ISO 8601 strings (naive ones
    are taken as UTC). Implicit logs (``cfg.implicit``, or a ``weight`` column mapped instead of
    ``rating``) keep that column as the count, otherwise every row gets rating 1.0; their
    ``rating_scale`` is None. Explicit logs get ``cfg.rating_scale`` (default 1..5), which
    validation checks unless ``validation.rating_min`` / ``max`` override it. Ids may be
    integers or text (``recsys.data.sources.ids``).

    ``cfg.items_path`` / ``cfg.users_path`` (relative paths: beside the log first, then as given)
    name optional side tables, read by ``read_item_table`` / ``read_user_table``.
    """
    path = Path(path)
    mapping = dict(cfg.columns)
    unknown = sorted(set(mapping) - {*INTERACTION_COLUMNS, WEIGHT})
    if unknown:
        raise ConfigError(
            f"unknown canonical column(s) {unknown} in data.csv.columns",
            where="params.yaml: data.csv.columns",
            fix=f"keys are canonical names: {[*INTERACTION_COLUMNS, WEIGHT]}",
        )
    if WEIGHT in mapping and RATING in mapping:
        raise ConfigError(
            "data.csv.columns maps both 'rating' and 'weight'",
            where="params.yaml: data.csv.columns",
            fix="map 'rating' for explicit ratings or 'weight' for counts/clicks, not both",
        )
    implicit = cfg.implicit or WEIGHT in mapping
    if WEIGHT in mapping:
        mapping[RATING] = mapping.pop(WEIGHT)
    wanted = [USER_ID, ITEM_ID]
    if not implicit or RATING in mapping:
        wanted.append(RATING)
    if cfg.timestamp_unit != "none":
        wanted.append(TIMESTAMP)
    table = _LogFile(path, cfg)
    file_cols = table.resolve(wanted, mapping, _default_positions(implicit))
    numeric = [file_cols[RATING]] if RATING in file_cols else []
    if cfg.timestamp_unit not in ("datetime", "none"):
        numeric.append(file_cols[TIMESTAMP])
    raw = table.read(list(dict.fromkeys(file_cols.values())), integer=[], numeric=numeric)
    io.require_rows(raw, path)
    interactions = interactions_frame(
        table.ids(raw, file_cols[USER_ID]),
        table.ids(raw, file_cols[ITEM_ID]),
        table.as_float(raw, file_cols[RATING]) if RATING in file_cols else 1.0,
        table.as_unix_seconds(raw, file_cols[TIMESTAMP], cfg.timestamp_unit)
        if TIMESTAMP in file_cols
        else 0,
    )
    files = {"interactions": str(path)}
    items = users = None
    if cfg.items_path:
        items_file = side_path(cfg.items_path, path, "items_path")
        items = read_item_table(items_file, cfg)
        files["items"] = str(items_file)
    if cfg.users_path:
        users_file = side_path(cfg.users_path, path, "users_path")
        users = read_user_table(users_file, cfg)
        files["users"] = str(users_file)
    scale = None if implicit else cfg.rating_scale
    dataset = Dataset(
        interactions=interactions,
        items=items,
        users=users,
        name=path.stem,
        feedback=IMPLICIT if implicit else EXPLICIT,
        rating_scale=scale,
        source_files=files,
    )
    check_dataset_ids(dataset)
    return dataset


def read_item_table(path: Path | str, cfg: CsvConfig) -> pd.DataFrame:
    """An item table (CSV/TSV with a header, or Parquet) mapped by ``cfg.item_columns``.

    ``item_id`` is required; ``title``, ``genres`` and ``text`` read as ``""`` when absent.
    ``cfg.item_text`` columns are appended to ``text`` (space-joined), ``cfg.item_categorical``
    ones to ``genres`` as ``column=value`` (so content models see them as categories), and
    ``cfg.item_numeric`` ones kept as float64 attributes; other mapped columns are kept as read.
    """
    path = Path(path)
    named = [*cfg.item_text, *cfg.item_categorical, *cfg.item_numeric]
    mapping = {**{c: c for c in named}, **cfg.item_columns}
    items = _read_side_table(path, cfg, mapping, [ITEM_ID], "items")
    for optional in (TITLE, GENRES, TEXT):
        if optional not in items:
            items[optional] = ""
        items[optional] = items[optional].fillna("").astype("str")
    items[GENRES] = canonical_genres(items[GENRES])
    for column in cfg.item_text:
        items[TEXT] = (items[TEXT] + " " + items[column].fillna("").astype("str")).str.strip()
    for column in cfg.item_categorical:
        value = items[column].fillna("").astype("str")
        tag = (column + "=" + value).where(value != "", "")
        items[GENRES] = (items[GENRES] + GENRE_SEPARATOR + tag).str.strip(GENRE_SEPARATOR)
    for column in cfg.item_numeric:
        items[column] = pd.to_numeric(items[column], errors="coerce").astype("float64")
    return items[[*ITEM_REQUIRED, *(c for c in items if c not in ITEM_REQUIRED)]]


def read_user_table(path: Path | str, cfg: CsvConfig) -> pd.DataFrame:
    """A user table (CSV/TSV with a header, or Parquet) mapped by ``cfg.user_columns``;
    ``user_id`` is required, ``age``, ``gender``, ``occupation``, ``zip_code`` and any mapped
    column are kept (``age`` as int64 when every value is a whole number)."""
    users = _read_side_table(Path(path), cfg, cfg.user_columns, [USER_ID], "users")
    if AGE in users and users[AGE].dtype != "int64":
        age = pd.to_numeric(users[AGE], errors="coerce")
        users[AGE] = age.astype("int64") if age.notna().all() and (age % 1 == 0).all() else age
    return users


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

    def ids(self, raw: pd.DataFrame, column: str) -> pd.Series:
        """The column as canonical ids (``int64`` or ``str``, ``recsys.data.sources.ids``)."""
        return canonical_ids(raw[column], column, lambda i: self.where(column, i))

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


def side_path(configured: str, log: Path, key: str) -> Path:
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
    optional = (TITLE, GENRES, TEXT) if table == "items" else USER_ATTRIBUTES
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
    raw = log.read(list(dict.fromkeys(wanted.values())), integer=[], numeric=numeric)
    out = pd.DataFrame({canonical: raw[name] for canonical, name in wanted.items()})
    out[required[0]] = log.ids(raw, id_column)
    return out
