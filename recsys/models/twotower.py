"""TwoTower: a retrieval model whose score is one dot product, for nearest-neighbour serving.

::

    v_i = ItemTower(id_i, genres_i, EmbeddingBag(title tokens_i), year_i)       [d], |v| = 1
    h_u = mean_{j in H(u)} v_j                                                   (history)
    u   = UserTower(id_u, demographics_u, h_u)                                   [d], |u| = 1
    score(u, i) = u . v_i

Id embeddings of users and items without training interactions are zeroed (``towers``), so a
cold item is placed by its content alone and every catalogue item can be retrieved.

Training (``negatives``): ``in_batch`` (the default), in-batch sampled softmax (Yi et al.,
"Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019).
A batch holds B training pairs; each user's positive competes against the other B - 1 items of
the batch::

    logit(b, j) = u_b . v_j / temperature - log q_j
    loss        = mean_b  -log softmax_j(logit(b, .))[b]

``q_j`` is item j's share of the training interactions, the probability that a uniformly
shuffled batch holds it: popular items appear as negatives far more often than a full softmax
would weigh them, and subtracting ``log q_j`` (logQ correction) undoes that bias. Off-diagonal
entries for the same item as the positive (an accidental hit) and, with ``mask_seen``, for
items the user interacted with in training are masked out. The correction and the temperature
apply in training only: serving ranks by ``u . v``.

``catalogue``: a full softmax, each pair's positive against every catalogue item (the user's
other training items masked)::

    logit(b, j) = u_b . v_j / temperature          j = 1 .. n_items

The towers already encode the whole catalogue for every batch (the user tower pools it), so
the ``[B, n_items]`` logits cost one more product of the history pooling's size, and nothing
is sampled (no logQ term). On the ML-100K u1 validation files it was no better than in-batch
(NDCG@10 0.236 against 0.238 at epoch 5, learning rate 1e-3; 0.247 at best with 3e-3 against
0.253 in-batch with 2e-3): with B = 1024 of 1682 items a batch already holds most of the
catalogue. It is there for small catalogues and small batches.

``item_embeddings()`` returns ``[v_i]`` and ``user_embeddings(user_idx)`` ``[u]``; ``_scores``
is their matrix product, the exact answer an inner-product faiss index over
``item_embeddings()`` approximates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.errors import ConfigError
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.models.tower_base import TowerNet, TowerRecommender
from recsys.models.towers import UserTower
from recsys.train import ITEM, USER, EpochArrays
from recsys.tuning.space import Choice, Float, Int, SearchSpace

MASKED_LOGIT = -1e9
"""Logit of a masked in-batch candidate (finite: a row never becomes all -inf and NaN)."""


@dataclass(frozen=True)
class TwoTowerConfig(TrainingSettings):
    """TwoTower hyper-parameters (``params.yaml``, ``models.twotower``).

    The defaults were chosen on the ML-100K u1 validation files (``bench/tune_content.py``):
    validation NDCG@10 0.255 at epoch 11, flat to epoch 16 (64-wide without dropout: 0.237 at
    epoch 4, then overfitting; without the logQ correction: 0.148). On the u1 test files
    0.548 in ~46 s on 2 CPU cores (TFRS two-tower: 0.306).
    """

    embedding_dim: int = 128
    """Width d of the (unit-norm) user and item vectors: the faiss index's dimension."""
    id_dim: int = 32
    """User and item id embedding widths."""
    token_dim: int = 32
    item_hidden_units: tuple[int, ...] = (256,)
    user_hidden_units: tuple[int, ...] = (256,)
    history_exponent: float = 1.0
    normalize: bool = True
    """L2-normalize both towers' outputs (cosine scores); false: a plain dot product."""
    temperature: float = 0.1
    negatives: Literal["catalogue", "in_batch"] = "in_batch"
    """``catalogue``: full softmax over every item; ``in_batch``: the batch's other items,
    logQ-corrected (module docstring)."""
    logq_correction: bool = True
    """``in_batch`` only (a full softmax has no sampling bias)."""
    mask_seen: bool = True
    """Mask negatives the user interacted with in training."""
    dropout: float = 0.3
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine``: the learning rate decays to zero over ``epochs`` (``_optimizer``)."""
    batch_size: int = 1024
    epochs: int = 13
    patience: int = 3
    eval_every: int = 1
    eval_users: int = 1000

    section: ClassVar[str] = "twotower"

    def __post_init__(self) -> None:
        check_config_fields(
            self,
            self.section,
            positive=("embedding_dim", "token_dim", "batch_size", "epochs", "eval_every"),
            non_negative=("id_dim", "history_exponent", "weight_decay", "patience"),
            empty_units_ok=("item_hidden_units", "user_hidden_units"),
        )
        if isinstance(self.eval_users, bool) or self.eval_users < 1:
            raise ConfigError(f"twotower.eval_users must be >= 1, got {self.eval_users!r}")
        if not self.temperature > 0:
            raise ConfigError(f"twotower.temperature must be > 0, got {self.temperature}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"twotower.lr_schedule must be constant or cosine, got {self.lr_schedule!r}"
            )
        if self.negatives not in ("catalogue", "in_batch"):
            raise ConfigError(
                f"twotower.negatives must be catalogue or in_batch, got {self.negatives!r}"
            )
        if self.negatives == "in_batch" and self.batch_size < 2:
            raise ConfigError("twotower.batch_size must be >= 2 (in-batch negatives)")


@keras.saving.register_keras_serializable(package="recsys")
class InBatchSoftmax(keras.layers.Layer):
    """``[users [B, d], items [B, d], item ids [B](, seen [B, B])] -> [B, B]`` logits.

    ``logits[b, j] = users[b] . items[j] / temperature - log_q[ids[j]]`` (without the second
    term when ``logq_correction`` is off); off-diagonal entries whose item equals row b's
    positive, or that ``seen`` marks, are set to ``MASKED_LOGIT``. Row b's label is column b.
    ``log_q`` [n_items] is a non-trainable table (``set_log_q``). Computes in float32.
    """

    def __init__(
        self, n_items: int, temperature: float, *, logq_correction: bool = True, **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.n_items = int(n_items)
        self.temperature = float(temperature)
        self.logq_correction = bool(logq_correction)

    def build(self, input_shape: Any = None) -> None:
        self.log_q = self.add_weight(
            name="log_q",
            shape=(self.n_items,),
            dtype="float32",
            initializer="zeros",
            trainable=False,
        )
        self.built = True

    def set_log_q(self, counts: np.ndarray) -> None:
        """``log q_j = log(count_j / sum(count))``; items never seen get the log of one count
        (they never enter a batch, the value only has to be finite)."""
        counts = np.asarray(counts, dtype=np.float64)
        total = max(float(counts.sum()), 1.0)
        self.log_q.assign(np.log(np.maximum(counts, 1.0) / total).astype(np.float32))

    def call(self, inputs: Any) -> Any:
        users, items, ids = inputs[0], inputs[1], inputs[2]
        seen = inputs[3] if len(inputs) > 3 else None
        users = ops.cast(users, "float32")
        items = ops.cast(items, "float32")
        return self.correct(ops.matmul(users, ops.transpose(items)), ids, seen)

    def correct(self, scores: Any, ids: Any, seen: Any = None) -> Any:
        """[B, B] logits from [B, B] scores ``s(user_b, item_j)`` of any model (a dot product
        in ``call``): divided by the temperature, logQ-corrected and masked as above."""
        logits = ops.cast(scores, "float32") / self.temperature
        if self.logq_correction:
            logits = logits - ops.expand_dims(ops.take(self.log_q.value, ids, axis=0), 0)
        n = ops.shape(ids)[0]
        off_diagonal = ops.logical_not(ops.eye(n, dtype="bool"))
        mask = ops.equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0))
        if seen is not None:
            mask = ops.logical_or(mask, ops.greater(seen, 0))
        mask = ops.logical_and(mask, off_diagonal)
        return ops.where(mask, ops.cast(MASKED_LOGIT, "float32"), logits)

    def catalogue(self, scores: Any, ids: Any, seen_rows: Any = None) -> Any:
        """[B, n_items] full-softmax logits from the scores ``s(user_b, item j)`` of every
        catalogue item: divided by the temperature; with ``seen_rows`` [B, n_items] (the
        users' training interactions) every seen item but row b's positive ``ids[b]`` is
        masked. No logQ term: nothing is sampled."""
        logits = ops.cast(scores, "float32") / self.temperature
        if seen_rows is None:
            return logits
        positive = ops.one_hot(ops.cast(ids, "int32"), self.n_items, dtype="bool")
        mask = ops.logical_and(ops.greater(seen_rows, 0), ops.logical_not(positive))
        return ops.where(mask, ops.cast(MASKED_LOGIT, "float32"), logits)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        b = tuple(input_shape[0])[:1] or (None,)
        return (b[0], b[0])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_items": self.n_items,
            "temperature": self.temperature,
            "logq_correction": self.logq_correction,
        }


def batch_seen(user_tower: UserTower, user: Any, item: Any) -> Any:
    """[B, B] float32 ``A[user_b, item_j]``: whether row b's user interacted with column j's
    item in training, read from the tower's flat history table."""
    n_items = user_tower.n_items
    flat = ops.expand_dims(ops.cast(user, "int32") * n_items, 1) + ops.expand_dims(
        ops.cast(item, "int32"), 0
    )
    history = ops.reshape(user_tower.history.value, (-1,))
    return ops.cast(ops.take(history, flat, axis=0), "float32")


def history_rows(user_tower: UserTower, user: Any) -> Any:
    """[B, n_items] the users' training interactions (float16 0/1), for masking."""
    return ops.take(user_tower.history.value, ops.cast(user, "int32"), axis=0)


def positive_pairs(
    split: InteractionSplit, *, catalogue: bool = False
) -> Callable[[int], EpochArrays]:
    """``epoch_data`` for softmax training: every training pair once per epoch
    (``fit_model`` shuffles them into batches). ``catalogue``: the targets are the item
    indices (the label of a full softmax); otherwise placeholders, the in-batch labels being
    the batch diagonal."""
    inputs = {
        USER: split.train[USER_IDX].to_numpy(dtype=np.int32),
        ITEM: split.train[ITEM_IDX].to_numpy(dtype=np.int32),
    }
    targets = inputs[ITEM].copy() if catalogue else np.zeros(len(split.train), dtype=np.float32)

    def epoch_data(epoch: int) -> EpochArrays:
        return inputs, targets

    return epoch_data


def item_counts(seen: sp.spmatrix) -> np.ndarray:
    """[n_items] training interactions per item (the logQ popularity)."""
    return np.asarray((sp.csr_matrix(seen) != 0).sum(axis=0), dtype=np.float64).ravel()


@keras.saving.register_keras_serializable(package="recsys")
def in_batch_softmax_loss(y_true: Any, y_pred: Any) -> Any:
    """[B] cross-entropy of ``[B, B]`` in-batch logits whose label of row b is column b
    (``y_true`` is a placeholder: the labels are the diagonal)."""
    labels = ops.arange(ops.shape(y_pred)[0])
    return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package="recsys")
