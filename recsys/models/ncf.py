"""NeuMF: neural matrix factorization (He et al., "Neural Collaborative Filtering", WWW 2017).

Two branches with their own user and item embeddings, fused by one output layer::

    GMF:  p_u * q_i                                  (elementwise, [d])
    MLP:  MLPTower([p'_u, q'_i])                     (ReLU stack, [units[-1]])
    score(u, i) = w . [GMF, MLP] + b                 (a logit, or a rating with loss="mse")

Trained pointwise through ``recsys.train``: binary cross-entropy on every training interaction
against ``n_negatives`` never-interacted items resampled each epoch (implicit feedback, for
top-k), or mean squared error on the ratings themselves (``loss="mse"``, for RMSE; ``score``
then returns predicted ratings).

Fast full ranking (``_scores``): ``model.predict`` on every (user, item) pair repeats the
embedding lookups and the widest matrix product of the MLP per pair. Instead,

- the GMF branch folded with its output weights is one matrix product
  ``(P_u * w_gmf) Q_i^T``;
- the MLP's first Dense layer splits into user and item halves, ``W [p'; q'] + b =
  W_u p' + (W_i q' + b)``: the item half is computed once per weight snapshot for the whole
  catalogue and the user half once per user, so per pair only ``relu(user half + item half)``
  and the narrower layers remain, run 32 users at a time in a backend-compiled function
  (``scoring.pairwise_tower_scores``; numpy for small blocks). The same head, fed the tower
  outputs, scores DeepContent and the Hybrid's content path (``scoring.GmfMlpHead``).

It returns the logits ``model.predict`` returns (to float32 round-off): on 943 x 1650 pairs
(2 CPU cores) about 7.4M pairs/s against 1.1M for ``model.predict`` and 1.8M for the same
algebra in numpy; ``bench/tune_neumf.py --speed`` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import keras
import numpy as np

from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.errors import ConfigError
from recsys.models.keras_base import (
    MODEL_FILE,
    KerasRecommender,
    pair_inputs,
    predict_pairs,
)
from recsys.models.layers import GMF, MLPTower
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.models.scoring import GmfMlpHead
from recsys.schema import IMPLICIT, RATING
from recsys.train import (
    ITEM,
    USER,
    NegativeSampler,
    PeriodicValidation,
    PointwiseEpochs,
    RatingValidation,
    SampledRankingValidation,
    resolve_device,
    set_seeds,
    to_numpy,
)
from recsys.training.losses import GroupSoftmaxCrossEntropy
from recsys.tuning.space import Choice, Float, Int, SearchSpace

__all__ = ["COMPILED_MIN_PAIRS", "MODEL_FILE", "NeuMF", "NeuMFConfig", "build_neumf"]

COMPILED_MIN_PAIRS = 16_384
"""Blocks of at least this many (user, item) pairs go through the compiled tower scorer."""


@dataclass(frozen=True)
class NeuMFConfig(TrainingSettings):
    """NeuMF hyper-parameters (``params.yaml``, section ``neumf``); defaults suit ML-100K."""

    embedding_dim: int = 32
    """GMF factors per user and item."""
    mlp_units: tuple[int, ...] = (64, 32, 16)
    """MLP tower widths; the MLP embeddings are ``mlp_units[0] // 2`` wide (He et al.)."""
    dropout: float = 0.0
    """After each hidden MLP layer."""
    l2: float = 0.0
    """L2 penalty on the embeddings each example looks up, averaged over the batch (the MLP
    is regularized by ``dropout``)."""
    learning_rate: float = 1e-3
    """Adam (AdamW with ``weight_decay``)."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine``: the learning rate decays to zero over ``epochs`` (``_optimizer``)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW) on every weight at every step: shrinks the embeddings
    of rarely seen users and items towards zero as well."""
    batch_size: int = 256
    epochs: int = 20
    n_negatives: int = 4
    """Sampled never-interacted items per training interaction and epoch (BCE only)."""
    patience: int = 3
    """Validations without improvement before stopping (0: never stop early)."""
    eval_every: int = 1
    """Validate every this many epochs (needs a non-empty ``split.val``)."""
    eval_users: int = 1000
    """Validation users sampled for the NDCG@10 used to stop early."""
    loss: Literal["auto", "softmax", "bce", "mse"] = "auto"
    """``softmax``: cross-entropy of the softmax over each positive and its ``n_negatives``
    sampled items (``GroupSoftmaxCrossEntropy``; ``batch_size`` counts positives); ``bce``:
    binary cross-entropy per row (He et al.; ``batch_size`` counts rows); ``mse``: regression
    on explicit ratings; ``auto``: softmax."""

    def __post_init__(self) -> None:
        check_config_fields(
            self,
            "neumf",
            positive=(
                "embedding_dim",
                "batch_size",
                "epochs",
                "n_negatives",
                "eval_every",
                "eval_users",
            ),
            non_negative=("l2", "weight_decay", "patience"),
            units=("mlp_units",),
        )
        if self.mlp_units[0] < 2:
            raise ConfigError("neumf.mlp_units[0] must be >= 2 (MLP embeddings are half of it)")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"neumf.lr_schedule must be constant or cosine, got {self.lr_schedule!r}"
            )
        if self.loss not in ("auto", "softmax", "bce", "mse"):
            raise ConfigError(f"neumf.loss must be auto, softmax, bce or mse, got {self.loss!r}")

    @property
    def mlp_embedding_dim(self) -> int:
        return self.mlp_units[0] // 2


