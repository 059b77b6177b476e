"""The split files of a benchmark, read into one vocabulary (``load_split`` -> ``SplitData``).

A train/test pair in any format of ``recsys.data.sources.formats`` (detected, or ``--format``)
becomes a ``Processed``
whose split reproduces the files exactly (no cleaning, test rows predefined). Leakage rule: a
model is fitted on ``SplitData.fit_data()``, a copy whose interactions and ``split.test`` hold
no test row (the vocabulary still lists every id, as the catalogue does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.benchmark.config import SPLIT_PREPROCESS, SplitFiles
from recsys.config import CsvConfig
from recsys.data import io
from recsys.data.preprocess import Processed, preprocess
from recsys.data.sources import formats, ids
from recsys.data.sources.formats import Format
from recsys.errors import ConfigError, DataError, location
from recsys.evaluation.harness import (
    Heldout,
)
from recsys.schema import ITEM_ID, RATING, USER_ID, Dataset

SOURCE_FILE = "source_file"
"""``DataFrame.attrs`` key naming the file a side table was read from."""


# --- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SplitData:
    """A split read from its files, in one vocabulary (every id of train, test and side files)."""

    name: str | None
    data: Processed
    """``data.split``: train = the train file, test = the test file's pairs, val empty."""
    test: pd.DataFrame
    """[m, 4] the test file's rows as read: relevant items (topk, loo) or rows to predict."""
    negatives: pd.DataFrame | None
    """[n, 4] the loo negatives as read."""
    files: dict[str, dict[str, Any]]
    """Role (``train``, ``test``, ``negatives``) -> ``{"path", "sha256", "rows"}``."""

    @property
    def train(self) -> pd.DataFrame:
        return self.data.split.train

    def fit_data(self) -> Processed:
        """What a model may fit on: the same vocabulary and features, no test row anywhere."""
        split = dataclasses.replace(
            self.data.split, test=self.data.split.test.iloc[:0], negatives=None
        )
        return dataclasses.replace(self.data, interactions=self.data.split.train, split=split)

    def heldout(self) -> Heldout:
        """What a model fitted on ``fit_data()`` is scored on under any protocol."""
        return Heldout(self.train, self.test, self.negatives, self.rating_range())

    def rating_range(self) -> tuple[float, float] | None:
        """(min, max) training rating: rating predictions are clipped to it (as Surprise)."""
        ratings = self.train[RATING].to_numpy(dtype=np.float64)
        low, high = float(ratings.min()), float(ratings.max())
        return (low, high) if high > low else None


def detect_format(path: Path) -> Format:
    """The format of a split file from its content (``recsys.data.sources.formats``)."""
    return formats.detect_format(path, "interactions")


def read_split_file(
    path: Path, file_format: str | None, option: str, csv_cfg: CsvConfig | None = None
) -> formats.LogFile:
    """One split file in ``file_format`` (None: detected), by the pipeline's readers."""
    if not Path(path).is_file():
        raise DataError("file not found", where=location(path), fix=f"check {option}")
    return formats.read_log_file(path, file_format, csv_cfg=csv_cfg)


def read_interactions(
    path: Path, file_format: str | None, option: str, csv_cfg: CsvConfig | None = None
) -> pd.DataFrame:
    """[n, 4] canonical interactions of a split file, in file order (any format of
    ``recsys.data.sources.formats``; ids int64 or text)."""
    return read_split_file(path, file_format, option, csv_cfg).interactions


