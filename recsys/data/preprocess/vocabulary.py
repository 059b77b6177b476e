"""Raw id <-> contiguous index vocabularies and the indexed interaction table.

The vocabularies cover every user and item of the cleaned interactions **and** every row of the
users and items tables (see ``recsys.data.preprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.data.preprocess.arrays import array_equal, encode_sorted, unique
from recsys.errors import DataError
from recsys.schema import (
    INT_IDS,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    TIMESTAMP,
    USER_ID,
    id_array,
    id_kind,
    pad_ids,
    with_id_dtypes,
)

USER_IDX: Final = "user_idx"
"""Contiguous 0..n_users-1 index of ``user_id`` in the ``Vocabulary`` (int64)."""
ITEM_IDX: Final = "item_idx"
INDEXED_COLUMNS: Final = (*INTERACTION_COLUMNS, USER_IDX, ITEM_IDX)
PAIR_COLUMNS: Final = (USER_ID, ITEM_ID, USER_IDX, ITEM_IDX)
"""Columns of a negatives table."""


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Raw id <-> contiguous index maps; position i of each array holds the raw id encoded as i.

    Ids are sorted ascending, so the index of an id does not depend on row order. Ids are
    integers or strings (``recsys.schema.INT_IDS`` / ``STR_IDS``), each side on its own.
    Compare two vocabularies with ``equals`` (``==`` is identity: the fields are arrays).
    """

    user_ids: np.ndarray
    """[n_users] raw user ids, strictly increasing: ``int64``, or an ``object`` array of
    ``str`` for string ids (sorted by code point; ``recsys.schema.id_array``)."""
    item_ids: np.ndarray
    """[n_items] raw item ids, strictly increasing, of either kind (independent of users')."""
    _lookup: dict[str, pd.Index | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("user_ids", "item_ids"):
            ids = np.array(id_array(getattr(self, name)), copy=True)
            if ids.ndim != 1 or (len(ids) > 1 and not (ids[1:] > ids[:-1]).all()):
                raise DataError(f"Vocabulary.{name} must be 1-D, unique and sorted ascending")
            ids.flags.writeable = False
            object.__setattr__(self, name, ids)
        # String ids are looked up by hash (a binary search compares Python strings).
        object.__setattr__(
            self, "_lookup", {n: _hash_lookup(getattr(self, n)) for n in ("user_ids", "item_ids")}
        )

    @property
    def user_kind(self) -> str:
        """``"int"`` or ``"str"`` (``recsys.schema.INT_IDS`` / ``STR_IDS``)."""
        return id_kind(self.user_ids)

    @property
    def item_kind(self) -> str:
        return id_kind(self.item_ids)

    def item_grid(self, n: int, k: int) -> np.ndarray:
        """[n, k] item ids all equal to the pad of this vocabulary's kind (``ID_PAD``)."""
        return pad_ids((n, k), self.item_kind)

    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Vocabulary:
        """Every id in the interactions plus every row of the side tables, sorted."""
        return cls(
            _all_ids(interactions, users, USER_ID, "users"),
            _all_ids(interactions, items, ITEM_ID, "items"),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode_users(self, raw: Any) -> np.ndarray:
        """[n] raw user ids -> [n] int64 indices; -1 where the id is unknown (an id of the
        other kind, a string for integer ids or the reverse, is unknown)."""
        return self._encode("user_ids", raw)

    def encode_items(self, raw: Any) -> np.ndarray:
        """[n] raw item ids -> [n] int64 indices; -1 where the id is unknown."""
        return self._encode("item_ids", raw)

    def _encode(self, name: str, raw: Any) -> np.ndarray:
        ids: np.ndarray = getattr(self, name)
        values = raw if isinstance(raw, np.ndarray) else np.asarray(raw)
        if values.dtype.kind == "U":  # numpy turned the numbers of a mixed list into text
            mixed = not isinstance(raw, np.ndarray) and not all(isinstance(v, str) for v in raw)
            values = np.array(list(raw), dtype=object) if mixed else values.astype(object)
        lookup = self._lookup[name]
        if lookup is not None:  # string ids: integers are never among them
            if values.dtype.kind != "O":
                return np.full(values.shape, -1, dtype=np.int64)
            found = lookup.get_indexer(values.ravel())
            return np.asarray(found, dtype=np.int64).reshape(values.shape)
        if values.dtype.kind == "O":  # mixed Python values: only the true integers can match
            ints = np.array([_is_int(v) for v in values.ravel()], dtype=bool).reshape(values.shape)
            out = np.full(values.shape, -1, dtype=np.int64)
            out[ints] = encode_sorted(ids, values[ints].astype(np.int64))
            return out
        if values.dtype.kind not in "iu":
            return np.full(values.shape, -1, dtype=np.int64)
        return encode_sorted(ids, values)

    def decode_users(self, idx: Any) -> np.ndarray:
        """[n] indices -> [n] raw user ids; ``IndexError`` on -1 or out of range."""
        return _decode(self.user_ids, idx, "user")

    def decode_items(self, idx: Any) -> np.ndarray:
        """[n] indices -> [n] raw item ids; ``IndexError`` on -1 or out of range."""
        return _decode(self.item_ids, idx, "item")

    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(users [user_idx, user_id], items [item_idx, item_id])`` for saving."""
        users = pd.DataFrame({USER_IDX: np.arange(self.n_users), USER_ID: self.user_ids})
        items = pd.DataFrame({ITEM_IDX: np.arange(self.n_items), ITEM_ID: self.item_ids})
        return users, items

    @classmethod
    def from_frames(cls, users: pd.DataFrame, items: pd.DataFrame) -> Vocabulary:
        """Inverse of ``to_frames``; checks that the indices are 0..n-1 in order."""
        for frame, idx in ((users, USER_IDX), (items, ITEM_IDX)):
            if not np.array_equal(frame[idx].to_numpy(), np.arange(len(frame))):
                raise DataError(f"vocabulary column '{idx}' is not 0..n-1 in order")
        return cls(users[USER_ID].to_numpy(), items[ITEM_ID].to_numpy())

    def equals(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and array_equal(self.user_ids, other.user_ids)
            and array_equal(self.item_ids, other.item_ids)
        )


def _all_ids(
    interactions: pd.DataFrame, side: pd.DataFrame | None, column: str, table: str
) -> np.ndarray:
    """Sorted distinct ids of ``column`` in the interactions and the side table, which must
    be of one kind."""
    ids = id_array(interactions[column])
    if side is None:
        return unique(ids)
    more = id_array(side[column])
    if len(more) and len(ids) and id_kind(more) != id_kind(ids):
        raise DataError(
            f"the {table} table's {column} values are {id_kind(more)} ids but the "
            f"interactions' are {id_kind(ids)} ids",
            fix=f"write the same ids in both files (a {column} is text as soon as one is not "
            "a plain integer)",
        )
    return unique(np.concatenate([ids, more]))


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _hash_lookup(ids: np.ndarray) -> pd.Index | None:
    """A hash index over string ids (None for integer ids: ``encode_sorted`` is faster)."""
    return None if id_kind(ids) == INT_IDS else pd.Index(ids, dtype=object)


def _decode(ids: np.ndarray, idx: Any, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    bad = (idx < 0) | (idx >= len(ids))
    if bad.any():
        raise IndexError(f"{what} index {idx[bad][0]} outside 0..{len(ids) - 1}")
    return ids[idx]


def index_interactions(df: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Add ``user_idx`` / ``item_idx`` and sort by ``(user_id, timestamp, item_id)``.

    Args:
      df: [n, 4] canonical interactions; every id must be in ``vocab``.

    Returns:
      [n, 6] ``INDEXED_COLUMNS`` with canonical dtypes and a fresh RangeIndex.
    """
    out = df.loc[:, list(INTERACTION_COLUMNS)]
    out = out.astype(with_id_dtypes(INTERACTION_DTYPES, out))
    out[USER_IDX] = vocab.encode_users(out[USER_ID].to_numpy())
    out[ITEM_IDX] = vocab.encode_items(out[ITEM_ID].to_numpy())
    for col, raw in ((USER_IDX, USER_ID), (ITEM_IDX, ITEM_ID)):
        unknown = out[col].to_numpy() < 0
        if unknown.any():
            sample = out.loc[unknown, raw].head(5).tolist()
            raise DataError(
                f"{int(unknown.sum())} interactions have a {raw} unknown to the "
                f"vocabulary, e.g. {sample}"
            )
    order = np.lexsort(
        (out[ITEM_IDX].to_numpy(), out[TIMESTAMP].to_numpy(), out[USER_IDX].to_numpy())
    )
    return out.iloc[order].reset_index(drop=True)
