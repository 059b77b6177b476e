"""The split files of a benchmark, read into one vocabulary (``load_split`` -> ``SplitData``).

A train/test pair in the benchmark's file format (or a generic CSV) becomes a ``Processed``
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

from recsys.benchmark.config import (
    CSV_SUFFIXES,
    SPLIT_PREPROCESS,
    UIDATA_SUFFIXES,
    FileFormat,
    SplitFiles,
)
from recsys.data import io, sources
from recsys.data.preprocess import Processed, preprocess
from recsys.errors import ConfigError, DataError, location
from recsys.evaluation.harness import (
    Heldout,
)
from recsys.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    RATING,
    TIMESTAMP,
    USER_ID,
    Dataset,
)


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


def detect_format(path: Path) -> FileFormat:
    """``uidata`` for ``.tsv .tab .data .base .test``; ``csv`` for ``.csv``."""
    suffix = path.suffix.lower()
    if suffix in UIDATA_SUFFIXES:
        return "uidata"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise ConfigError(
        f"cannot tell the format of '{path.name}' from its suffix",
        where=location(path),
        fix="pass --format uidata (tab-separated user, item, rating, timestamp; no header) or "
        "--format csv (header user_id,item_id[,rating,timestamp])",
    )


def read_interactions(path: Path, file_format: FileFormat | None, option: str) -> pd.DataFrame:
    """[n, 4] canonical interactions of a split file, in file order.

    ``uidata``: MovieLens ``u.data`` lines. ``csv``: a header naming ``user_id`` and ``item_id``
    and optionally ``rating`` (default 1.0) and ``timestamp`` (default 0); other columns ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", where=location(path), fix=f"check {option}")
    if (file_format or detect_format(path)) == "uidata":
        return sources.read_ratings_file(path)
    found = io.read_header(path, sep=",", quoted=True)
    io.check_columns(
        path, [USER_ID, ITEM_ID], found, sep=",", fix="write a header user_id,item_id,rating,..."
    )
    columns = [c for c in INTERACTION_COLUMNS if c in found]
    raw = io.read_delimited(
        path,
        columns,
        sep=",",
        header=True,
        quoted=True,
        integer=[c for c in (USER_ID, ITEM_ID, TIMESTAMP) if c in columns],
        numeric=[RATING] if RATING in columns else [],
        what=f"{option} file",
    )
    if RATING not in raw:
        raw[RATING] = 1.0
    if TIMESTAMP not in raw:
        raw[TIMESTAMP] = 0
    return raw.loc[:, list(INTERACTION_COLUMNS)].astype(INTERACTION_DTYPES)


def load_split(
    files: SplitFiles,
    *,
    file_format: FileFormat | None = None,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    prefix: str = "",
) -> SplitData:
    """Read a split's files and build the ``Processed`` that reproduces them exactly.

    Args:
      files: the split's paths.
      file_format: None: from each file's suffix.
      items, users: MovieLens side tables (content features, vocabulary of cold items).
      prefix: ``"val-"`` for the validation files (names the options in errors).

    Raises:
      DataError: a missing or malformed file, an empty one, or train and test sharing a pair.
    """
    roles = {"train": files.train, "test": files.test}
    if files.negatives is not None:
        roles["negatives"] = files.negatives
    frames = {
        role: read_interactions(path, file_format, f"--{prefix}{role}")
        for role, path in roles.items()
    }
    train, test = frames["train"], frames["test"]
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
    )
    data = preprocess(dataset, SPLIT_PREPROCESS, test_pairs=test)
    info = {
        role: {"path": str(path), "sha256": io.sha256_file(path), "rows": len(frames[role])}
        for role, path in roles.items()
    }
    return SplitData(files.name, data, test, frames.get("negatives"), info)


def read_side_tables(
    items: Path | None, users: Path | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """MovieLens 100K ``u.item`` / ``u.user`` files (either may be None)."""
    for path, option in ((items, "--items"), (users, "--users")):
        if path is not None and not Path(path).is_file():
            raise DataError("file not found", where=location(path), fix=f"check {option}")
    return (
        sources.read_ml100k_items(items) if items is not None else None,
        sources.read_ml100k_users(users) if users is not None else None,
    )
