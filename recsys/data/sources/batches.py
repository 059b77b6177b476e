"""Batches of new interactions, accepted by ``recsys update``, as part of the source.

An accepted batch is kept in ``data.batches`` (``data/raw/batches``) as canonical Parquet
tables, ``<name>.parquet`` and optionally ``<name>.items.parquet`` / ``<name>.users.parquet``
(side-table rows of its new items and users). ``load_source`` appends every batch, in file-name
order, to what the source reads, so a full retrain learns from the same interactions as the
updates before it. Names start with the UTC time of acceptance, so name order is arrival
order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

import pandas as pd

from recsys.data import io
from recsys.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    USER_ID,
    Dataset,
    with_id_dtypes,
)

SIDE_SUFFIXES: Final = {"items": ".items.parquet", "users": ".users.parquet"}


def batch_files(directory: Path | str) -> list[Path]:
    """The interaction files of the accepted batches in ``directory``, in name order."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.glob("*.parquet")
        if not any(p.name.endswith(s) for s in SIDE_SUFFIXES.values())
    )


def merge(dataset: Dataset, batch: Dataset) -> Dataset:
    """``dataset`` with ``batch``'s interactions appended and its side-table rows for ids the
    dataset's tables do not have (a known item keeps its attributes)."""
    interactions = pd.concat(
        [dataset.interactions, batch.interactions.loc[:, list(INTERACTION_COLUMNS)]],
        ignore_index=True,
    )
    interactions = interactions.astype(with_id_dtypes(INTERACTION_DTYPES, interactions))
    return dataclasses.replace(
        dataset,
        interactions=interactions,
        items=_side(dataset.items, batch.items, ITEM_ID),
        users=_side(dataset.users, batch.users, USER_ID),
    )


def _side(old: pd.DataFrame | None, new: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
    if new is None or new.empty:
        return old
    if old is None:
        return new.reset_index(drop=True)
    added = new[~new[key].isin(old[key])]
    return pd.concat([old, added], ignore_index=True) if len(added) else old


def append_batches(dataset: Dataset, directory: Path | str) -> Dataset:
    """``dataset`` with every accepted batch in ``directory`` merged in, in name order."""
    for path in batch_files(directory):
        dataset = merge(dataset, read_batch(path))
    return dataset


def read_batch(path: Path) -> Dataset:
    """One accepted batch as ``write_batch`` wrote it."""
    side = {
        role: io.read_table(p)
        if (p := path.with_name(path.name[: -len(".parquet")] + suffix)).is_file()
        else None
        for role, suffix in SIDE_SUFFIXES.items()
    }
    return Dataset(io.read_table(path), side["items"], side["users"], name=path.stem)


def write_batch(batch: Dataset, directory: Path | str, name: str) -> Path:
    """Keep ``batch`` in ``directory`` as ``<name>.parquet`` (+ side tables); returns its path.
    The side tables are written first, so a reader never sees the interactions without them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for role, suffix in SIDE_SUFFIXES.items():
        table = getattr(batch, role)
        if table is not None and len(table):
            io.write_table(table, directory / f"{name}{suffix}")
    path = directory / f"{name}.parquet"
    io.write_table(batch.interactions.loc[:, list(INTERACTION_COLUMNS)], path)
    return path
