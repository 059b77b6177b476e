"""Fits shared within one run: a model fitted once is reused where the same model, with the same
settings, is fitted again on the same rows (``shared_fits``).

``recsys benchmark`` over every registered model fits the two-tower model three times (itself,
as an ensemble member, as the two-stage model's retriever) and EASE three times, each on the
same split with the same settings: the same arithmetic, so the same model. Inside
``shared_fits()`` an ensemble's members and a two-stage model's parts come from ``fitted``,
which returns the model already fitted there (the benchmark ``remember``\\s each model it fits),
and fits only what is new. Outside it (the pipeline, a single fit) ``fitted`` simply fits.

The key is the registry name, the model's full settings (``config_dict``: seeds included) and
a digest of the rows it is fitted on (train and validation user/item indices and ratings, and
the vocabulary sizes): reuse is exact, never an approximation. Cached models live until the
``shared_fits`` block ends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.data.preprocess import ITEM_IDX, USER_IDX
from recsys.schema import RATING

if TYPE_CHECKING:
    from recsys.data.preprocess import InteractionSplit, Processed
    from recsys.models.base import Recommender

__all__ = ["fitted", "remember", "shared_fits"]

_FITS: ContextVar[dict[tuple[str, str, str], Recommender] | None] = ContextVar(
    "recsys_shared_fits", default=None
)


@contextmanager
def shared_fits() -> Iterator[None]:
    """Within this block, ``fitted`` reuses every model fitted (or ``remember``\\ed) in it."""
    token = _FITS.set({})
    try:
        yield
    finally:
        _FITS.reset(token)


def _rows_digest(data: Processed, split: InteractionSplit) -> str:
    digest = hashlib.sha256(f"{data.vocab.n_users}:{data.vocab.n_items}".encode())
    for frame in (split.train, split.val):
        columns = [c for c in (USER_IDX, ITEM_IDX, RATING) if c in frame]
        digest.update(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().data)
        digest.update(np.int64(len(frame)).tobytes())
    return digest.hexdigest()


def _key(model: Recommender, data: Processed, split: InteractionSplit) -> tuple[str, str, str]:
    settings = json.dumps(model.config_dict(), sort_keys=True, default=str)
    return model.name, settings, _rows_digest(data, split)


def remember(model: Recommender, data: Processed, split: InteractionSplit) -> None:
    """Offer ``model``, fitted on ``data``/``split``, for reuse (a no-op outside the block)."""
    cache = _FITS.get()
    if cache is not None and model.train_result is not None:
        cache.setdefault(_key(model, data, split), model)


def fitted(
    name: str, fields: Mapping[str, Any], data: Processed, split: InteractionSplit
) -> tuple[Recommender, bool]:
    """Registry model ``name`` with ``fields`` fitted on ``data``/``split``, and whether it
    was reused (fitted earlier in the ``shared_fits`` block) rather than fitted now."""
    from recsys.models.registry import model_class

    model = model_class(name)(**fields)
    cache = _FITS.get()
    key = None if cache is None else _key(model, data, split)
    if cache is not None and key in cache:
        return cache[key], True
    model.fit(data, split)
    if cache is not None and key is not None:
        cache[key] = model
    return model, False
