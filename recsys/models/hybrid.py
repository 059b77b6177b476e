"""Hybrid: id embeddings and content towers, fused by a learned popularity gate.

Two scores of a pair, the collaborative one from id embeddings (NeuMF's GMF branch) and the
content one of ``DeepContent``::

    s_id(u, i) = w_id . (P_u * Q_i)                                    (id path)
    s_c(u, i)  = w . [c_u * e_i, MLP([c_u, e_i])] + b                  (content path)
    g(u, i)    = m_u m_i sigmoid(a_u log(1 + n_u) + a_i log(1 + n_i) + a_0)
    score(u, i) = g(u, i) s_id(u, i) + (1 - g(u, i)) s_c(u, i)

``n_u`` and ``n_i`` are the training interaction counts, ``m_u`` / ``m_i`` 1 for users and
items that have any (0 otherwise: their id embeddings were never trained, so the gate shuts the
id path and a cold item is scored by its content alone). The gate is learned with the rest, so
the model decides how far to trust ids as the evidence behind them grows; a fixed
``gamma``-weighted sum is the special case ``a_u = a_i = 0``.

The content path is DeepContent's (user demographics + pooled history, item content), so the
Hybrid scores every item of the catalogue (``scores_cold_items = True``). With
``tower_id_dim > 0`` the towers also take id embeddings (zeroed, like the id path, for users
and items without training interactions), so the pooled history carries item identity too.

Regularizing the id path: a jointly learned gate favours whatever fits the *training* pairs
best, and the id path memorizes them fastest. ``id_dropout`` switches the id path off for a
random share of the training examples (DropoutNet, Volkovs et al. 2017), which makes the
content path carry those examples alone - as it must for cold items - and ``id_l2`` penalizes
the id embeddings a batch looks up.

Two training objectives (``objective``): ``bce``, pointwise on sampled negatives like
DeepContent, and ``softmax``, TwoTower's in-batch sampled softmax with logQ correction
(``recsys.models.twotower``). With ``head_units: []`` the content score is bilinear, so the
scores of all B x B user-item pairs of a batch, gate included, are a few matrix products.

Fast full ranking: the content score by ``towers.GmfMlpHead`` (towers run once per weight
snapshot), the id score as one matrix product ``(P * w_id) Q^T``, and the gate as
``sigmoid(user term + item term)`` broadcast over the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops
from scipy.special import expit

from recsys.data.preprocess import Processed
from recsys.errors import ConfigError
from recsys.models.content import ContentNet, DeepContent, DeepContentConfig
from recsys.models.layers import ID_INIT_STDDEV, id_embedding, l2_normalize
from recsys.models.model_config import check_config_fields
from recsys.models.scoring import GmfMlpHead
from recsys.models.tower_base import TowerNet
from recsys.train import to_numpy
from recsys.tuning.space import Choice, Float, Int, SearchSpace


@dataclass(frozen=True)
class HybridConfig(DeepContentConfig):
    """Hybrid hyper-parameters (``params.yaml``, ``models.hybrid``): DeepContent's plus the id
    path's. Defaults chosen on the ML-100K u1 validation files (``bench/tune_content.py``):
    without ``id_dropout``/``id_l2`` the id path overfit from epoch 4 (validation NDCG@10 peak
    0.208); with them 0.247 at epoch 24. ``tower_id_dim`` 16, 128-wide towers and the softmax
    objective were no better there. On the u1 test files 0.535 (DeepContent 0.526, NeuMF
    0.484) in ~120 s on 2 CPU cores."""

    dropout: float = 0.2
    epochs: int = 25
    id_dim: int = 32
    """Width of the user and item id embeddings (GMF factors)."""
    id_l2: float = 0.01
    """L2 penalty on the id embeddings each example looks up, averaged over the batch (as
    NeuMF's ``l2``): the id path memorizes the training pairs fastest."""
    tower_id_dim: int = 0
    """Id embeddings inside the content towers as well (0: none): the item tower then sees
    ``[content, id]`` (the id zeroed for untrained items) and the user tower a user id, so the
    pooled history carries item identity too."""
    id_dropout: float = 0.5
    """Share of training examples whose id path is switched off (gate 0), as DropoutNet
    (Volkovs et al. 2017): the content path must then score them alone, as it will for cold
    items, and the gate cannot lean on ids that only memorize the training pairs."""
    gate_bias: float = 0.0
    """Initial ``a_0`` of the gate (0: start from an even mix)."""
    normalize: bool = False
    """L2-normalize the towers' outputs and the id embeddings (cosine scores, whose scale the
    output weights then set): keeps softmax logits bounded."""

    section: ClassVar[str] = "hybrid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"hybrid.id_dropout must be in [0, 1), got {self.id_dropout}")
        check_config_fields(
            self, self.section, positive=("id_dim",), non_negative=("id_l2", "tower_id_dim")
        )


@keras.saving.register_keras_serializable(package="recsys")
class HybridNet(ContentNet):
    """``[user [b], item [b]] -> [b]`` logits of the Hybrid (module docstring)."""

    def __init__(
        self,
        *args: Any,
        id_dim: int,
        id_l2: float = 0.0,
        id_dropout: float = 0.0,
        gate_bias: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.id_dim = int(id_dim)
        self.id_l2 = float(id_l2)
        self.id_dropout = float(id_dropout)
        self.gate_bias = float(gate_bias)
        # Dropout of a ones vector, rescaled: 0 for a dropped example, 1 otherwise.
        self.id_drop = keras.layers.Dropout(self.id_dropout, name="id_dropout")
        # One initializer for both tables, as the saved models were trained with.
        init = keras.initializers.RandomNormal(stddev=ID_INIT_STDDEV)
        reg = keras.regularizers.L2(self.id_l2) if self.id_l2 > 0 else None
        self.user_ids, self.item_ids = (
            id_embedding(
                self.sizes[n],
                self.id_dim,
                name=name,
                dtype=self.dtype_policy,
                initializer=init,
                regularizer=reg,
            )
            for n, name in (("n_users", "user_id"), ("n_items", "item_id"))
        )
        self.id_out = keras.layers.Dense(1, use_bias=False, dtype="float32", name="id_score")

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        n_users, n_items = self.sizes["n_users"], self.sizes["n_items"]
        self.user_ids.build((None,))
        self.item_ids.build((None,))
        self.id_out.build((None, self.id_dim))
        table = {"initializer": "zeros", "trainable": False, "dtype": "float32"}
        self.user_log_count = self.add_weight(name="user_log_count", shape=(n_users,), **table)
        self.item_log_count = self.add_weight(name="item_log_count", shape=(n_items,), **table)
        self.user_in_train = self.add_weight(name="user_in_train", shape=(n_users,), **table)
        self.item_in_train = self.add_weight(name="item_in_train", shape=(n_items,), **table)
        self.gate = self.add_weight(
            name="gate",
            shape=(3,),
            dtype="float32",
            initializer=keras.initializers.Constant([0.0, 0.0, self.gate_bias]),
        )
        """``(a_u, a_i, a_0)``."""
        self.built = True

    def set_counts(self, seen: sp.spmatrix) -> None:
        """Write the gate's inputs from the training interactions."""
        csr = sp.csr_matrix(seen) != 0
        n_u = np.asarray(csr.sum(axis=1), dtype=np.float32).ravel()
        n_i = np.asarray(csr.sum(axis=0), dtype=np.float32).ravel()
        self.user_log_count.assign(np.log1p(n_u))
        self.item_log_count.assign(np.log1p(n_i))
        self.user_in_train.assign((n_u > 0).astype(np.float32))
        self.item_in_train.assign((n_i > 0).astype(np.float32))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """[b] logits (``bce``), [b, b] in-batch logits (``softmax``) or [b, n_items]
        full-softmax logits (``catalogue``)."""
        user, item = inputs
        p = self.user_ids(user)

        def take(table: Any, idx: Any) -> Any:
            return ops.take(table.value, idx, axis=0)

        a = self.gate.value
        user_gate = a[0] * take(self.user_log_count, user) + a[2]
        user_on = take(self.user_in_train, user)
        if training and self.id_dropout > 0:
            keep = self.id_drop(ops.ones_like(user_on), training=True) * (1.0 - self.id_dropout)
            user_on = user_on * keep
        if self.softmax is None:
            c, e = self.pair_vectors(user, item, training=training)
            q = self.item_ids(item)
            if self.options["normalize"]:
                p, q = l2_normalize(p), l2_normalize(q)
            s_c = self.content_logit(c, e, training=training)
            s_id = ops.squeeze(self.id_out(ops.cast(self.gmf([p, q]), "float32")), axis=-1)
            item_gate = a[1] * take(self.item_log_count, item)
            g = ops.sigmoid(user_gate + item_gate) * user_on * take(self.item_in_train, item)
            return g * s_id + (1.0 - g) * s_c
        # Every user of the batch against every item of the batch (softmax) or of the
        # catalogue (catalogue): [b, m] matrices.
        if self.options["normalize"]:
            p = l2_normalize(p)
        p = ops.cast(p, "float32") * ops.cast(self.id_out.kernel.value, "float32")[:, 0]

        def score(c: Any, e: Any, items: Any) -> Any:
            if items is None:  # the catalogue
                q = self.item_ids.embeddings.value
                log_count, on = self.item_log_count.value, self.item_in_train.value
            else:
                q = self.item_ids(items)
                log_count, on = take(self.item_log_count, items), take(self.item_in_train, items)
            if self.options["normalize"]:
                q = l2_normalize(q)
            s_id = ops.matmul(p, ops.transpose(ops.cast(q, "float32")))
            g = ops.sigmoid(ops.expand_dims(user_gate, 1) + ops.expand_dims(a[1] * log_count, 0))
            g = g * ops.expand_dims(user_on, 1) * ops.expand_dims(on, 0)
            return g * s_id + (1.0 - g) * self.content_scores(c, e)

        return self.softmax_logits(user, item, score, training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "id_dim": self.id_dim,
            "id_l2": self.id_l2,
            "id_dropout": self.id_dropout,
            "gate_bias": self.gate_bias,
        }


def _l2_normalize_numpy(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.sum(np.square(x), axis=-1, keepdims=True))
    return (x / np.maximum(norm, np.float32(1e-6))).astype(np.float32, copy=False)


@dataclass(frozen=True)
class _HybridVectors:
    users: np.ndarray
    """[n_users, d] content user vectors."""
    items: np.ndarray
    """[n_items, d] content item vectors."""
    head: GmfMlpHead
    """The content score."""
    user_id: np.ndarray
    """[n_users, id_dim] user id embeddings scaled by ``w_id``."""
    item_id: np.ndarray
    """[n_items, id_dim] item id embeddings."""
    user_gate: np.ndarray
    """[n_users] ``a_u log(1 + n_u) + a_0``."""
    item_gate: np.ndarray
    """[n_items] ``a_i log(1 + n_i)``."""
    user_mask: np.ndarray
    item_mask: np.ndarray


class Hybrid(DeepContent):
    """Id embeddings + DeepContent's towers with a learned gate (module docstring)."""

    name: ClassVar[str] = "hybrid"
    fit_cost: ClassVar[float] = 230.0
    scores_cold_items: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = frozenset({"item_content"})
    config_class: ClassVar[type[Any]] = HybridConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "embedding_dim": Choice((32, 64, 128)),
        "id_dim": Choice((16, 32, 64)),
        "dropout": Float(0.0, 0.5),
        "id_dropout": Float(0.0, 0.7),
        "learning_rate": Float(3e-4, 1e-2, log=True),
        "weight_decay": Float(0.0, 0.3),
        "epochs": Int(5, 40),
    }
    net_class: ClassVar[type[TowerNet]] = HybridNet
    net_fields: ClassVar[tuple[str, ...]] = (
        *DeepContent.net_fields,
        "tower_id_dim",
        "normalize",
        "id_dim",
        "id_l2",
        "id_dropout",
        "gate_bias",
    )

    def _fill_tables(self, net: Any, data: Processed) -> None:
        super()._fill_tables(net, data)
        net.set_counts(self._seen_matrix())

    def _extract(self) -> Any:
        users, items = self._encode_all()
        net = self.net
        w_id = to_numpy(net.id_out.kernel).astype(np.float32)[:, 0]
        a = to_numpy(net.gate).astype(np.float32)

        def ids(layer: Any) -> np.ndarray:
            table = to_numpy(layer.embeddings).astype(np.float32)
            return _l2_normalize_numpy(table) if net.options["normalize"] else table

        return _HybridVectors(
            users=users,
            items=items,
            head=GmfMlpHead.from_layers(users, items, net.head, net.out),
            user_id=ids(net.user_ids) * w_id,
            item_id=ids(net.item_ids),
            user_gate=a[0] * to_numpy(net.user_log_count) + a[2],
            item_gate=a[1] * to_numpy(net.item_log_count),
            user_mask=to_numpy(net.user_in_train).astype(np.float32),
            item_mask=to_numpy(net.item_in_train).astype(np.float32),
        )

    def _score_block(self, v: Any, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        s_c = v.head.scores(users, items)
        s_id = v.user_id[users] @ v.item_id[items].T
        g = expit(v.user_gate[users, None] + v.item_gate[None, items]).astype(np.float32)
        g *= v.user_mask[users, None] * v.item_mask[None, items]
        return (g * s_id + (1.0 - g) * s_c).astype(np.float32, copy=False)  # type: ignore[no-any-return]

    def gate_weights(self) -> dict[str, float]:
        """The learned gate ``{"user": a_u, "item": a_i, "bias": a_0}``."""
        a = to_numpy(self.net.gate)
        return {"user": float(a[0]), "item": float(a[1]), "bias": float(a[2])}
