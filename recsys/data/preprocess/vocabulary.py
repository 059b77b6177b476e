"""Raw id <-> contiguous index vocabularies and the indexed interaction table.

The vocabularies cover every user and item of the cleaned interactions **and** every row of the
users and items tables (see ``recsys.data.preprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.data.preprocess.arrays import array_equal, encode_sorted, unique
from recsys.errors import DataError
from recsys.schema import INTERACTION_COLUMNS, INTERACTION_DTYPES, ITEM_ID, TIMESTAMP, USER_ID

USER_IDX: Final = "user_idx"
"""Contiguous 0..n_users-1 index of ``user_id`` in the ``Vocabulary`` (int64)."""
ITEM_IDX: Final = "item_idx"
INDEXED_COLUMNS: Final = (*INTERACTION_COLUMNS, USER_IDX, ITEM_IDX)
PAIR_COLUMNS: Final = (USER_ID, ITEM_ID, USER_IDX, ITEM_IDX)
"""Columns of a negatives table."""


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Raw id <-> contiguous index maps; position i of each array holds the raw id encoded as i.

    Ids are sorted ascending, so the index of an id does not depend on row order.
    Compare two vocabularies with ``equals`` (``==`` is identity: the fields are arrays).
    """

    user_ids: np.ndarray
    """[n_users] raw user ids, strictly increasing."""
    item_ids: np.ndarray
    """[n_items] raw item ids, strictly increasing."""

    def __post_init__(self) -> None:
        for name in ("user_ids", "item_ids"):
            ids = np.array(getattr(self, name), copy=True)
            if ids.ndim != 1 or (len(ids) > 1 and not (ids[1:] > ids[:-1]).all()):
                raise DataError(f"Vocabulary.{name} must be 1-D, unique and sorted ascending")
            ids.flags.writeable = False
            object.__setattr__(self, name, ids)

    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
    ) -> Vocabulary:
        """Every id in the interactions plus every row of the side tables, sorted."""
        user_parts = [interactions[USER_ID].to_numpy()]
        item_parts = [interactions[ITEM_ID].to_numpy()]
        if users is not None:
            user_parts.append(users[USER_ID].to_numpy())
        if items is not None:
            item_parts.append(items[ITEM_ID].to_numpy())
        return cls(unique(np.concatenate(user_parts)), unique(np.concatenate(item_parts)))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode_users(self, raw: Any) -> np.ndarray:
        """[n] raw user ids -> [n] int64 indices; -1 where the id is unknown."""
        return encode_sorted(self.user_ids, raw)

    def encode_items(self, raw: Any) -> np.ndarray:
        """[n] raw item ids -> [n] int64 indices; -1 where the id is unknown."""
        return encode_sorted(self.item_ids, raw)

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
    out = df.loc[:, list(INTERACTION_COLUMNS)].astype(INTERACTION_DTYPES)
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
