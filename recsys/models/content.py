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
halves (``scoring.GmfMlpHead``), never a ``model.predict`` over pairs. The training loop, the
cached tower outputs and persistence are ``tower_base.TowerRecommender``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit
from recsys.models.keras_base import MODEL_FILE, pair_model, predict_pairs
from recsys.models.layers import GMF, MLPTower
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.models.negatives import NegativeSampler
from recsys.models.scoring import GmfMlpHead
from recsys.models.tower_base import NET, TowerNet, TowerRecommender
from recsys.train import EpochArrays, PointwiseEpochs
from recsys.tuning.space import Choice, Float, Int, SearchSpace

__all__ = [
    "MODEL_FILE",
    "NET",
    "ContentNet",
    "DeepContent",
    "DeepContentConfig",
    "TowerRecommender",
    "build_pair_model",
]
# ``TowerRecommender`` and ``NET`` live in ``recsys.models.tower_base``; re-exported here for
# old imports.


@dataclass(frozen=True)
class DeepContentConfig(TrainingSettings):
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
class ContentNet(TowerNet):
    """``[user [b], item [b]] -> [b]`` logits of DeepContent (module docstring)."""

    def __init__(
        self,
        *sizes: int,
        head_units: list[int] | tuple[int, ...],
        dropout: float,
        tower_id_dim: int = 0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *sizes, dropout=dropout, tower_id_dim=tower_id_dim, normalize=normalize, **kwargs
        )
        self.options["head_units"] = [int(u) for u in head_units]
        self.options["tower_id_dim"] = int(tower_id_dim)
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
        super().build(input_shape)
        d = self.dim
        width = d
        if self.head is not None:
            self.head.build((None, 2 * d))
            width += self.head.units[-1]
        self.out.build((None, width))

    def content_logit(self, u: Any, e: Any, training: bool | None = None) -> Any:
        """[b] float32 ``w . [u * e, MLP([u, e])] + b`` of user and item vectors [b, d]."""
        parts = [self.gmf([u, e])]
        if self.head is not None:
            parts.append(self.head(ops.concatenate([u, e], axis=-1), training=training))
        fused = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return ops.squeeze(self.out(ops.cast(fused, "float32")), axis=-1)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        user, item = inputs
        u, e = self.pair_vectors(user, item, training=training)
        return self.content_logit(u, e, training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[0])


build_pair_model = pair_model
"""The Keras model ``{"user": int32 [b], "item": int32 [b]} -> [b] float32 logit`` (the
shared ``keras_base.pair_model``; this name is kept for old imports)."""


@dataclass(frozen=True)
class _Vectors:
    """A numpy snapshot of the towers' outputs and the head, for fast scoring."""

    users: np.ndarray
    """[n_users, d] user vectors (whole training history pooled)."""
    items: np.ndarray
    """[n_items, d] item vectors."""
    head: GmfMlpHead


class DeepContent(TowerRecommender):
    """Content towers + MLP head trained with ``recsys.train`` (module docstring).

    Construct with a ``DeepContentConfig`` or its fields as keywords; unknown keys raise
    ``ConfigError``.
    """

    name: ClassVar[str] = "content"
    scores_cold_items: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = frozenset({"item_content"})
    config_class: ClassVar[type[Any]] = DeepContentConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "embedding_dim": Choice((32, 64, 128)),
        "dropout": Float(0.0, 0.5),
        "learning_rate": Float(3e-4, 1e-2, log=True),
        "weight_decay": Float(0.0, 0.3),
        "n_negatives": Int(1, 8),
        "epochs": Int(5, 40),
    }
    net_class: ClassVar[type[TowerNet]] = ContentNet
    net_fields: ClassVar[tuple[str, ...]] = (
        "embedding_dim",
        "token_dim",
        "item_hidden_units",
        "user_hidden_units",
        "head_units",
        "history_exponent",
        "dropout",
    )

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
        return predict_pairs(self.keras_model, user_idx, item_idx, batch_size)
