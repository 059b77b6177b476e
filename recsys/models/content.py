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
from typing import Any, ClassVar, Literal

import keras
import numpy as np
from keras import ops

from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit
from recsys.errors import ConfigError, RecsysError
from recsys.models.keras_base import MODEL_FILE, pair_model, predict_pairs
from recsys.models.layers import GMF, MLPTower
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.models.negatives import NegativeSampler
from recsys.models.scoring import GmfMlpHead
from recsys.models.tower_base import NET, TowerNet, TowerRecommender
from recsys.models.twotower import (
    InBatchSoftmax,
    batch_seen,
    catalogue_softmax_loss,
    history_rows,
    in_batch_softmax_loss,
    item_counts,
    positive_pairs,
)
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
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine``: the learning rate decays to zero over ``epochs`` (``_optimizer``)."""
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
    objective: Literal["bce", "softmax", "catalogue"] = "bce"
    """``bce``: pointwise on ``n_negatives`` sampled negatives per pair. ``catalogue``: a full
    softmax of each pair's item against every catalogue item (``twotower``'s, the user's other
    training items masked); ``softmax``: in-batch sampled softmax with logQ correction. Both
    softmaxes need ``head_units: []`` (a bilinear score, so all the scores of a batch are one
    matrix product). On the ML-100K u1 validation files ``catalogue`` trained 4-5x faster per
    epoch but peaked lower: DeepContent 0.246 against bce's 0.249, Hybrid 0.233 against
    0.247 (the MLP head matters to content-only scores)."""
    temperature: float = 1.0
    """Softmax objectives only: logits = score / temperature."""
    mask_seen: bool = True
    """Softmax objectives only: mask negatives the user interacted with in training."""

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
        where = self.section
        if self.objective not in ("bce", "softmax", "catalogue"):
            raise ConfigError(
                f"{where}.objective must be bce, softmax or catalogue, got {self.objective!r}"
            )
        if self.objective != "bce" and self.head_units:
            raise ConfigError(
                f"{where}.objective {self.objective!r} scores every pair of a batch by matrix "
                "products",
                fix="set head_units: [] (GMF content score) or objective: bce",
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"{where}.lr_schedule must be constant or cosine, got {self.lr_schedule!r}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"{where}.temperature must be > 0, got {self.temperature}")
        if self.objective == "softmax" and self.batch_size < 2:
            raise ConfigError(f"{where}.batch_size must be >= 2 (in-batch negatives)")


@keras.saving.register_keras_serializable(package="recsys")
class ContentNet(TowerNet):
    """``[user [b], item [b]] -> [b]`` logits of DeepContent (module docstring); with a
    softmax ``objective`` ``[b, n_items]`` (``catalogue``) or ``[b, b]`` (``softmax``)
    logits."""

    def __init__(
        self,
        *sizes: int,
        head_units: list[int] | tuple[int, ...],
        dropout: float,
        tower_id_dim: int = 0,
        normalize: bool = False,
        objective: str = "bce",
        temperature: float = 1.0,
        mask_seen: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *sizes, dropout=dropout, tower_id_dim=tower_id_dim, normalize=normalize, **kwargs
        )
        self.options["head_units"] = [int(u) for u in head_units]
        self.options["tower_id_dim"] = int(tower_id_dim)
        self.objective = str(objective)
        self.temperature = float(temperature)
        self.mask_seen = bool(mask_seen)
        self.options.update(
            {
                "objective": self.objective,
                "temperature": self.temperature,
                "mask_seen": self.mask_seen,
            }
        )
        self.softmax = (
            None
            if self.objective == "bce"
            else InBatchSoftmax(self.sizes["n_items"], self.temperature, name="in_batch_softmax")
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
        # A softmax's logits are shifted alike by a constant: no bias.
        self.out = keras.layers.Dense(
            1, use_bias=self.softmax is None, dtype="float32", name="prediction"
        )

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        d = self.dim
        width = d
        if self.head is not None:
            self.head.build((None, 2 * d))
            width += self.head.units[-1]
        self.out.build((None, width))
        if self.softmax is not None:
            self.softmax.build()

    def content_scores(self, u: Any, items: Any) -> Any:
        """[b, m] float32 bilinear content scores ``w . (u_b * e_j)`` of user vectors [b, d]
        against item vectors [m, d] (``head_units: []``)."""
        w = ops.cast(self.out.kernel.value, "float32")[: self.dim, 0]
        return ops.matmul(ops.cast(u, "float32") * w, ops.transpose(ops.cast(items, "float32")))

    def softmax_logits(self, user: Any, item: Any, score: Any, training: bool | None) -> Any:
        """The softmax objective's logits; ``score(user vectors, item vectors [m, d],
        items [m] or None for the catalogue)`` gives the [b, m] scores."""
        softmax = self.softmax
        if softmax is None:
            raise ValueError("softmax_logits needs a softmax objective")
        if self.objective == "catalogue":
            u, items_all = self.catalogue_vectors(user, item, training=training)
            seen = history_rows(self.user_tower, user) if self.mask_seen else None
            return softmax.catalogue(score(u, items_all, None), item, seen)
        u, e = self.pair_vectors(user, item, training=training)
        seen = batch_seen(self.user_tower, user, item) if self.mask_seen else None
        return softmax.correct(score(u, e, item), item, seen)

    def content_logit(self, u: Any, e: Any, training: bool | None = None) -> Any:
        """[b] float32 ``w . [u * e, MLP([u, e])] + b`` of user and item vectors [b, d]."""
        parts = [self.gmf([u, e])]
        if self.head is not None:
            parts.append(self.head(ops.concatenate([u, e], axis=-1), training=training))
        fused = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        return ops.squeeze(self.out(ops.cast(fused, "float32")), axis=-1)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        user, item = inputs
        if self.softmax is not None:
            return self.softmax_logits(
                user, item, lambda u, e, _: self.content_scores(u, e), training
            )
        u, e = self.pair_vectors(user, item, training=training)
        return self.content_logit(u, e, training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        b = tuple(input_shape[0])[:1] or (None,)
        if self.objective == "catalogue":
            return (b[0], self.sizes["n_items"])
        return (b[0], b[0]) if self.softmax is not None else (b[0],)


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
    fit_cost: ClassVar[float] = 160.0
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
        "objective",
        "temperature",
        "mask_seen",
    )

    def _fill_tables(self, net: Any, data: Any) -> None:
        super()._fill_tables(net, data)
        if net.softmax is not None:
            net.softmax.set_log_q(item_counts(self._seen_matrix()))

    def _loss(self) -> Any:
        if self.config.objective == "catalogue":
            return catalogue_softmax_loss
        if self.config.objective == "softmax":
            return in_batch_softmax_loss
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def _epoch_data(self, split: InteractionSplit) -> Callable[[int], EpochArrays]:
        """bce: every training pair with label 1 and ``n_negatives`` fresh never-interacted
        training items per pair and epoch with label 0; a softmax: every pair once."""
        if self.config.objective != "bce":
            return positive_pairs(split, catalogue=self.config.objective == "catalogue")
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
        if self.config.objective != "bce":
            raise RecsysError(
                f"a {self.config.objective}-trained {type(self).__name__}'s Keras model outputs "
                "in-batch or catalogue softmax logits, not pair scores; use score() or _scores()"
            )
        return predict_pairs(self.keras_model, user_idx, item_idx, batch_size)
