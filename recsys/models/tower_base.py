"""What the content-aware models (DeepContent, Hybrid, TwoTower) share.

- ``TowerNet``: the base of their Keras nets, an ``ItemTower`` and a ``UserTower`` built from
  the data's table sizes and ending in ``embedding_dim`` units; ``pair_vectors`` gives the
  user and item vectors of a batch of training pairs (each pair's own item left out of the
  user's pooled history, see ``recsys.models.towers``).
- ``TowerRecommender``: the ``Recommender`` around such a net: the ``recsys.train`` fit with
  ranking validation and checkpoints, tower outputs cached per weight snapshot, ``tune``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Sized
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from recsys.data.preprocess import InteractionSplit, Processed
from recsys.models.keras_base import EpochsTuned, KerasRecommender, pair_model
from recsys.models.towers import ItemTower, UserTower, history_table, item_tables
from recsys.train import EpochArrays, resolve_device, set_seeds, to_numpy

__all__ = ["NET", "TowerNet", "TowerRecommender", "net_sizes"]

NET = "net"
"""Name of the layer that holds the towers inside the Keras model."""
ENCODE_BLOCK = 4096
"""Users encoded per eager call when caching the user vectors."""


class TowerNet(keras.layers.Layer):
    """An item tower and a user tower (layer names "item_tower", "user_tower": part of the
    saved weights), both ending in ``embedding_dim`` units.

    The six positional sizes are the data's (``net_sizes``); ``tower_id_dim`` > 0 gives both
    towers id embeddings. ``get_config`` is the sizes plus ``self.options``, which subclasses
    extend with their own constructor arguments.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_genres: int,
        title_length: int,
        vocab_size: int,
        n_user_features: int,
        *,
        embedding_dim: int,
        token_dim: int,
        item_hidden_units: Sequence[int],
        user_hidden_units: Sequence[int],
        history_exponent: float,
        dropout: float,
        tower_id_dim: int,
        normalize: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = {
            "n_users": int(n_users),
            "n_items": int(n_items),
            "n_genres": int(n_genres),
            "title_length": int(title_length),
            "vocab_size": int(vocab_size),
            "n_user_features": int(n_user_features),
        }
        self.dim = int(embedding_dim)
        self.options: dict[str, Any] = {
            "embedding_dim": self.dim,
            "token_dim": int(token_dim),
            "item_hidden_units": [int(u) for u in item_hidden_units],
            "user_hidden_units": [int(u) for u in user_hidden_units],
            "history_exponent": float(history_exponent),
            "dropout": float(dropout),
            "normalize": bool(normalize),
        }
        self.item_tower = ItemTower(
            n_items,
            n_genres,
            title_length,
            vocab_size,
            token_dim=token_dim,
            units=(*item_hidden_units, self.dim),
            id_dim=tower_id_dim,
            dropout=dropout,
            normalize=normalize,
            dtype=self.dtype_policy,
            name="item_tower",
        )
        self.user_tower = UserTower(
            n_users,
            n_items,
            n_user_features,
            item_dim=self.dim,
            units=(*user_hidden_units, self.dim),
            id_dim=tower_id_dim,
            history_exponent=history_exponent,
            dropout=dropout,
            normalize=normalize,
            dtype=self.dtype_policy,
            name="user_tower",
        )

    def build(self, input_shape: Any = None) -> None:
        self.item_tower.build()
        self.user_tower.build()
        self.built = True

    def pair_vectors(self, user: Any, item: Any, training: bool | None = None) -> tuple[Any, Any]:
        """([b, d] user vectors, [b, d] item vectors) of the pairs ``(user[j], item[j])``; the
        item tower runs once over the catalogue, whose vectors the user tower pools."""
        items_all = self.item_tower.encode(None, training=training)  # [n_items, d]
        e = ops.take(items_all, item, axis=0)
        u = self.user_tower.encode(user, items_all, exclude=item, training=training)
        return u, e

    def catalogue_vectors(
        self, user: Any, item: Any, training: bool | None = None
    ) -> tuple[Any, Any]:
        """([b, d] user vectors of the pairs, [n_items, d] vectors of the whole catalogue),
        for a softmax over every item (the pair's item left out of the user's history)."""
        items_all = self.item_tower.encode(None, training=training)
        return self.user_tower.encode(user, items_all, exclude=item, training=training), items_all

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.sizes, **self.options}