def build_neumf(
    n_users: int, n_items: int, cfg: NeuMFConfig, *, output_bias: float = 0.0
) -> keras.Model:
    """The Keras model ``{"user": int32 [b], "item": int32 [b]} -> [b] float32 score``.

    Layer names (``gmf_user``, ``gmf_item``, ``mlp_user``, ``mlp_item``, ``mlp``,
    ``prediction``) are what the fast scorer reads. The output layer is float32 under any
    dtype policy.
    """
    # L2 on the embedding rows a batch looks up (Keras divides activity penalties by the
    # batch size): frequent users and items are regularized more, and the gradient stays
    # sparse, unlike a penalty on the whole table at every step.
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    init = keras.initializers.RandomNormal(stddev=0.01)  # as He et al.

    def embedding(n: int, dim: int, name: str) -> keras.layers.Embedding:
        return keras.layers.Embedding(
            n, dim, embeddings_initializer=init, activity_regularizer=reg, name=name
        )

    user, item = pair_inputs()
    d, dm = cfg.embedding_dim, cfg.mlp_embedding_dim
    gmf = GMF(name="gmf")(
        [embedding(n_users, d, "gmf_user")(user), embedding(n_items, d, "gmf_item")(item)]
    )
    mlp_in = keras.layers.Concatenate(name="mlp_input")(
        [embedding(n_users, dm, "mlp_user")(user), embedding(n_items, dm, "mlp_item")(item)]
    )
    mlp = MLPTower(cfg.mlp_units, dropout=cfg.dropout, final_activation=True, name="mlp")(mlp_in)
    fused = keras.layers.Concatenate(name="fused")([gmf, mlp])
    out = keras.layers.Dense(
        1,
        dtype="float32",
        bias_initializer=keras.initializers.Constant(output_bias),
        name="prediction",
    )(fused)
    out = keras.layers.Reshape((), dtype="float32", name="score")(out)
    return keras.Model({USER: user, ITEM: item}, out, name="neumf")


