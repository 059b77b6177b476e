"""Keras blocks of the content-aware recommenders (DeepContent, Hybrid, TwoTower).

The models take only ``(user, item)`` index pairs as inputs; everything else a tower needs
lives *inside* the model as non-trainable tables, written once before training and saved in
the ``.keras`` file with the weights (RELIABILITY.md item 6: the feature code ships with the
model, no train/serve skew):

- ``ItemTower``: genres multi-hot, title/text token ids (``EmbeddingBag``: masked mean pooling)
  and the standardized release year with a missing flag, optionally an item id embedding
  (zeroed for items without training interactions), through a ``FeatureTower``;
- ``UserTower``: demographics, a profile pooled from the user's training history (the mean of
  the item tower's outputs over the items the user interacted with) and optionally a user id
  embedding, through a ``FeatureTower``.

History pooling is one matrix product per batch, ``A[users] @ E`` with the dense
``[n_users, n_items]`` 0/1 interaction table ``A`` (float16, exact for 0/1) and the item
vectors ``E`` of the whole catalogue: on 2 CPU cores that was 7 ms per batch of 1024 against
55 ms for a gather over padded history lists of 256 ids (ML-100K sizes). The table is
refused beyond ``MAX_HISTORY_CELLS``.

Training pairs ``(u, i)`` pool the history *without* ``i`` (``exclude``): a positive is always
in its user's history, a sampled negative never is, so pooling it in would let the model learn
"the item is in the profile" instead of taste. At inference the whole history is pooled.

All blocks use ``keras.ops`` only (TensorFlow and JAX backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.data.preprocess import ContentFeatures
from recsys.errors import ConfigError
from recsys.models.layers import EmbeddingBag, FeatureTower, id_embedding
from recsys.models.model_config import check_config_fields
from recsys.models.scoring import GmfMlpHead

__all__ = [
    "MAX_HISTORY_CELLS",
    "GmfMlpHead",
    "ItemTower",
    "UserTower",
    "check_config_fields",
    "history_table",
    "item_tables",
]
# ``GmfMlpHead`` (``recsys.models.scoring``) and ``check_config_fields``
# (``recsys.models.keras_base``) lived here; they are re-exported for old imports.

MAX_HISTORY_CELLS = 1 << 28
"""Largest ``n_users * n_items`` history table (512 MiB of float16)."""
YEAR_FEATURES = 2
"""Standardized year and a missing flag."""


def _table(layer: keras.layers.Layer, name: str, shape: tuple[int, ...], dtype: str) -> Any:
    return layer.add_weight(
        name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False
    )


class _Tower(keras.layers.Layer):
    """What both towers share: an optional id embedding (``id_dim > 0``) and the
    ``FeatureTower`` over the concatenated parts; subclasses build their tables."""

    def __init__(
        self,
        *,
        units: Sequence[int],
        id_dim: int,
        dropout: float,
        normalize: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.id_dim = int(id_dim)
        self.dropout = float(dropout)
        self.normalize = bool(normalize)

    def _add_ids_and_tower(self, n_ids: int, id_name: str) -> None:
        """Create ``self.ids`` (None without ids) and ``self.tower``; called by the subclass
        after its own sublayers, so initializers are drawn in the order weights were saved."""
        self.ids = (
            id_embedding(n_ids, self.id_dim, name=id_name, dtype=self.dtype_policy)
            if self.id_dim
            else None
        )
        self.tower = FeatureTower(
            self.units,
            dropout=self.dropout,
            normalize=self.normalize,
            dtype=self.dtype_policy,
            name="mlp",
        )

    @property
    def dim(self) -> int:
        return self.units[-1]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape), self.dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "id_dim": self.id_dim,
            "dropout": self.dropout,
            "normalize": self.normalize,
        }


# --- item tower -------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="recsys")
class ItemTower(_Tower):
    """``[b] item index -> [b, units[-1]]`` from the item's content (and id).

    Tables (non-trainable, filled by ``set_tables``): ``genres`` [n_items, n_genres],
    ``tokens`` [n_items, title_length] int32 (0 = padding), ``year`` [n_items, 2], and with
    ``id_dim > 0`` ``in_train`` [n_items] (1.0 for items with training interactions: the id
    embedding of any other item is multiplied by 0, so an untrained item is content only).

    Args:
      n_items, n_genres, title_length, vocab_size: table sizes (``ContentFeatures``).
      token_dim: width of the title token embeddings.
      units: ``FeatureTower`` widths; the last is the item vector's width.
      id_dim: item id embedding width (0: none).
      dropout: after each hidden layer of the tower.
      normalize: L2-normalize the output.
    """

    def __init__(
        self,
        n_items: int,
        n_genres: int,
        title_length: int,
        vocab_size: int,
        *,
        token_dim: int,
        units: Sequence[int],
        id_dim: int = 0,
        dropout: float = 0.0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(units=units, id_dim=id_dim, dropout=dropout, normalize=normalize, **kwargs)
        self.n_items = int(n_items)
        self.n_genres = int(n_genres)
        self.title_length = int(title_length)
        self.vocab_size = int(vocab_size)
        self.token_dim = int(token_dim)
        self.bag = EmbeddingBag(
            self.vocab_size,
            self.token_dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
            dtype=self.dtype_policy,
            name="title",
        )
        self._add_ids_and_tower(self.n_items, "item_id")

    def build(self, input_shape: Any = None) -> None:
        n = self.n_items
        self.genres = _table(self, "genres", (n, self.n_genres), "float32")
        self.tokens = _table(self, "tokens", (n, self.title_length), "int32")
        self.year = _table(self, "year", (n, YEAR_FEATURES), "float32")
        widths = [self.n_genres, self.token_dim, YEAR_FEATURES]
        self.bag.build((None, self.title_length))
        if self.ids is not None:
            self.in_train = _table(self, "in_train", (n,), "float32")
            self.ids.build((None,))
            widths.append(self.id_dim)
        self.tower.build([(None, w) for w in widths])
        self.built = True

    def set_tables(
        self,
        genres: np.ndarray,
        tokens: np.ndarray,
        year: np.ndarray,
        in_train: np.ndarray | None = None,
    ) -> None:
        """Write the content tables (and the trained-item mask when the tower has ids)."""
        self.genres.assign(np.asarray(genres, dtype=np.float32))
        self.tokens.assign(np.asarray(tokens, dtype=np.int32))
        self.year.assign(np.asarray(year, dtype=np.float32))
        if self.ids is not None:
            if in_train is None:
                raise ValueError("an ItemTower with ids needs the in_train mask")
            self.in_train.assign(np.asarray(in_train, dtype=np.float32))

    def encode(self, items: Any = None, training: bool | None = None) -> Any:
        """[b, dim] vectors of ``items`` ([b] int), or of the whole catalogue when None."""
        if items is None:
            genres, tokens, year = self.genres.value, self.tokens.value, self.year.value
        else:
            genres = ops.take(self.genres.value, items, axis=0)
            tokens = ops.take(self.tokens.value, items, axis=0)
            year = ops.take(self.year.value, items, axis=0)
        parts = [genres, self.bag(tokens), year]
        if self.ids is not None:
            if items is None:
                ids, mask = self.ids.embeddings.value, self.in_train.value
            else:
                ids, mask = self.ids(items), ops.take(self.in_train.value, items, axis=0)
            parts.append(ids * ops.cast(mask, ids.dtype)[:, None])
        return self.tower(parts, training=training)

    def call(self, items: Any, training: bool | None = None) -> Any:
        return self.encode(items, training=training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_items": self.n_items,
            "n_genres": self.n_genres,
            "title_length": self.title_length,
            "vocab_size": self.vocab_size,
            "token_dim": self.token_dim,
        }


# --- user tower -------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="recsys")
class UserTower(_Tower):
    """``[b] user index -> [b, units[-1]]`` from demographics, pooled history (and id).

    Tables (non-trainable, filled by ``set_tables``): ``features`` [n_users, n_features],
    ``history`` [n_users, n_items] float16 0/1, ``history_size`` [n_users] (its row sums),
    and with ``id_dim > 0`` ``in_train`` [n_users] (users without training interactions get a
    zero id embedding).

    The pooled profile of user u is ``sum_j A[u, j] E[j] / max(n_u, 1) ** history_exponent``
    over the item vectors ``E`` the caller passes (``history_exponent`` 1: the mean; 0.5 as
    FISM's alpha damps long histories less). With ``exclude`` = the pair's item, that item is
    left out of the sum and the count when the user has it.

    Args:
      n_users, n_items, n_features: table sizes.
      item_dim: width of the item vectors pooled (0: no history pooling).
      units: ``FeatureTower`` widths; the last is the user vector's width.
      id_dim: user id embedding width (0: none).
      history_exponent: see above.
      dropout, normalize: as ``FeatureTower``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_features: int,
        *,
        item_dim: int,
        units: Sequence[int],
        id_dim: int = 0,
        history_exponent: float = 1.0,
        dropout: float = 0.0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(units=units, id_dim=id_dim, dropout=dropout, normalize=normalize, **kwargs)
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.n_features = int(n_features)
        self.item_dim = int(item_dim)
        self.history_exponent = float(history_exponent)
        self._add_ids_and_tower(self.n_users, "user_id")

    def build(self, input_shape: Any = None) -> None:
        self.features = _table(self, "features", (self.n_users, self.n_features), "float32")
        widths = [self.n_features]
        if self.item_dim:
            self.history = _table(self, "history", (self.n_users, self.n_items), "float16")
            self.history_size = _table(self, "history_size", (self.n_users,), "float32")
            widths.append(self.item_dim)
        if self.ids is not None:
            self.in_train = _table(self, "in_train", (self.n_users,), "float32")
            self.ids.build((None,))
            widths.append(self.id_dim)
        self.tower.build([(None, w) for w in widths])
        self.built = True

    def set_tables(self, features: np.ndarray, history: sp.spmatrix | None = None) -> None:
        """Write the demographics and, for pooling or ids, the training interactions."""
        self.features.assign(np.asarray(features, dtype=np.float32))
        if history is None:
            if self.item_dim or self.ids is not None:
                raise ValueError("this UserTower needs the training interactions")
            return
        csr = sp.csr_matrix(history, dtype=np.float32)
        counts = np.asarray((csr != 0).sum(axis=1), dtype=np.float32).ravel()
        if self.item_dim:
            dense = np.asarray((csr != 0).todense(), dtype=np.float16)
            self.history.assign(dense)
            self.history_size.assign(counts)
        if self.ids is not None:
            self.in_train.assign((counts > 0).astype(np.float32))

    pool_all_users: bool = False
    """Set by the trainer when a batch holds at least as many rows as there are users: all
    users' profiles ``A @ E`` then cost no more than the batch rows' (ML-100K, 2048 pairs:
    17 ms against 60 ms on 2 loaded cores). Training only; not saved."""

    def pool(
        self, users: Any, item_vectors: Any, exclude: Any = None, training: bool | None = None
    ) -> Any:
        """[b, item_dim] history profile of ``users`` over ``item_vectors`` [n_items, d]."""
        if training and self.pool_all_users:
            every = ops.cast(self.history.value, item_vectors.dtype)
            total = ops.take(ops.matmul(every, item_vectors), users, axis=0)  # [b, d]
        else:
            rows = ops.cast(ops.take(self.history.value, users, axis=0), item_vectors.dtype)
            total = ops.matmul(rows, item_vectors)  # [b, d]
        count = ops.cast(ops.take(self.history_size.value, users, axis=0), item_vectors.dtype)
        if exclude is not None:
            # A[u, i] of each pair, read from the flat table (take_along_axis on the [b, n]
            # rows cost more than the pooling product itself).
            flat = ops.cast(users, "int32") * self.n_items + ops.cast(exclude, "int32")
            had = ops.cast(
                ops.take(ops.reshape(self.history.value, (-1,)), flat, axis=0),
                item_vectors.dtype,
            )  # [b]
            total = total - ops.expand_dims(had, 1) * ops.take(item_vectors, exclude, axis=0)
            count = count - had
        scale = ops.power(ops.maximum(count, ops.cast(1.0, count.dtype)), -self.history_exponent)
        return total * ops.expand_dims(scale, 1)

    def encode(
        self,
        users: Any,
        item_vectors: Any = None,
        exclude: Any = None,
        training: bool | None = None,
    ) -> Any:
        """[b, dim] user vectors; ``item_vectors`` [n_items, item_dim] when pooling."""
        parts = [ops.take(self.features.value, users, axis=0)]
        if self.item_dim:
            if item_vectors is None:
                raise ValueError("this UserTower pools the history: pass item_vectors")
            parts.append(self.pool(users, item_vectors, exclude, training=training))
        if self.ids is not None:
            ids = self.ids(users)
            mask = ops.cast(ops.take(self.in_train.value, users, axis=0), ids.dtype)
            parts.append(ids * mask[:, None])
        return self.tower(parts, training=training)

    def call(self, users: Any, training: bool | None = None) -> Any:
        if self.item_dim:
            raise ValueError("a pooling UserTower is called through encode(users, vectors)")
        return self.encode(users, training=training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_features": self.n_features,
            "item_dim": self.item_dim,
            "history_exponent": self.history_exponent,
        }


# --- numpy tables -----------------------------------------------------------------------------
def item_tables(features: ContentFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(genres [n, G] f32, tokens [n, T] i32, year [n, 2] f32)`` for ``ItemTower``.

    The year is standardized over the items with a known year (item metadata only, never
    interactions); an unknown year is 0 with the flag column set to 1.
    """
    year = np.asarray(features.item_year, dtype=np.float64)
    known = np.isfinite(year)
    mean = float(year[known].mean()) if known.any() else 0.0
    std = float(year[known].std()) if known.sum() > 1 else 1.0
    z = np.where(known, (np.where(known, year, mean) - mean) / max(std, 1e-6), 0.0)
    year2 = np.stack([z, (~known).astype(np.float64)], axis=1).astype(np.float32)
    return (
        np.asarray(features.item_genres, dtype=np.float32),
        np.asarray(features.item_tokens, dtype=np.int32),
        year2,
    )


def history_table(seen: sp.spmatrix, what: str) -> sp.csr_matrix:
    """The training interactions, checked against ``MAX_HISTORY_CELLS``."""
    n_users, n_items = seen.shape
    if n_users * n_items > MAX_HISTORY_CELLS:
        raise ConfigError(
            f"{what}: the history table would hold {n_users} x {n_items} cells, more than "
            f"{MAX_HISTORY_CELLS}",
            fix="this model pools histories densely; use it on catalogues of that size only",
        )
    return sp.csr_matrix(seen)
