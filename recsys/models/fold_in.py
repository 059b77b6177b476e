"""Folding new users into a trained model without refitting its items (issue 19 §1).

``fold_in(model, interactions)`` grows the model's user vocabulary with the users of
``interactions`` it does not know and adds every interaction to the users' histories; the
items must all be known (an item never seen needs a retrain: these models have no content
path for it). What it takes per model, where the model's maths allows an exact answer:

- EASE, ItemKNN, popularity: they score a user from their history row alone (``x_u B``,
  neighbour sums, counts), so a folded-in user is scored exactly as a user with that history
  in training would be; nothing is refitted.
- weighted ALS: a new user's vector is the ALS user step against the trained item factors,
  the closed-form least squares ``(Y^T C_u Y + lambda I)^-1 Y^T C_u p_u`` that every ALS
  iteration solves (computed by ``implicit``'s own solver). Known users keep their vectors
  (their earlier strengths are not stored); their new items join their history (excluded
  from their recommendations).

Other models raise ``ConfigError``: they need a retrain, or the warm start of ``recsys update``
(not built yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.preprocess import Vocabulary
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender
from recsys.schema import ITEM_ID, RATING, USER_ID, id_array, id_kind

FOLDS_IN = ("ease", "itemknn", "mostpop", "als")


@dataclass(frozen=True)
class Growth:
    """What a model's ``_fold_in`` receives: the grown vocabulary and 0/1 histories (old user
    i is row ``old_rows[i]`` now; ``new_users``: the rows added) and the batch itself."""

    vocab: Vocabulary
    history: sp.csr_matrix
    old_rows: np.ndarray
    new_users: np.ndarray
    users: np.ndarray
    items: np.ndarray
    strength: np.ndarray


@dataclass(frozen=True)
class FoldIn:
    """What ``fold_in`` did."""

    new_users: int
    known_users: int
    interactions: int


def fold_in(model: Recommender, interactions: pd.DataFrame) -> FoldIn:
    """Fold ``interactions`` (``user_id``, ``item_id`` and optionally ``rating``) into the
    trained ``model`` in place (module docstring)."""
    if model.name not in FOLDS_IN:
        raise ConfigError(
            f"the {model.name} model cannot take new users without training",
            fix=f"retrain it; users fold into {', '.join(FOLDS_IN)} without one",
        )
    vocab = model.vocab
    if vocab is None:
        raise ConfigError(f"the {model.name} model is not trained", fix="fit or load it first")
    missing = [c for c in (USER_ID, ITEM_ID) if c not in interactions.columns]
    if missing:
        raise DataError(f"new interactions lack the column(s) {missing}")
    users = id_array(interactions[USER_ID].to_numpy())
    items = id_array(interactions[ITEM_ID].to_numpy())
    if len(users) and id_kind(users) != vocab.user_kind:
        raise DataError(
            f"the new user ids are {id_kind(users)} ids, the model's are {vocab.user_kind} ids",
            fix="pass the ids the training data used",
        )
    unknown_items = sorted(set(items[~model.known_items(items)].tolist()))
    if unknown_items:
        raise DataError(
            f"{len(unknown_items)} item id(s) the model has never seen: {unknown_items[:20]}",
            fix="new items need a retrain (these models have no content path for them)",
        )
    known = model.known_users(users)
    grown = Vocabulary(np.union1d(vocab.user_ids, users), vocab.item_ids)
    old_rows = grown.encode_users(vocab.user_ids)
    seen = model._seen_matrix().tocoo()
    rows = np.concatenate([old_rows[seen.row], grown.encode_users(users)])
    cols = np.concatenate([seen.col, vocab.encode_items(items)])
    history = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(grown.user_ids), len(grown.item_ids)),
    )
    history.data[:] = 1.0  # duplicates summed by the constructor: back to 0/1
    strength = (
        interactions[RATING].to_numpy(dtype=np.float32)
        if RATING in interactions.columns
        else np.ones(len(users), dtype=np.float32)
    )
    new_users = np.unique(grown.encode_users(users[~known]))
    model._fold_in(Growth(grown, history, old_rows, new_users, users, items, strength))
    return FoldIn(
        new_users=len(new_users),
        known_users=len(np.unique(users[known])),
        interactions=len(users),
    )
