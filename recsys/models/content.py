"""DeepContent: a content-based deep recommender that scores items never seen in training.

An item is represented by its content alone, a user by demographics and the content of what
they interacted with::

    e_i = ItemTower(genres_i, EmbeddingBag(title tokens_i), year_i)            [d]
    p_u = mean_{j in H(u)} e_j                                                 [d]
    u   = UserTower(demographics_u, p_u)                                       [d]
    score(u, i) = w . [u * e_i, MLP([u, e_i])] + b                             (a logit)

``H(u)`` is the user's training history, stored with the model (``towers.UserTower``); a
training pair leaves its own item out of ``p_u`` (see ``recsys.models.towers``). No item id
is learned, so an item that arrives with a title and genres but no interactions is scored like
any other (``scores_cold_items = True``); title words that are rare act as a soft identity for
the items that share them.

Trained pointwise through ``recsys.train`` like NeuMF: binary cross-entropy on every training
interaction against ``n_negatives`` never-interacted training items resampled each epoch,
early stopping on the validation NDCG@10 when ``split.val`` has rows.

Fast full ranking (``_scores``): the item tower runs once over the catalogue and the user
tower once over the users (``[n, d]`` arrays cached per weight snapshot); a block of scores is
then the GMF matrix product plus the MLP head with its first layer split into user and item
halves (``towers.GmfMlpHead``), never a ``model.predict`` over pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import keras
import numpy as np
from keras import ops

from recsys.config import from_dict
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.models.keras_base import KerasRecommender
from recsys.models.layers import GMF, MLPTower
from recsys.models.towers import (
    GmfMlpHead,
    build_towers,
    check_config_fields,
    history_table,
    item_tables,
    tower_sizes,
)
from recsys.train import (
    ITEM,
    USER,
    EpochArrays,
    NegativeSampler,
    PointwiseEpochs,
    RankingValidation,
    TrainSettings,
    fit_model,
    resolve_device,
    set_seeds,
    to_numpy,
)

MODEL_FILE = "model.keras"
NET = "net"
"""Name of the layer that holds the towers inside the Keras model."""
TUNED_METRIC = "ndcg@10"
"""The benchmark metric ``tune`` optimizes (what ``RankingValidation`` measures)."""
ENCODE_BLOCK = 4096
"""Users encoded per eager call when caching the user vectors."""


@dataclass(frozen=True)
class DeepContentConfig:
    """DeepContent hyper-parameters (``params.yaml``, ``models.content``).

    The defaults were chosen on the ML-100K u1 validation files (``bench/tune_content.py``):
    validation NDCG@10 0.249 at epoch 19 of a 30-epoch curve (dropout 0.2, a 128-wide
    variant or ``history_exponent`` 0.5 were no better); on the u1 test files 0.526 in ~100 s
    on 2 CPU cores.
    """

    embedding_dim: int = 64
    """Width d of the item and user vectors."""
    token_dim: int = 32
    """Width of the title token embeddings."""
    item_hidden_units: tuple[int, ...] = (128,)
    """Hidden layers of the item tower (then a linear layer of width ``embedding_dim``)."""
    user_hidden_units: tuple[int, ...] = (128,)
    """Hidden layers of the user tower."""
    head_units: tuple[int, ...] = (64, 32)
    """MLP over ``[u, e_i]`` beside the GMF product; ``[]``: GMF only."""
    history_exponent: float = 1.0
    """Profile = history sum / n ** exponent (1: mean; FISM's alpha)."""
    dropout: float = 0.0
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW) on the trainable weights."""
    batch_size: int = 2048
    epochs: int = 20
    n_negatives: int = 4
    patience: int = 0
    """Validations without improvement before stopping; 0: train all ``epochs`` and keep the
    best (what ``tune`` then returns). The validation curves of the content models are noisy:
    with patience 3 the hybrid (seed 1) stopped at a local peak at epoch 7 (validation NDCG@10
    0.229) while the curve went on rising to 0.243 at epoch 21."""
    eval_every: int = 1
    eval_users: int = 1000
    device: Literal["auto", "cpu", "gpu"] = "auto"
    seed: int = 20240101
    verbose: int = 0

    section: ClassVar[str] = "content"

    def __post_init__(self) -> None:
        check_config_fields(
            self,
            self.section,
            positive=(
                "embedding_dim",
                "token_dim",
                "batch_size",
                "epochs",
                "n_negatives",
                "eval_every",
                "eval_users",
            ),
            non_negative=("history_exponent", "weight_decay", "patience"),
            empty_units_ok=("item_hidden_units", "user_hidden_units", "head_units"),
        )


@keras.saving.register_keras_serializable(package="recsys")
class ContentNet(keras.layers.Layer):
    """``[user [b], item [b]] -> [b]`` logits of DeepContent (module docstring)."""

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
        item_hidden_units: list[int] | tuple[int, ...],
        user_hidden_units: list[int] | tuple[int, ...],
        head_units: list[int] | tuple[int, ...],
        history_exponent: float,
        dropout: float,
        tower_id_dim: int = 0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = tower_sizes(
            n_users, n_items, n_genres, title_length, vocab_size, n_user_features
        )
        self.dim = int(embedding_dim)
        self.options: dict[str, Any] = {
            "embedding_dim": int(embedding_dim),
            "token_dim": int(token_dim),
            "item_hidden_units": [int(u) for u in item_hidden_units],
            "user_hidden_units": [int(u) for u in user_hidden_units],
            "head_units": [int(u) for u in head_units],
            "history_exponent": float(history_exponent),
            "dropout": float(dropout),
            "tower_id_dim": int(tower_id_dim),
            "normalize": bool(normalize),
        }
        d = int(embedding_dim)
        self.item_tower, self.user_tower = build_towers(
            self.sizes,
            embedding_dim=d,
            token_dim=token_dim,
            item_hidden_units=item_hidden_units,
            user_hidden_units=user_hidden_units,
            id_dim=tower_id_dim,
            history_exponent=history_exponent,
            dropout=dropout,
            normalize=normalize,
            dtype=self.dtype_policy,
        )
        self.gmf = GMF(dtype=self.dtype_policy, name="gmf")
        self.head = (
            MLPTower(
                head_units,
                dropout=dropout,
                final_activation=True,
                dtype=self.dtype_policy,
                name="head",
            )
            if head_units
            else None
        )
        self.out = keras.layers.Dense(1, dtype="float32", name="prediction")

    def build(self, input_shape: Any = None) -> None:
        self.item_tower.build()
        self.user_tower.build()
        d = self.dim
        width = d
        if self.head is not None:
            self.head.build((None, 2 * d))
            width += self.head.units[-1]
        self.out.build((None, width))
        self.built = True

    def content_logit(self, u: Any, e: Any, training: bool | None = None) -> Any:
        """[b] float32 ``w . [u * e, MLP([u, e])] + b`` of user and item vectors [b, d]."""
        parts = [self.gmf([u, e])]
        if self.head is not None:
            parts.append(self.head(ops.concatenate([u, e], axis=-1), training=training))
        fused = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return ops.squeeze(self.out(ops.cast(fused, "float32")), axis=-1)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        user, item = inputs
        items_all = self.item_tower.encode(None, training=training)  # [n_items, d]
        e = ops.take(items_all, item, axis=0)
        u = self.user_tower.encode(user, items_all, exclude=item, training=training)
        return self.content_logit(u, e, training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.sizes, **self.options}


def build_pair_model(net: keras.layers.Layer, name: str) -> keras.Model:
    """The Keras model ``{"user": int32 [b], "item": int32 [b]} -> [b] float32 logit``."""
    user = keras.Input(shape=(), dtype="int32", name=USER)
    item = keras.Input(shape=(), dtype="int32", name=ITEM)
    return keras.Model({USER: user, ITEM: item}, net([user, item]), name=name)


@dataclass(frozen=True)
class _Vectors:
    """A numpy snapshot of the towers' outputs and the head, for fast scoring."""

    users: np.ndarray
    """[n_users, d] user vectors (whole training history pooled)."""
    items: np.ndarray
    """[n_items, d] item vectors."""
    head: GmfMlpHead