def net_sizes(data: Processed) -> tuple[int, int, int, int, int, int]:
    """The positional sizes of a ``TowerNet`` for ``data``."""
    f = data.features
    return (
        data.vocab.n_users,
        data.vocab.n_items,
        f.item_genres.shape[1],
        f.item_tokens.shape[1],
        max(len(f.tokens), 2),
        f.user_features.shape[1],
    )


class TowerRecommender(EpochsTuned, KerasRecommender):
    """A ``TowerNet`` trained through ``recsys.train`` (see the module docstring).

    Subclasses set ``name``, ``config_class``, ``net_class`` and ``net_fields`` (the config
    fields passed to the net as keyword arguments) and implement ``_loss``, ``_epoch_data``,
    ``_extract`` and ``_score_block``; ``_fill_tables`` writes the towers' tables and may be
    extended.
    """

    net_class: ClassVar[type[TowerNet]]
    net_fields: ClassVar[tuple[str, ...]]

    def n_parameters(self) -> int:
        """Trainable weights (the feature and history tables are data, not parameters)."""
        if self._model is None:
            return 0
        return int(sum(int(np.prod(v.shape)) for v in self._model.trainable_variables))

    @property
    def net(self) -> Any:
        return self.keras_model.get_layer(NET)

    # --- hooks ----------------------------------------------------------------------------------
    def _net_options(self) -> dict[str, Any]:
        """The net's keyword arguments: the config's ``net_fields`` (unit tuples as lists)."""
        options = {name: getattr(self.config, name) for name in self.net_fields}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}

    def _loss(self) -> Any:
        raise NotImplementedError

    def _epoch_data(self, split: InteractionSplit) -> Callable[[int], EpochArrays]:
        raise NotImplementedError

    def _score_block(self, v: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _make_net(self, data: Processed) -> TowerNet:
        return self.net_class(*net_sizes(data), name=NET, **self._net_options())

    def _fill_tables(self, net: Any, data: Processed) -> None:
        """The item content, the trained-item mask and the users' features and histories."""
        seen = history_table(self._seen_matrix(), self.name)
        genres, tokens, year = item_tables(data.features)
        net.item_tower.set_tables(genres, tokens, year, in_train=self._train_mask())
        net.user_tower.set_tables(data.features.user_features, seen)

    # --- training -------------------------------------------------------------------------------
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        cfg = self.config
        plan = resolve_device(cfg.device)
        set_seeds(cfg.seed)
        self._snapshot_cache = None
        epoch_data = self._epoch_data(split)
        rows = len(epoch_data) if isinstance(epoch_data, Sized) else len(split.train)
        with plan.scope():
            net = self._make_net(data)
            model = pair_model(net, self.name)
            self._fill_tables(net, data)
            net.user_tower.pool_all_users = cfg.batch_size >= data.vocab.n_users
            model.compile(
                optimizer=self._optimizer(steps_per_epoch=-(-rows // cfg.batch_size)),
                loss=self._loss(),
                jit_compile=plan.jit_compile,
            )
        validation = self._ranking_validation(split, self._live_scores)
        return self._train(model, epoch_data, plan, validation)

    # --- scoring --------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._score_block(self._snapshot(), user_idx, item_idx)

    def _live_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``_scores`` with the weights as they are now (validation during training)."""
        return self._score_block(self._extract(), user_idx, item_idx)

    def _encode_all(self) -> tuple[np.ndarray, np.ndarray]:
        """([n_users, d] user vectors, [n_items, d] item vectors) at inference: the item
        tower over the catalogue once, the user tower over the users in blocks."""
        net = self.net
        items = net.item_tower.encode(None, training=False)
        n_users = int(net.user_tower.n_users)
        users = [
            to_numpy(
                net.user_tower.encode(
                    np.arange(lo, min(lo + ENCODE_BLOCK, n_users), dtype=np.int32),
                    items,
                    training=False,
                )
            )
            for lo in range(0, n_users, ENCODE_BLOCK)
        ]
        return (
            np.concatenate(users).astype(np.float32, copy=False),
            to_numpy(items).astype(np.float32, copy=False),
        )

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, d] item tower outputs (every catalogue item, cold ones too)."""
        return np.array(self._snapshot().items, copy=True)

    def user_embeddings(self, user_idx: np.ndarray) -> np.ndarray:
        """[n, d] user tower outputs of user indices (the whole training history pooled)."""
        return np.array(self._snapshot().users[np.asarray(user_idx, dtype=np.int64)], copy=True)
