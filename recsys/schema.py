"""The canonical data model: column names and dtypes shared by every layer.

Every source (synthetic, MovieLens, generic CSV) is converted into these three tables, and every
later stage (validation, preprocessing, training, serving) reads only these names. See
``docs/data.md`` for the meaning of each column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

# --- interactions ---------------------------------------------------------------------------
USER_ID: Final = "user_id"
"""Raw user id as in the source. The id contract (every reader, ``recsys.data.sources.ids``):
a column is ``int64`` when every id in it is a plain decimal integer (``0`` or digits without a
leading zero; no sign, no spaces; below 2**63), otherwise pandas ``str`` holding each id's text
verbatim (nothing stripped but the line terminator: ``"007"``, ``" 7"``, ``"SKU-1-B"``). Empty
ids are refused. Tables that are joined (interactions and the users/items table, train and test
files) must agree in kind, else ``DataError`` ("mixed id types") naming both files; a Parquet
``object`` column holding both numbers and strings is a ``DataError`` too."""
ITEM_ID: Final = "item_id"
"""Raw item id as in the source; the same contract as ``USER_ID``."""
RATING: Final = "rating"
TIMESTAMP: Final = "timestamp"
"""Unix seconds (int64)."""
INTERACTION_COLUMNS: Final = (USER_ID, ITEM_ID, RATING, TIMESTAMP)
INTERACTION_DTYPES: Final = {
    USER_ID: "int64",
    ITEM_ID: "int64",
    RATING: "float64",
    TIMESTAMP: "int64",
}

# --- items ----------------------------------------------------------------------------------
TITLE: Final = "title"
GENRES: Final = "genres"
"""Pipe-separated genre names ("Action|Comedy"); "" when an item has none."""
GENRE_SEPARATOR: Final = "|"
TEXT: Final = "text"
"""Free text or tags, where the source has them (optional)."""
ITEM_REQUIRED: Final = (ITEM_ID, TITLE, GENRES)
ITEM_DTYPES: Final = {ITEM_ID: "int64", TITLE: "str", GENRES: "str"}
"""dtypes of ``ITEM_REQUIRED``; other item columns are free."""

# --- users ----------------------------------------------------------------------------------
AGE: Final = "age"
GENDER: Final = "gender"
OCCUPATION: Final = "occupation"
ZIP_CODE: Final = "zip_code"
USER_REQUIRED: Final = (USER_ID,)
USER_DTYPES: Final = {USER_ID: "int64"}
USER_ATTRIBUTES: Final = (AGE, GENDER, OCCUPATION, ZIP_CODE)
"""The demographic columns the sources know; a users table may carry others."""

# --- id kinds -------------------------------------------------------------------------------
INT_IDS: Final = "int"
"""Every id of a column is a plain decimal integer: the column is ``int64``."""
STR_IDS: Final = "str"
"""Any other ids (SKUs, UUIDs, names): the column holds the original text (pandas ``str``;
numpy arrays of ids are ``object`` arrays of Python ``str``). Never empty."""
ID_PAD: Final = {INT_IDS: -1, STR_IDS: ""}
"""The id that pads a ranked list shorter than k, per kind (never a real id)."""


def id_kind(values: Any) -> str:
    """``INT_IDS`` for an integer column or array, else ``STR_IDS``."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(values).dtype
    return INT_IDS if pd.api.types.is_integer_dtype(dtype) else STR_IDS


def id_array(values: Any) -> np.ndarray:
    """[n] raw ids as one flat numpy array of their kind: ``int64`` for integers (never a cast
    from text), an ``object`` array of Python ``str`` otherwise: the one representation every
    layer compares, sorts and looks up."""
    raw = values if isinstance(values, np.ndarray) else np.asarray(values)
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64, copy=False).ravel()
    return np.asarray(values, dtype=object).ravel()


def pad_ids(shape: tuple[int, ...], kind: str) -> np.ndarray:
    """An array of ``shape`` holding the pad of ``kind`` (``ID_PAD``): -1 or ``""``."""
    return np.full(shape, ID_PAD[kind], dtype=np.int64 if kind == INT_IDS else object)


def is_pad(ids: np.ndarray) -> np.ndarray:
    """[same shape] bool: which entries of a ranked id array are padding."""
    return np.asarray(ids == ID_PAD[id_kind(ids)], dtype=bool)


def with_id_dtypes(dtypes: dict[str, str], df: pd.DataFrame) -> dict[str, str]:
    """``dtypes`` with ``str`` for each id column of ``df`` that holds text (``STR_IDS``): what
    ``astype`` takes to canonicalize a table whose ids may be strings, and what validation
    expects. Other columns (integer ids, and ids of any other dtype, which stay wrong) keep
    their declared dtype."""
    return {
        col: "str"
        if col in (USER_ID, ITEM_ID) and col in df.columns and _is_text(df[col])
        else dtype
        for col, dtype in dtypes.items()
    }


def _is_text(column: pd.Series) -> bool:
    return bool(pd.api.types.is_string_dtype(column.dtype)) and column.dtype != bool


EXPLICIT: Final = "explicit"
IMPLICIT: Final = "implicit"


@dataclass(frozen=True)
class Dataset:
    """One data set in canonical form.

    ``interactions`` has exactly ``INTERACTION_COLUMNS`` with ``INTERACTION_DTYPES``;
    ``items`` starts with ``ITEM_REQUIRED`` and may add ``TEXT`` and numeric or string attributes;
    ``users`` starts with ``USER_ID`` followed by attributes. Either side table may be absent.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    name: str = "dataset"
    feedback: str = EXPLICIT
    """``explicit`` (ratings) or ``implicit`` (clicks, plays: rating holds a count or 1)."""
    rating_scale: tuple[float, float] | None = (1.0, 5.0)
    """Inclusive rating range the source promises; None for implicit counts."""
    source_files: dict[str, str] = field(default_factory=dict)
    """Table name -> the file it was read from, for error messages and reports."""

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables present, by name (``interactions``, ``items``, ``users``)."""
        out = {"interactions": self.interactions}
        if self.items is not None:
            out["items"] = self.items
        if self.users is not None:
            out["users"] = self.users
        return out


def split_genres(genres: pd.Series) -> pd.Series:
    """``"A|B"`` -> ``["A", "B"]``; ``""`` -> ``[]``."""
    return genres.fillna("").map(lambda s: [g for g in s.split(GENRE_SEPARATOR) if g])
