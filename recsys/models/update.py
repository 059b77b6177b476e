"""Updating a trained model with new interactions, without a full retrain (issue 19 §1).

``update_model(champion, data, settings)`` takes a trained model and ``data``, the processed
data set of now (the champion's data plus a batch, preprocessed as a full run would: cleaning,
vocabulary, content features, split), and returns a model of the same kind and settings that
knows every user and item of ``data``. The batch is what the champion has not seen: the rows of
``data.split.train`` whose (user, item) pair, by raw id, is not in its training history, so the
vocabulary may be re-indexed freely between the two. What it does, by model:

- **Keras models (warm start).** The same architecture is built for the grown vocabulary and
  every trainable weight is copied from the champion, the rows of each user- or item-indexed
  axis moved to their new index by raw id (``transfer_weights``). A new user's or item's row
  starts at the mean of the champion's rows; the towers of the two-tower, content and hybrid
  models add the item's content features and the user's history, so a new item is placed by
  what it is and a new user by what they did. Then ``settings.epochs`` epochs, with a fresh
  optimizer at the configured learning rate and no early stopping, on the batch plus a replay
  sample of the old rows (``settings.replay`` old rows per batch row, drawn uniformly without
  replacement): the replay keeps the model from drifting towards the batch alone. Negatives
  are never sampled from any known history.
- **EASE, ItemKNN, popularity, ALS (fold-in, exact).** ``recsys.models.fold_in`` adds the new
  users and the batch's interactions without refitting the items. A batch with items the
  champion has never seen refits the model instead (these models have no content path to place
  a new item; EASE's refit is one items x items solve); the result says so.
- **Any other model** is refitted from scratch, with the reason.

The ``Updated`` record says which of the three happened and on how many rows: the decision of
``recsys update`` records it with the champion and the data versions.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import keras
import numpy as np
import pandas as pd

from recsys.data.preprocess import Processed, Vocabulary
from recsys.errors import ConfigError
from recsys.models.base import Recommender
from recsys.models.fold_in import FOLDS_IN, fold_in
from recsys.models.keras_base import KerasRecommender
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID, id_array
from recsys.train import to_numpy

__all__ = [
    "METHODS",
    "RowMaps",
    "UpdateSettings",
    "Updated",
    "WarmSource",
    "trained_pairs",
    "transfer_weights",
    "unseen_rows",
    "update_model",
]

METHODS: Final = ("warm_start", "fold_in", "refit")
SPLIT_ORDER: Final = [USER_ID, TIMESTAMP, ITEM_ID]
"""How the split's frames are sorted (``InteractionSplit``)."""


@dataclass(frozen=True)
class UpdateSettings:
    """``update`` in params.yaml: the bounded training of a warm start."""

    epochs: int = 2
    """Epochs over the batch and its replay sample (the champion's own ``epochs`` is ignored)."""
    replay: float = 1.0
    """Old training rows replayed per batch row (0: the batch alone)."""
    seed: int = 0
    """Draws the replay sample."""

    def __post_init__(self) -> None:
        if int(self.epochs) < 1:
            raise ConfigError(f"update.epochs must be >= 1, got {self.epochs}")
        if not 0 <= float(self.replay) <= 100:
            raise ConfigError(f"update.replay must be in [0, 100], got {self.replay}")


@dataclass(frozen=True)
class Updated:
    """What ``update_model`` did."""

    model: Recommender
    method: str
    """``warm_start``, ``fold_in`` or ``refit`` (``METHODS``)."""
    reason: str
    batch_rows: int
    """Training rows the champion had not seen."""
    replay_rows: int
    new_users: int
    new_items: int

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "model"}


@dataclass(frozen=True)
class RowMaps:
    """Where each row of the grown vocabulary was in the old one (-1: new)."""

    users: np.ndarray
    items: np.ndarray
    old_users: int
    old_items: int

    @classmethod
    def between(cls, old: Vocabulary, new: Vocabulary) -> RowMaps:
        return cls(
            old.encode_users(new.user_ids),
            old.encode_items(new.item_ids),
            old.n_users,
            old.n_items,
        )


@dataclass(frozen=True)
class WarmSource:
    """The champion's Keras model and the row maps: what ``KerasRecommender._train`` copies
    into the freshly built model before training it (``transfer_weights``)."""

    model: keras.Model
    maps: RowMaps

    def apply(self, target: keras.Model) -> None:
        transfer_weights(self.model, target, self.maps)


def transfer_weights(source: keras.Model, target: keras.Model, maps: RowMaps) -> None:
    """Copy every trainable weight of ``source`` into ``target`` (the same architecture built
    for a grown vocabulary), moving user- and item-indexed rows by ``maps``; new rows take
    the mean of the old ones. Non-trainable weights are data tables (content, histories) that
    the target's own data already filled. ``ConfigError`` when the two do not line up."""
    old, new = source.trainable_variables, target.trainable_variables
    if len(old) != len(new):
        raise ConfigError(
            f"cannot warm-start: the champion has {len(old)} trainable weights, the model "
            f"built for the new data {len(new)}",
            fix="the settings changed since the champion was trained: run a full retrain",
        )
    for src, dst in zip(old, new, strict=True):
        value = to_numpy(src)
        shape = tuple(int(d) for d in dst.shape)
        if value.ndim != len(shape):
            raise ConfigError(
                f"cannot warm-start {dst.path}: rank {value.ndim} in the champion, "
                f"{len(shape)} now",
                fix="run a full retrain",
            )
        for axis, dim in enumerate(shape):
            value = _remap_axis(value, axis, dim, maps, str(dst.path))
        dst.assign(value.astype(np.dtype(str(dst.dtype)), copy=False))


