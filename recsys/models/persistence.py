"""The on-disk layout of every ``Recommender`` (``Recommender.save`` / ``load``).

A model directory holds ``recommender.json`` (format version, registry name, constructor
config, feedback kind, ``TrainResult.facts()``: no timings, so that two fits with the same
seed write the same bytes), the vocabulary (``vocab/users.parquet``, ``vocab/items.parquet``),
the training interactions (``seen.parquet``, for excluding seen items) and whatever the
model's own ``_save`` writes. It is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import io
from recsys.data.preprocess import ITEM_IDX, USER_IDX, Vocabulary
from recsys.data.records import read_versioned_json
from recsys.errors import DataError
from recsys.models.base import FORMAT_VERSION, META_FILE, Recommender, TrainResult

R = TypeVar("R", bound=Recommender)


def save_recommender(model: Recommender, path: Path) -> None:
    """Write ``model`` to directory ``path`` atomically (vocabulary and seen items inside)."""
    vocab, seen = model._vocab(), model._seen_matrix()
    with io.atomic_dir(path) as tmp:
        users, items = vocab.to_frames()
        io.write_table(users, tmp / "vocab" / "users.parquet")
        io.write_table(items, tmp / "vocab" / "items.parquet")
        coo = seen.tocoo()
        io.write_table(
            pd.DataFrame({USER_IDX: coo.row.astype(np.int64), ITEM_IDX: coo.col.astype(np.int64)}),
            tmp / "seen.parquet",
        )
        model._save(tmp)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": model.name,
            "config": model.config_dict(),
            "feedback": model.feedback,
            "train_result": None if model.train_result is None else model.train_result.facts(),
        }
        io.write_json(meta, tmp / META_FILE)


def load_recommender(cls: type[R], path: Path) -> R:
    """Read a model written by ``save_recommender``: the class registered under its name, which
    must be ``cls`` or a subclass of it."""
    meta = read_versioned_json(
        path / META_FILE,
        FORMAT_VERSION,
        what="model",
        fix="re-train and save the model with this version of recsys",
    )
    from recsys.models.registry import model_class

    target = model_class(meta["model"])
    if not issubclass(target, cls):
        raise DataError(f"{path} holds a '{meta['model']}' model, not a {cls.__name__}")
    model = target(**meta["config"])
    users = io.read_table(path / "vocab" / "users.parquet")
    items = io.read_table(path / "vocab" / "items.parquet")
    model.vocab = Vocabulary.from_frames(users, items)
    seen = io.read_table(path / "seen.parquet")
    model._seen = sp.csr_matrix(
        (np.ones(len(seen), dtype=np.float32), (seen[USER_IDX], seen[ITEM_IDX])),
        shape=(model.vocab.n_users, model.vocab.n_items),
    )
    model._item_in_train = np.asarray(model._seen.getnnz(axis=0) > 0)
    model.feedback = meta.get("feedback", "explicit")
    if meta.get("train_result"):
        # Timings are not saved (the same bytes for the same fit); an older file's still load.
        model.train_result = TrainResult(**{"fit_seconds": None, **meta["train_result"]})
    model._load(path)
    return model