def catalogue_softmax_loss(y_true: Any, y_pred: Any) -> Any:
    """[B] cross-entropy of ``[B, n_items]`` full-softmax logits; ``y_true`` the item indices."""
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package="recsys")
class TwoTowerNet(TowerNet):
    """``[user [B], item [B]] -> [B, n_items]`` full-softmax logits (``negatives``
    ``catalogue``) or ``[B, B]`` in-batch logits (module docstring). Files saved before
    ``negatives`` existed load as ``in_batch``, as they were trained."""

    def __init__(
        self,
        *sizes: int,
        id_dim: int,
        temperature: float,
        logq_correction: bool,
        mask_seen: bool,
        negatives: str = "in_batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(*sizes, tower_id_dim=id_dim, **kwargs)
        self.options.update(
            {
                "id_dim": int(id_dim),
                "temperature": float(temperature),
                "logq_correction": bool(logq_correction),
                "mask_seen": bool(mask_seen),
                "negatives": str(negatives),
            }
        )
        self.mask_seen = bool(mask_seen)
        self.negatives = str(negatives)
        self.softmax = InBatchSoftmax(
            self.sizes["n_items"],
            temperature,
            logq_correction=logq_correction,
            name="in_batch_softmax",
        )

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self.softmax.build()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        user, item = inputs
        if self.negatives == "catalogue":
            u, items_all = self.catalogue_vectors(user, item, training=training)
            scores = ops.matmul(
                ops.cast(u, "float32"), ops.transpose(ops.cast(items_all, "float32"))
            )
            seen = history_rows(self.user_tower, user) if self.mask_seen else None
            return self.softmax.catalogue(scores, item, seen)
        u, v = self.pair_vectors(user, item, training=training)
        parts = [u, v, item]
        if self.mask_seen:
            parts.append(batch_seen(self.user_tower, user, item))
        return self.softmax(parts)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        b = tuple(input_shape[0])[:1] or (None,)
        if self.negatives == "catalogue":
            return (b[0], self.sizes["n_items"])
        return (b[0], b[0])


@dataclass(frozen=True)
class _TowerVectors:
    users: np.ndarray
    """[n_users, d] user tower outputs."""
    items: np.ndarray
    """[n_items, d] item tower outputs."""


class TwoTower(TowerRecommender):
    """Two-tower retrieval trained with in-batch softmax and logQ correction (module
    docstring). Construct with a ``TwoTowerConfig`` or its fields as keywords."""

    name: ClassVar[str] = "twotower"
    fit_cost: ClassVar[float] = 100.0
    scores_cold_items: ClassVar[bool] = True
    config_class: ClassVar[type[Any]] = TwoTowerConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "embedding_dim": Choice((64, 128, 256)),
        # The id embeddings carry everything on logs without item or user tables.
        "id_dim": Choice((16, 32, 64, 128)),
        "temperature": Float(0.02, 0.5, log=True),
        "dropout": Float(0.0, 0.5),
        "learning_rate": Float(3e-4, 1e-2, log=True),
        "weight_decay": Float(0.0, 0.3),
        "epochs": Int(5, 40),
        "lr_schedule": Choice(("constant", "cosine")),
    }
    net_class: ClassVar[type[TowerNet]] = TwoTowerNet
    net_fields: ClassVar[tuple[str, ...]] = (
        "embedding_dim",
        "id_dim",
        "token_dim",
        "item_hidden_units",
        "user_hidden_units",
        "history_exponent",
        "normalize",
        "temperature",
        "logq_correction",
        "mask_seen",
        "negatives",
        "dropout",
    )

    def _fill_tables(self, net: Any, data: Processed) -> None:
        super()._fill_tables(net, data)
        net.softmax.set_log_q(item_counts(self._seen_matrix()))

    def _loss(self) -> Any:
        if self.config.negatives == "catalogue":
            return catalogue_softmax_loss
        return in_batch_softmax_loss

    def _epoch_data(self, split: InteractionSplit) -> Callable[[int], EpochArrays]:
        return positive_pairs(split, catalogue=self.config.negatives == "catalogue")

    def _extract(self) -> Any:
        users, items = self._encode_all()
        return _TowerVectors(users, items)

    def _score_block(self, v: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        users = v.users[np.asarray(user_idx, dtype=np.int64)]
        items = v.items[np.asarray(item_idx, dtype=np.int64)]
        return (users @ items.T).astype(np.float32, copy=False)  # type: ignore[no-any-return]