class NeuMF(KerasRecommender):
    """Neural matrix factorization (GMF + MLP) trained with ``recsys.train``.

    Construct with a ``NeuMFConfig`` or its fields as keywords (``NeuMF(epochs=5)``); unknown
    keys raise ``ConfigError``.
    """

    name: ClassVar[str] = "neumf"
    fit_cost: ClassVar[float] = 25.0
    config_class: ClassVar[type[Any]] = NeuMFConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "embedding_dim": Choice((16, 32, 64)),
        "mlp_units": Choice(((32, 16, 8), (64, 32, 16), (128, 64, 32))),
        "learning_rate": Float(3e-4, 1e-2, log=True),
        "lr_schedule": Choice(("constant", "cosine")),
        "weight_decay": Float(0.0, 0.5),
        "dropout": Float(0.0, 0.5),
        "n_negatives": Int(1, 8),
        "batch_size": Choice((512, 1024, 2048)),
        "epochs": Int(5, 40),
    }

    def resolved_loss(self, feedback: str | None = None) -> Literal["softmax", "bce", "mse"]:
        """The loss ``fit`` uses for data of this ``feedback`` (``explicit``/``implicit``)."""
        feedback = self.feedback if feedback is None else feedback
        if self.config.loss == "mse":
            if feedback == IMPLICIT:
                raise ConfigError(
                    "neumf.loss = 'mse' regresses explicit ratings, but the data is implicit",
                    fix="use loss: auto (binary cross-entropy on sampled negatives)",
                )
            return "mse"
        return "softmax" if self.config.loss == "softmax" else "bce"

    # --- training -----------------------------------------------------------------------------
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        cfg = self.config
        loss = self.resolved_loss(data.feedback)
        plan = resolve_device(cfg.device)
        set_seeds(cfg.seed)
        train = split.train
        users = train[USER_IDX].to_numpy(dtype=np.int64)
        items = train[ITEM_IDX].to_numpy(dtype=np.int64)
        ratings = train[RATING].to_numpy(dtype=np.float32)
        self._snapshot_cache = None
        train_items = np.flatnonzero(self._train_mask())
        validation: PeriodicValidation | None = None
        group = 1
        if loss != "mse":
            sampler = NegativeSampler(self._seen_matrix(), pool=train_items)
            epoch_data: Any = PointwiseEpochs(
                users, items, sampler, cfg.n_negatives, cfg.seed, grouped=loss == "softmax"
            )
            group = epoch_data.group
            n_rows = len(epoch_data)
            if len(split.val) and split.val_negatives is not None:
                # A leave-one-out split: stop on the protocol's own metric.
                validation = SampledRankingValidation(
                    self._live_pair_scores, split.val, split.val_negatives
                )
            else:
                validation = self._ranking_validation(split, self._live_scores)
        else:
            inputs = {USER: users.astype(np.int32), ITEM: items.astype(np.int32)}
            n_rows = len(users)

            def epoch_data(epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
                return inputs, ratings

            if len(split.val):
                validation = RatingValidation(self._live_pair_scores, split.val)
        losses = {
            "softmax": lambda: GroupSoftmaxCrossEntropy(group),
            "bce": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
            "mse": keras.losses.MeanSquaredError,
        }
        with plan.scope():
            model = build_neumf(
                data.vocab.n_users,
                data.vocab.n_items,
                cfg,
                output_bias=float(ratings.mean()) if loss == "mse" else 0.0,
            )
            model.compile(
                optimizer=self._optimizer(-(-n_rows // (cfg.batch_size * group))),
                loss=losses[loss](),
                jit_compile=plan.jit_compile,
            )
        self._model = model
        facts = self._train(model, epoch_data, plan, validation, group=group)
        facts["extra"].update(loss=loss)
        return facts

    # --- scoring ------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._snapshot().scores(user_idx, item_idx, compiled_min_pairs=COMPILED_MIN_PAIRS)

    def _pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[n] scores of the pairs ``(user_idx[j], item_idx[j])``."""
        return self._snapshot().pair_scores(user_idx, item_idx)  # type: ignore[no-any-return]

    def _live_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``_scores`` with the weights as they are now (validation during training)."""
        return self._extract().scores(user_idx, item_idx, compiled_min_pairs=COMPILED_MIN_PAIRS)

    def _live_pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._extract().pair_scores(user_idx, item_idx)

    def _predict_pairs(
        self, user_idx: np.ndarray, item_idx: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """[n] scores from ``model.predict``: the slow reference the fast path must equal."""
        return predict_pairs(self.keras_model, user_idx, item_idx, batch_size)

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, embedding_dim] GMF item embeddings (the branch that is a dot product)."""
        return self._snapshot().item_gmf.copy()  # type: ignore[no-any-return]

    def _extract(self) -> GmfMlpHead:
        """The fast scorer's arrangement of the current weights (``scoring.GmfMlpHead``)."""
        model = self.keras_model

        def emb(name: str) -> np.ndarray:
            return to_numpy(model.get_layer(name).embeddings).astype(np.float32, copy=False)

        tower = model.get_layer("mlp")
        assert isinstance(tower, MLPTower)
        return GmfMlpHead.from_layers(
            emb("gmf_user"),
            emb("gmf_item"),
            tower,
            model.get_layer("prediction"),
            mlp_users=emb("mlp_user"),
            mlp_items=emb("mlp_item"),
        )
