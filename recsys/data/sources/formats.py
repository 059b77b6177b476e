"""One file of any supported format -> a canonical table: the reader layer for single files.

``recsys benchmark`` (train/test/negatives files and ``--items`` / ``--users``) reads through
here, with the functions the pipeline's ``read_movielens`` and ``read_csv_source`` use, so a file
reads the same whichever command is given it.

==========  =====================================  ===========================================
format      interactions                           items / users
==========  =====================================  ===========================================
ml-100k     ``u.data`` lines (tab, no header:      ``u.item`` / ``u.user`` (``|``, latin-1)
            user, item, rating, timestamp)
ml-dat      ``ratings.dat`` (``::``)               ``movies.dat`` (+ ``tags.dat`` beside) /
                                                   ``users.dat``; latin-1 or UTF-8
ml-csv      ``ratings.csv`` (header userId,...)    ``movies.csv`` (+ ``tags.csv`` beside)
playcount   user, item, weight[, timestamp]; tab   -
            or comma; header optional; implicit
csv         header naming ``user_id``, ``item_id``, item / user table with a header; or any
            optional ``rating`` (explicit) or      columns mapped by ``data.csv``
            ``weight`` (implicit), ``timestamp``;
            or any columns mapped by ``data.csv``
parquet     as ``csv``, a Parquet file             as ``csv``, a Parquet file
==========  =====================================  ===========================================

``uidata`` is another name for ``ml-100k``. ``detect_format`` tells the format from the file's
content where that is unambiguous (rules in its docstring) and otherwise asks for it.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import pandas as pd

from recsys.config import CsvConfig
from recsys.data import io
from recsys.data.sources import movielens_files as ml
from recsys.data.sources.csv_source import (
    WEIGHT,
    read_csv_source,
    read_item_table,
    read_user_table,
    side_path,
)
from recsys.data.sources.ids import check_dataset_ids
from recsys.errors import ConfigError, location
from recsys.schema import EXPLICIT, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

Format = Literal["ml-100k", "ml-dat", "ml-csv", "playcount", "csv", "parquet"]
Role = Literal["interactions", "items", "users"]
FORMATS: Final = get_args(Format)
ALIASES: Final = {"uidata": "ml-100k"}
"""Other accepted names (``uidata``: the benchmark's original name for u.data lines)."""
FORMAT_CHOICES: Final = (*FORMATS, *ALIASES)
WEIGHT_NAMES: Final = frozenset(
    {"weight", "plays", "playcount", "play_count", "count", "clicks", "listens", "views"}
)
"""Header names of a play-count log's third column (``userID artistID weight``, ...)."""
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_FORMAT_OPTION: Final = {"interactions": "--format", "items": "--items-format"}


@dataclass(frozen=True)
class LogFile:
    """An interaction file as read: canonical interactions and what kind of feedback they are."""

    interactions: pd.DataFrame
    """[n, 4] ``INTERACTION_COLUMNS``, file order; ids int64 or text."""
    feedback: str
    """``explicit`` (ratings) or ``implicit`` (``rating`` holds the play/click weight)."""
    format: Format


def resolve_format(name: str | None) -> Format | None:
    """A format name (or alias) -> ``Format``; None stays None (detect)."""
    if name is None:
        return None
    name = ALIASES.get(name, name)
    if name not in FORMATS:
        raise ConfigError(f"unknown format '{name}'", fix=f"use one of {list(FORMAT_CHOICES)}")
    return name  # type: ignore[return-value]


def detect_format(path: Path | str, role: Role = "interactions") -> Format:
    """The format of ``path`` read as ``role``, from its suffix and first line.

    Rules, first match wins: ``.parquet``/``.pq`` -> parquet; a ``::`` -> ml-dat. Items: ``|``
    with 0/1 genre flags from field 6 on -> ml-100k; users: five ``|``-separated fields ->
    ml-100k. Then the first line, split at tabs (else commas), is a header when (interactions)
    its third field is not a number, or (side tables) it names the id column: ``userId,movieId``
    (``movieId,title`` for items) -> ml-csv; ``user_id`` and ``item_id`` (``item_id`` /
    ``user_id`` for side tables) -> csv; a third column named like a count (``WEIGHT_NAMES``) ->
    playcount. A headerless interaction file with 4 fields is u.data-like (ml-100k: the third
    field is a rating; a count log without header needs ``--format playcount``). Anything else
    is a ``ConfigError`` asking for the format.
    """
    path = io.require_file(Path(path), f"{role} file")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return "parquet"
    line = _first_line(path)
    if "::" in line:
        return "ml-dat"
    pipes = line.split("|")
    if role == "items" and len(pipes) >= 6 and all(f in ("0", "1") for f in pipes[5:]):
        return "ml-100k"
    if role == "users" and len(pipes) == 5:
        return "ml-100k"
    sep = "\t" if "\t" in line else ","
    fields = next(csv.reader([line], delimiter=sep))
    if role == "interactions":
        return _detect_log(path, fields, sep)
    id_column, ml_header = (ITEM_ID, {"movieId", "title"}) if role == "items" else (USER_ID, None)
    if ml_header is not None and ml_header <= set(fields):
        return "ml-csv"
    if id_column in fields:
        return "csv"
    raise _unknown(path, role, f"its first line {line[:80]!r} has no '{id_column}' column")


def _detect_log(path: Path, fields: list[str], sep: str) -> Format:
    header = len(fields) >= 3 and not _is_number(fields[2])
    header = header or (len(fields) == 2 and {USER_ID, ITEM_ID} <= set(fields))
    if header:
        if {"userId", "movieId", "rating"} <= set(fields):
            return "ml-csv"
        if {USER_ID, ITEM_ID} <= set(fields):
            return "csv"
        if len(fields) in (3, 4) and fields[2].strip().lower() in WEIGHT_NAMES:
            return "playcount"
        raise _unknown(
            path,
            "interactions",
            f"its header {fields} names no user_id and item_id columns",
            "rename the columns user_id,item_id[,rating or weight][,timestamp], or map them "
            "(data.csv.columns in the --params file) and pass --format csv",
        )
    if len(fields) == 4:
        return "ml-100k"
    if len(fields) == 3:
        raise ConfigError(
            f"cannot tell whether the third field of '{path.name}' is a rating or a count "
            "(3 fields, no header, no timestamp)",
            where=location(path, row=1),
            fix="pass --format playcount for play or click counts, or add a header "
            "user_id,item_id,rating (explicit) or user_id,item_id,weight (implicit)",
        )
    raise _unknown(
        path,
        "interactions",
        f"its first line has {len(fields)} {io.describe_separator(sep)}-separated field(s)",
    )


def _unknown(path: Path, role: str, why: str, fix: str | None = None) -> ConfigError:
    option = _FORMAT_OPTION.get(role, "--users-format")
    return ConfigError(
        f"cannot tell the format of the {role} file '{path.name}': {why}",
        where=location(path, row=1),
        fix=fix
        or f"pass {option} (one of {', '.join(FORMATS)}; see docs/data.md), or check the "
        "separator (tab or comma)",
    )


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace").lstrip("\ufeff")
            if line.strip():
                return line
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- readers --------------------------------------------------------------------------------
def read_log_file(
    path: Path | str, file_format: str | None = None, *, csv_cfg: CsvConfig | None = None
) -> LogFile:
    """Read one interaction file in ``file_format`` (None: ``detect_format``).

    Args:
      csv_cfg: the column mapping of ``csv`` / ``parquet`` files (``data.csv``); None: the
        header names the columns (``user_id``, ``item_id``, optional ``rating`` or ``weight``,
        optional ``timestamp``; without rating or weight every row is an implicit 1.0; without
        timestamp every row gets 0).
    """
    path = Path(path)
    fmt = resolve_format(file_format) or detect_format(path)
    if fmt in ("ml-100k", "ml-dat"):
        sep = "::" if fmt == "ml-dat" else ("," if "\t" not in _first_line(path) else "\t")
        frame = ml.read_ratings_file(path, sep=sep)
        return LogFile(frame, EXPLICIT, fmt)
    if fmt == "ml-csv":
        return LogFile(ml.read_ml_csv_ratings(path), EXPLICIT, fmt)
    cfg = _playcount_config(path) if fmt == "playcount" else csv_cfg or _header_config(path)
    dataset = read_csv_source(path, dataclasses.replace(cfg, items_path=None, users_path=None))
    return LogFile(dataset.interactions, dataset.feedback, fmt)


def _playcount_config(path: Path) -> CsvConfig:
    """user, item, weight[, timestamp] by position; a header when field 3 is not a number."""
    line = _first_line(path)
    sep = "\t" if "\t" in line else ","
    fields = next(csv.reader([line], delimiter=sep)) if line else []
    header = len(fields) >= 3 and not _is_number(fields[2])
    names = fields if header else [str(i + 1) for i in range(len(fields))]
    if len(names) < 3:
        names = ["1", "2", "3"]  # the reader then reports the short line
    columns = {USER_ID: names[0], ITEM_ID: names[1], WEIGHT: names[2]}
    if len(names) >= 4:
        columns[TIMESTAMP] = names[3]
    if len(names) >= 4:
        return CsvConfig(columns=columns, sep=sep, header=header)
    return CsvConfig(columns=columns, sep=sep, header=header, timestamp_unit="none")


def _header_config(path: Path) -> CsvConfig:
    """The mapping of a ``csv``/``parquet`` file whose header uses the canonical names."""
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        found = io.parquet_column_names(path, "interaction log")
        sep = ","
    else:
        sep = "\t" if "\t" in _first_line(path) else ","
        found = io.read_header(path, sep=sep, quoted=True)
    columns = {WEIGHT: WEIGHT} if WEIGHT in found and RATING not in found else {}
    cfg = CsvConfig(columns=columns, sep=sep, implicit=RATING not in found)
    return cfg if TIMESTAMP in found else dataclasses.replace(cfg, timestamp_unit="none")


_SIDE_READERS: Final[dict[str, dict[str, Callable[[Path], pd.DataFrame]]]] = {
    "items": {
        "ml-100k": ml.read_ml100k_items,
        "ml-dat": ml.read_dat_movies,
        "ml-csv": ml.read_csv_movies,
    },
    "users": {"ml-100k": ml.read_ml100k_users, "ml-dat": ml.read_dat_users},
}
"""Side-table role -> format -> the MovieLens reader; ``csv``/``parquet`` use ``csv_source``."""


def read_items_file(
    path: Path | str, file_format: str | None = None, *, csv_cfg: CsvConfig | None = None
) -> pd.DataFrame:
    """Read one item table in ``file_format`` (None: ``detect_format(path, "items")``)."""
    return _read_side_file(Path(path), "items", file_format, csv_cfg)


def read_users_file(
    path: Path | str, file_format: str | None = None, *, csv_cfg: CsvConfig | None = None
) -> pd.DataFrame:
    """Read one user table in ``file_format`` (None: ``detect_format(path, "users")``)."""
    return _read_side_file(Path(path), "users", file_format, csv_cfg)


def _read_side_file(
    path: Path, role: Role, file_format: str | None, csv_cfg: CsvConfig | None
) -> pd.DataFrame:
    fmt = resolve_format(file_format) or detect_format(path, role)
    if fmt in _SIDE_READERS[role]:
        return _SIDE_READERS[role][fmt](path)
    if fmt not in ("csv", "parquet"):
        raise _not_for(path, fmt, role)
    cfg = _side_config(path, csv_cfg)
    return read_item_table(path, cfg) if role == "items" else read_user_table(path, cfg)


def read_file_source(path: Path | str, file_format: str, cfg: CsvConfig) -> Dataset:
    """The pipeline's ``data.format`` source: one interaction file in ``file_format`` (``auto``:
    detected) plus ``cfg.items_path`` / ``cfg.users_path`` in their detected formats.

    The ``Dataset`` records the log's ``feedback``; explicit MovieLens ratings keep their
    scale (``rating_scale``: ``cfg.rating_scale``), implicit logs have none.
    """
    path = Path(path)
    log = read_log_file(path, None if file_format == "auto" else file_format, csv_cfg=cfg)
    io.require_rows(log.interactions, path)
    files = {"interactions": str(path)}
    items = users = None
    if cfg.items_path:
        items_file = side_path(cfg.items_path, path, "items_path")
        items, files["items"] = read_items_file(items_file, csv_cfg=cfg), str(items_file)
    if cfg.users_path:
        users_file = side_path(cfg.users_path, path, "users_path")
        users, files["users"] = read_users_file(users_file, csv_cfg=cfg), str(users_file)
    dataset = Dataset(
        log.interactions,
        items,
        users,
        name=path.stem,
        feedback=log.feedback,
        rating_scale=cfg.rating_scale if log.feedback == EXPLICIT else None,
        source_files=files,
    )
    check_dataset_ids(dataset)
    return dataset


def _side_config(path: Path, cfg: CsvConfig | None) -> CsvConfig:
    cfg = cfg or CsvConfig()
    if "\t" in _first_line(path) and cfg.sep == ",":
        cfg = dataclasses.replace(cfg, sep="\t")
    return cfg


def _not_for(path: Path, fmt: str, role: str) -> ConfigError:
    return ConfigError(
        f"format '{fmt}' has no {role} table",
        where=location(path),
        fix=f"pass {'--items-format' if role == 'items' else '--users-format'} "
        "ml-100k, ml-dat, csv or parquet (or leave it out to detect it)",
    )
