"""Raw ids: the one contract every reader applies (``recsys.schema.USER_ID`` / ``ITEM_ID``).

An id column is ``int64`` when every id in it is a plain decimal integer (``0`` or digits without
a leading zero, no sign, no spaces, below 2**63); otherwise it is pandas ``str`` holding each id's
text verbatim (``"007"``, ``" 7"``, ``"SKU-1-B"`` stay as written). An empty or missing id is
refused. The kind is decided per column of one file; tables that must be joined (interactions
and the item table, train and test files) must agree (``check_same_kind``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.errors import DataError, location
from recsys.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

PLAIN_INTEGER = r"(?:0|[1-9][0-9]{0,18})"
"""What an integer id looks like in text; 19 digits at most, then checked below 2**63."""

Locate = Callable[[int], str]
"""Row index (0-based, as read) -> a ``where`` naming the file, column and line."""


def canonical_ids(values: pd.Series, column: str, locate: Locate) -> pd.Series:
    """``values`` as canonical ids: ``int64`` or ``str`` (see the module docstring).

    Args:
      values: [n] the ids as read: strings from text files, anything from Parquet.
      column: the column's name in the file (for messages).
      locate: where row i is, for the error on an empty, non-integral or mixed-type id.

    Raises:
      DataError: an empty or missing id, a non-integral float id, or an ``object`` column that
        mixes numbers and strings (Parquet written from such a pandas column).
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise _bad(column, locate, 0, f"found booleans ({values.iloc[0]!r}), not ids")
    if pd.api.types.is_integer_dtype(dtype):
        _refuse_missing(values, column, locate)
        return values.astype("int64")
    if pd.api.types.is_float_dtype(dtype):
        _refuse_missing(values, column, locate)
        whole = (values % 1 == 0).to_numpy()
        if not whole.all():
            i = int(np.argmin(whole))
            raise _bad(column, locate, i, f"found {values.iloc[i]!r}, not an integer or a text id")
        return values.astype("int64")
    if pd.api.types.is_object_dtype(dtype):
        values = _object_as_text(values, column, locate)
    text = values.astype("str")
    _refuse_missing(values, column, locate)
    # pyarrow compute: one vectorized pass each (pandas' str methods are 5x slower at 25M rows)
    arrow = pa.array(text.array)  # zero-copy: pandas' str is Arrow-backed
    empty = pc.equal(arrow, "")
    if pc.any(empty).as_py():
        first = int(np.argmax(empty.to_numpy(zero_copy_only=False)))
        raise _bad(column, locate, first, "found an empty one")
    if pc.all(pc.match_substring_regex(arrow, f"^{PLAIN_INTEGER}$")).as_py() is not False:
        try:
            number = pc.cast(arrow, pa.int64()).to_numpy()
        except pa.ArrowInvalid:  # 19 digits beyond 2**63 - 1: text
            return text
        return pd.Series(number, index=values.index, name=values.name, dtype="int64")
    return text


def _object_as_text(values: pd.Series, column: str, locate: Locate) -> pd.Series:
    """An ``object`` column (Parquet from pandas): all ``str`` or all integral numbers."""
    is_text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if is_text.all():
        return values
    is_number = values.map(
        lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    ).to_numpy(dtype=bool)
    if is_number.all():
        return values.astype("int64").astype("str")
    if is_text.any() and is_number.any():
        i = int(np.argmax(~is_text if is_text[0] else is_text))
        raise DataError(
            f"column '{column}' mixes id types: the first row holds {values.iloc[0]!r} "
            f"({type(values.iloc[0]).__name__}), another {values.iloc[i]!r} "
            f"({type(values.iloc[i]).__name__})",
            where=locate(i),
            fix="write every id of the column as text (or every one as an integer) before "
            "saving the Parquet file, e.g. df[col] = df[col].astype(str)",
        )
    i = int(np.argmin(is_text | is_number))
    raise _bad(column, locate, i, f"found {values.iloc[i]!r}, neither an integer nor a text id")


def _refuse_missing(values: pd.Series, column: str, locate: Locate) -> None:
    missing = values.isna().to_numpy()
    if missing.any():
        raise _bad(column, locate, int(np.argmax(missing)), "found an empty one")


def _bad(column: str, locate: Locate, i: int, problem: str) -> DataError:
    return DataError(
        f"column '{column}' must hold an id on every row; {problem}",
        where=locate(i),
        fix="fill in the id, or map the column to the right one in the config",
    )


def kind(ids: pd.Series) -> str:
    """``int`` for an ``int64`` id column, ``str`` for text ids."""
    return "int" if pd.api.types.is_integer_dtype(ids.dtype) else "str"


def check_same_kind(column: str, tables: Sequence[tuple[pd.Series, str]]) -> None:
    """``DataError`` when the ``column`` ids of these (ids, file) pairs are of different kinds.

    Integer ids in one file and text ids in another cannot be joined (is ``"7"`` the item 7?),
    so the message names both files and what to change rather than guessing.
    """
    kinds = [(kind(ids), path, ids) for ids, path in tables]
    for k, path, ids in kinds[1:]:
        first_kind, first_path, first_ids = kinds[0]
        if k == first_kind:
            continue
        text_path, text_ids = (path, ids) if k == "str" else (first_path, first_ids)
        int_path = first_path if k == "str" else path
        example = text_ids[~text_ids.str.fullmatch(PLAIN_INTEGER)].iloc[:1].tolist()
        raise DataError(
            f"mixed id types in '{column}': {int_path} has integer ids, {text_path} has text "
            f"ids (e.g. {example[0] if example else text_ids.iloc[0]!r})",
            where=f"{location(int_path, column=column)} and {location(text_path, column=column)}",
            fix=f"write the {column}s of both files the same way: the same ids in the same "
            "spelling (no leading zeros or spaces if they are numbers)",
        )


def check_matches(
    column: str, interactions: pd.Series, log_path: str, table: pd.Series, table_path: str
) -> None:
    """``DataError`` when a side table shares no ``column`` id with the interactions.

    A side table for another data set (or one keyed by another id) would otherwise join to
    nothing and silently leave every model without content.
    """
    check_same_kind(column, [(interactions, log_path), (table, table_path)])
    if table.empty or interactions.isin(table).any():
        return
    raise DataError(
        f"none of the {table.nunique()} {column}s of {table_path} occurs in the interactions "
        f"({log_path}); e.g. {table.iloc[0]!r} there, {interactions.iloc[0]!r} in the "
        "interactions",
        where=location(table_path, column=column),
        fix="pass the side table that belongs to these interactions, or map its id column to "
        "the one that holds the same ids",
    )


def interactions_frame(
    user: pd.Series, item: pd.Series, rating: pd.Series | float, timestamp: pd.Series | int
) -> pd.DataFrame:
    """Canonical interactions from canonical id columns: ``rating`` float64, ``timestamp``
    int64, ids as they are (``int64`` or ``str``)."""
    frame = pd.DataFrame({USER_ID: user, ITEM_ID: item, RATING: rating, TIMESTAMP: timestamp})
    return frame.astype({RATING: "float64", TIMESTAMP: "int64"})


def check_dataset_ids(dataset: Dataset) -> None:
    """Every side table agrees in id kind with the interactions and shares ids with them."""
    files = dataset.source_files
    log = files.get("interactions", dataset.name)
    for table, column in ((dataset.items, ITEM_ID), (dataset.users, USER_ID)):
        if table is None:
            continue
        name = "items" if column == ITEM_ID else "users"
        check_matches(
            column, dataset.interactions[column], log, table[column], files.get(name, name)
        )