def _remap_axis(value: np.ndarray, axis: int, dim: int, maps: RowMaps, path: str) -> np.ndarray:
    """``value`` with its ``axis`` re-indexed to the grown vocabulary when that axis is a
    user or item axis (its length is the old count and ``dim`` the new one; the weight's path
    decides when both could be, e.g. as many users as items)."""
    old_dim = value.shape[axis]
    kinds = {
        kind: index
        for kind, index, old_n in (
            ("user", maps.users, maps.old_users),
            ("item", maps.items, maps.old_items),
        )
        if old_dim == old_n and dim == len(index)
    }
    named = {kind for kind in ("user", "item") if kind in path.lower()}
    if len(kinds) > 1 and len(named) == 1:
        kinds = {k: v for k, v in kinds.items() if k in named}
    if len(kinds) != 1:
        if old_dim == dim:
            return value
        raise ConfigError(
            f"cannot warm-start {path}: axis {axis} has {old_dim} rows in the champion and "
            f"{dim} now, and is not a user or item axis",
            fix="run a full retrain",
        )
    (index,) = kinds.values()
    if old_dim == dim and np.array_equal(index, np.arange(dim)):
        return value
    moved = np.take(value, np.maximum(index, 0), axis=axis)
    fresh = index < 0
    if fresh.any():
        where: list[Any] = [slice(None)] * value.ndim
        where[axis] = fresh
        mean = value.mean(axis=axis, keepdims=True)
        moved[tuple(where)] = np.broadcast_to(mean, moved[tuple(where)].shape)
    return moved


def unseen_rows(champion: Recommender, rows: pd.DataFrame) -> np.ndarray:
    """[len(rows)] bool: the (user, item) pairs, by raw id, the champion never trained on."""
    vocab = champion.vocab
    if vocab is None:
        raise ConfigError(f"the {champion.name} champion is not trained", fix="load it first")
    users = vocab.encode_users(id_array(rows[USER_ID].to_numpy()))
    items = vocab.encode_items(id_array(rows[ITEM_ID].to_numpy()))
    known = (users >= 0) & (items >= 0)
    seen = np.zeros(len(rows), dtype=bool)
    if known.any():
        history = champion._seen_matrix()
        seen[known] = np.asarray(history[users[known], items[known]]).ravel() > 0
    return ~seen


def trained_pairs(model: Recommender) -> pd.DataFrame:
    """The (``user_id``, ``item_id``) raw-id pairs ``model`` trained on (its history)."""
    vocab = model.vocab
    if vocab is None:
        raise ConfigError(f"the {model.name} model is not trained", fix="load it first")
    seen = model._seen_matrix().tocoo()
    return pd.DataFrame({USER_ID: vocab.user_ids[seen.row], ITEM_ID: vocab.item_ids[seen.col]})


def update_model(champion: Recommender, data: Processed, settings: UpdateSettings) -> Updated:
    """A model like ``champion`` that knows ``data`` (module docstring). The champion is left
    as it was."""
    if champion.vocab is None:
        raise ConfigError(f"the {champion.name} champion is not trained", fix="load it first")
    train = data.split.train
    fresh = unseen_rows(champion, train)
    batch = train[fresh]
    counts = {
        "batch_rows": int(fresh.sum()),
        "new_users": int((champion.vocab.encode_users(data.vocab.user_ids) < 0).sum()),
        "new_items": int((champion.vocab.encode_items(data.vocab.item_ids) < 0).sum()),
    }
    if isinstance(champion, KerasRecommender):
        old = train[~fresh]
        n_replay = min(len(old), round(float(settings.replay) * len(batch)))
        rows = pd.concat([batch, old.sample(n=n_replay, random_state=settings.seed)])
        model = _warm_started(champion, data, rows, settings.epochs)
        reason = f"{settings.epochs} epoch(s) from the champion's weights"
        return Updated(model, "warm_start", reason, replay_rows=n_replay, **counts)
    new_items = not bool(champion.known_items(batch[ITEM_ID].to_numpy()).all())
    if champion.name in FOLDS_IN and not new_items:
        folded = copy.deepcopy(champion)
        fold_in(folded, batch)
        return Updated(
            folded, "fold_in", "new users and interactions folded in", replay_rows=0, **counts
        )
    why = (
        "the batch has items it has never seen and it has no content path for them"
        if champion.name in FOLDS_IN
        else "it has no incremental path"
    )
    refitted = type(champion)(**champion.config_dict())
    refitted.fit(data)
    return Updated(refitted, "refit", f"refitted: {why}", replay_rows=0, **counts)


def _warm_started(
    champion: KerasRecommender, data: Processed, rows: pd.DataFrame, epochs: int
) -> KerasRecommender:
    """``champion``'s kind, trained from its weights on ``rows`` for ``epochs`` epochs with
    every row of ``data.split.train`` as its history (``update_model``)."""
    fields = {"epochs": int(epochs), "patience": 0, "schedule_epochs": 0}
    config = dataclasses.replace(
        champion.config,
        **{k: v for k, v in fields.items() if hasattr(champion.config, k)},
    )
    model = type(champion)(config)
    empty = data.split.val.iloc[:0]
    split = dataclasses.replace(
        data.split,
        train=rows.sort_values(SPLIT_ORDER, kind="stable").reset_index(drop=True),
        val=empty,
        val_negatives=None,
    )
    model.warm_from = WarmSource(
        champion.keras_model, RowMaps.between(champion._vocab(), data.vocab)
    )
    try:
        model.fit(data, split, history=data.split.train)
    finally:
        model.warm_from = None
    return model