def load_split(
    files: SplitFiles,
    *,
    file_format: str | None = None,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    prefix: str = "",
    csv_cfg: CsvConfig | None = None,
) -> SplitData:
    """Read a split's files and build the ``Processed`` that reproduces them exactly.

    Args:
      files: the split's paths.
      file_format: a ``recsys.data.sources.formats`` name; None: detected per file.
      items, users: side tables from ``read_side_tables`` (content features, vocabulary of
        cold items).
      prefix: ``"val-"`` for the validation files (names the options in errors).
      csv_cfg: the column mapping of ``csv``/``parquet`` files (``data.csv`` of ``--params``).

    The data set's ``feedback`` is the train file's: ``implicit`` for play-count and click logs
    (their weight is the ``rating``), ``explicit`` for ratings.

    Raises:
      DataError: a missing or malformed file, an empty one, train and test sharing a pair,
        mixed id types across the files, or a side table sharing no id with them.
      ConfigError: a file whose format cannot be told, or train and test read as different
        kinds of feedback.
    """
    roles = {"train": files.train, "test": files.test}
    if files.negatives is not None:
        roles["negatives"] = files.negatives
    logs = {
        role: read_split_file(path, file_format, f"--{prefix}{role}", csv_cfg)
        for role, path in roles.items()
    }
    frames = {role: log.interactions for role, log in logs.items()}
    train, test = frames["train"], frames["test"]
    _check_files_agree(logs, roles, items, users)
    for role in ("train", "test"):
        if frames[role].empty:
            raise DataError(f"the {role} file holds no rows", where=location(roles[role]))
    shared = pd.MultiIndex.from_frame(train[[USER_ID, ITEM_ID]]).isin(
        pd.MultiIndex.from_frame(test[[USER_ID, ITEM_ID]])
    )
    if shared.any():
        example = train.loc[shared, [USER_ID, ITEM_ID]].iloc[0].tolist()
        raise DataError(
            f"{int(shared.sum())} train row(s) repeat a test (user, item) pair, e.g. {example}",
            where=location(roles["train"]),
            fix="train and test files must not share (user_id, item_id) pairs",
        )
    if not np.isfinite(pd.concat([train, test])[RATING].to_numpy(dtype=np.float64)).all():
        raise DataError("a rating is missing or not finite", where=location(roles["train"]))
    dataset = Dataset(
        interactions=pd.concat([train, test], ignore_index=True),
        items=items,
        users=users,
        name=files.name or files.train.parent.name or "benchmark",
        feedback=logs["train"].feedback,
    )
    data = preprocess(dataset, SPLIT_PREPROCESS, test_pairs=test)
    info = {
        role: {"path": str(path), "sha256": io.sha256_file(path), "rows": len(frames[role])}
        for role, path in roles.items()
    }
    return SplitData(files.name, data, test, frames.get("negatives"), info)


def _check_files_agree(
    logs: dict[str, formats.LogFile],
    roles: dict[str, Path],
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
) -> None:
    """One feedback kind for train and test; one id kind everywhere; side tables that match."""
    if logs["train"].feedback != logs["test"].feedback:
        raise ConfigError(
            f"the train file reads as {logs['train'].format} ({logs['train'].feedback}), the "
            f"test file as {logs['test'].format} ({logs['test'].feedback})",
            where=f"{location(roles['train'])} and {location(roles['test'])}",
            fix="pass --format (e.g. --format playcount for count logs) so both read alike",
        )
    for column in (USER_ID, ITEM_ID):
        ids.check_same_kind(
            column, [(log.interactions[column], str(roles[r])) for r, log in logs.items()]
        )
    ids_in = pd.concat([logs["train"].interactions, logs["test"].interactions])
    for table, column, option in ((items, ITEM_ID, "--items"), (users, USER_ID, "--users")):
        if table is not None:
            where = str(table.attrs.get(SOURCE_FILE, option))
            ids.check_matches(column, ids_in[column], str(roles["train"]), table[column], where)


def read_side_tables(
    items: Path | None,
    users: Path | None,
    *,
    items_format: str | None = None,
    users_format: str | None = None,
    csv_cfg: CsvConfig | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Item and user tables (either may be None) in any format the pipeline reads: ml-100k
    ``u.item``/``u.user``, ml-1m/10m ``movies.dat``/``users.dat``, ml-20m+ ``movies.csv``, or a
    CSV/Parquet table (``csv_cfg.item_columns`` / ``user_columns``). None: detected per file.
    Each table's ``attrs[SOURCE_FILE]`` names its file (for later messages)."""
    for path, option in ((items, "--items"), (users, "--users")):
        if path is not None and not Path(path).is_file():
            raise DataError("file not found", where=location(path), fix=f"check {option}")
    item_table = user_table = None
    if items is not None:
        item_table = formats.read_items_file(items, items_format, csv_cfg=csv_cfg)
        item_table.attrs[SOURCE_FILE] = str(items)
    if users is not None:
        user_table = formats.read_users_file(users, users_format, csv_cfg=csv_cfg)
        user_table.attrs[SOURCE_FILE] = str(users)
    return item_table, user_table