class TowerRecommender(KerasRecommender):
    """What DeepContent, Hybrid and TwoTower share: config handling, the ``recsys.train`` fit
    with checkpoints, tower vectors cached per weight snapshot, ``.keras`` persistence.

    Subclasses set ``config_class`` and implement ``_make_net``, ``_fill_tables``,
    ``_loss``, ``_epoch_data``, ``_extract`` and ``_score_block``.
    """

    config_class: ClassVar[type[Any]]

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__()
        cls = self.config_class
        base = config if config is not None else cls()
        if not isinstance(base, cls):
            raise TypeError(f"{type(self).__name__} needs a {cls.__name__}")
        if overrides:
            base = from_dict(cls, {**dataclasses.asdict(base), **overrides}, cls.section)
        self.config = base
        self._model: keras.Model | None = None
        self._vectors: Any = None
        self._device = "cpu"

    def n_parameters(self) -> int:
        """Trainable weights (the feature and history tables are data, not parameters)."""
        if self._model is None:
            return 0
        return int(sum(int(np.prod(v.shape)) for v in self._model.trainable_variables))

    @property
    def net(self) -> Any:
        return self.keras_model.get_layer(NET)

    # --- hooks ----------------------------------------------------------------------------------
    def _make_net(self, data: Processed) -> keras.layers.Layer:
        raise NotImplementedError

    def _fill_tables(self, net: Any, data: Processed) -> None:
        raise NotImplementedError

    def _loss(self) -> Any:
        raise NotImplementedError

    def _epoch_data(self, split: InteractionSplit) -> Callable[[int], EpochArrays]:
        raise NotImplementedError

    def _extract(self) -> Any:
        """A numpy snapshot of what ``_score_block`` needs, from the current weights."""
        raise NotImplementedError

    def _score_block(self, v: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- training -------------------------------------------------------------------------------
    @classmethod
    def tune(
        cls,
        data: Processed,
        val_split: InteractionSplit,
        evaluate_fn: Any,
        *,
        metric: str,
        config: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Choose ``epochs`` on the validation files (``recsys benchmark``'s ``Tunable`` hook).

        One fit on ``val_split.train`` whose loop validates on ``val_split.test`` (the
        validation files' held-out rows, every user: the full-ranking NDCG@10 of PROTOCOL.md)
        with the configured ``patience``, up to the configured ``epochs``; returns
        ``{"epochs": best epoch}``. Other metrics (``loo``, ``rating``) tune nothing.
        """
        if metric != TUNED_METRIC or val_split.test.empty:
            return {}
        model = cls(**{**config, "eval_users": 1 << 30})
        result = model.fit(data, dataclasses.replace(val_split, val=val_split.test))
        return {"epochs": int(result.best_epoch or result.epochs)}

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        cfg = self.config
        plan = resolve_device(cfg.device)
        set_seeds(cfg.seed)
        self._vectors = None
        with plan.scope():
            net = self._make_net(data)
            model = build_pair_model(net, self.name)
            self._fill_tables(net, data)
            model.compile(
                optimizer=keras.optimizers.AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay)
                if cfg.weight_decay > 0
                else keras.optimizers.Adam(cfg.learning_rate),
                loss=self._loss(),
                jit_compile=plan.jit_compile,
            )
        self._model = model
        validation = None
        if len(split.val):
            validation = RankingValidation(
                self._live_scores,
                self._seen_matrix(),
                split.val,
                np.flatnonzero(self._train_mask()),
                max_users=cfg.eval_users,
                seed=cfg.seed,
            )
        facts = fit_model(
            model,
            self._epoch_data(split),
            TrainSettings(
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                patience=cfg.patience,
                eval_every=cfg.eval_every,
                verbose=cfg.verbose,
            ),
            plan=plan,
            validation=validation,
            checkpoint_dir=self._checkpoint_dir,
        )
        self._device = plan.description
        self._vectors = None
        return facts

    # --- scoring --------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._score_block(self._snapshot(), user_idx, item_idx)

    def _live_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``_scores`` with the weights as they are now (validation during training)."""
        return self._score_block(self._extract(), user_idx, item_idx)

    def _snapshot(self) -> Any:
        if self._vectors is None:
            self._vectors = self._extract()
        return self._vectors

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

    # --- persistence ----------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        self.keras_model.save(path / MODEL_FILE)

    def _load(self, path: Path) -> None:
        self._model = keras.saving.load_model(path / MODEL_FILE, compile=False)
        self._vectors = None
        if self.train_result is not None:
            self._device = self.train_result.device


class DeepContent(TowerRecommender):
    """Content towers + MLP head trained with ``recsys.train`` (module docstring).

    Construct with a ``DeepContentConfig`` or its fields as keywords; unknown keys raise
    ``ConfigError``.
    """

    name: ClassVar[str] = "content"
    scores_cold_items: ClassVar[bool] = True
    config_class: ClassVar[type[Any]] = DeepContentConfig

    def _net_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "embedding_dim": cfg.embedding_dim,
            "token_dim": cfg.token_dim,
            "item_hidden_units": list(cfg.item_hidden_units),
            "user_hidden_units": list(cfg.user_hidden_units),
            "head_units": list(cfg.head_units),
            "history_exponent": cfg.history_exponent,
            "dropout": cfg.dropout,
        }

    def _make_net(self, data: Processed) -> keras.layers.Layer:
        f = data.features
        return ContentNet(
            data.vocab.n_users,
            data.vocab.n_items,
            f.item_genres.shape[1],
            f.item_tokens.shape[1],
            max(len(f.tokens), 2),
            f.user_features.shape[1],
            name=NET,
            **self._net_options(),
        )

    def _fill_tables(self, net: Any, data: Processed) -> None:
        seen = history_table(self._seen_matrix(), self.name)
        genres, tokens, year = item_tables(data.features)
        net.item_tower.set_tables(genres, tokens, year, in_train=self._train_mask())
        net.user_tower.set_tables(data.features.user_features, seen)

    def _loss(self) -> Any:
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def _epoch_data(self, split: InteractionSplit) -> Callable[[int], EpochArrays]:
        """Every training pair with label 1 and ``n_negatives`` fresh never-interacted
        training items per pair and epoch with label 0."""
        train = split.train
        sampler = NegativeSampler(self._seen_matrix(), pool=np.flatnonzero(self._train_mask()))
        return PointwiseEpochs(
            train[USER_IDX].to_numpy(dtype=np.int64),
            train[ITEM_IDX].to_numpy(dtype=np.int64),
            sampler,
            self.config.n_negatives,
            self.config.seed,
        )

    def _extract(self) -> Any:
        users, items = self._encode_all()
        net = self.net
        return _Vectors(users, items, GmfMlpHead.from_layers(users, items, net.head, net.out))

    def _score_block(self, v: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return v.head.scores(user_idx, item_idx)  # type: ignore[no-any-return]

    def _predict_pairs(
        self, user_idx: np.ndarray, item_idx: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """[n] logits from ``model.predict``: the slow reference the fast path equals for
        pairs whose item is not in the user's history (the Keras model leaves a pair's own
        item out of the profile, as in training)."""
        out = self.keras_model.predict(
            {
                USER: np.asarray(user_idx, dtype=np.int32),
                ITEM: np.asarray(item_idx, dtype=np.int32),
            },
            batch_size=batch_size,
            verbose=0,
        )
        return np.asarray(out, dtype=np.float32).reshape(-1)
