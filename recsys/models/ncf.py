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
  (``layers.pairwise_tower_scores``; numpy for small blocks).

It returns the logits ``model.predict`` returns (to float32 round-off): on 943 x 1650 pairs
(2 CPU cores) about 7.4M pairs/s against 1.1M for ``model.predict`` and 1.8M for the same
algebra in numpy; ``bench/tune_neumf.py --speed`` measures it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import keras
import numpy as np

from recsys.config import from_dict
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.errors import ConfigError
from recsys.models.keras_base import KerasRecommender
from recsys.models.layers import GMF, MLPTower, dense_stack_numpy, pairwise_tower_scores
from recsys.schema import IMPLICIT, RATING
from recsys.train import (
    ITEM,
    USER,
    NegativeSampler,
    PeriodicValidation,
    PointwiseEpochs,
    RankingValidation,
    RatingValidation,
    SampledRankingValidation,
    TrainSettings,
    fit_model,
    resolve_device,
    set_seeds,
    to_numpy,
)

MODEL_FILE = "model.keras"
SCORE_CHUNK = 1 << 21
"""Pair x first-layer-width floats per block of the numpy scorer (8 MiB of float32)."""
COMPILED_MIN_PAIRS = 16_384
"""Blocks of at least this many (user, item) pairs go through the compiled tower scorer."""


@dataclass(frozen=True)
class NeuMFConfig:
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
    loss: Literal["auto", "bce", "mse"] = "auto"
    """``auto``: BCE on sampled negatives (top-k); ``mse``: regression on explicit ratings."""
    device: Literal["auto", "cpu", "gpu"] = "auto"
    seed: int = 20240101
    verbose: int = 0
    """0 silent, 1 Keras progress bar, 2 one line per epoch."""

    def __post_init__(self) -> None:
        positive = ("embedding_dim", "batch_size", "epochs", "n_negatives", "eval_every")
        for key in (*positive, "eval_users"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"neumf.{key} must be a positive integer, got {value!r}")
        units = tuple(self.mlp_units)
        if not units or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
            raise ConfigError(f"neumf.mlp_units must be positive integers, got {self.mlp_units!r}")
        if units[0] < 2:
            raise ConfigError("neumf.mlp_units[0] must be >= 2 (MLP embeddings are half of it)")
        object.__setattr__(self, "mlp_units", units)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"neumf.dropout must be in [0, 1), got {self.dropout}")
        if self.l2 < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"neumf.l2 and weight_decay must be >= 0, got {self.l2}, {self.weight_decay}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"neumf.learning_rate must be > 0, got {self.learning_rate}")
        if isinstance(self.patience, bool) or self.patience < 0:
            raise ConfigError(f"neumf.patience must be >= 0, got {self.patience}")
        if self.loss not in ("auto", "bce", "mse"):
            raise ConfigError(f"neumf.loss must be auto, bce or mse, got {self.loss!r}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"neumf.device must be auto, cpu or gpu, got {self.device!r}")

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

    user = keras.Input(shape=(), dtype="int32", name=USER)
    item = keras.Input(shape=(), dtype="int32", name=ITEM)
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


@dataclass(frozen=True)
class _ScoringWeights:
    """A numpy snapshot of the weights, arranged for the fast scorer."""

    gmf_user: np.ndarray
    """[n_users, d] GMF user embeddings scaled by the GMF part of the output kernel."""
    gmf_item: np.ndarray
    """[n_items, d] GMF item embeddings."""
    user_half: np.ndarray
    """[n_users, h0] first MLP layer applied to the user's MLP embedding (no bias)."""
    item_half: np.ndarray
    """[n_items, h0] first MLP layer applied to the item's MLP embedding, plus its bias."""
    tower: list[tuple[np.ndarray, np.ndarray]]
    activations: list[str]
    mlp_out: np.ndarray
    """[h_last] MLP part of the output kernel."""
    bias: float


class NeuMF(KerasRecommender):
    """Neural matrix factorization (GMF + MLP) trained with ``recsys.train``.

    Construct with a ``NeuMFConfig`` or its fields as keywords (``NeuMF(epochs=5)``); unknown
    keys raise ``ConfigError``.
    """

    name: ClassVar[str] = "neumf"

    def __init__(self, config: NeuMFConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        base = config if config is not None else NeuMFConfig()
        if overrides:
            base = from_dict(NeuMFConfig, {**dataclasses.asdict(base), **overrides}, "neumf")
        self.config = base
        self._model: keras.Model | None = None
        self._weights: _ScoringWeights | None = None
        self._device = "cpu"

    def resolved_loss(self, feedback: str | None = None) -> Literal["bce", "mse"]:
        """The loss ``fit`` uses for data of this ``feedback`` (``explicit``/``implicit``)."""
        feedback = self.feedback if feedback is None else feedback
        if self.config.loss == "mse":
            if feedback == IMPLICIT:
                raise ConfigError(
                    "neumf.loss = 'mse' regresses explicit ratings, but the data is implicit",
                    fix="use loss: auto (binary cross-entropy on sampled negatives)",
                )
            return "mse"
        return "bce"

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
        self._weights = None
        with plan.scope():
            model = build_neumf(
                data.vocab.n_users,
                data.vocab.n_items,
                cfg,
                output_bias=float(ratings.mean()) if loss == "mse" else 0.0,
            )
            model.compile(
                optimizer=keras.optimizers.AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay)
                if cfg.weight_decay > 0
                else keras.optimizers.Adam(cfg.learning_rate),
                loss=keras.losses.BinaryCrossentropy(from_logits=True)
                if loss == "bce"
                else keras.losses.MeanSquaredError(),
                jit_compile=plan.jit_compile,
            )
        self._model = model
        settings = TrainSettings(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            patience=cfg.patience,
            eval_every=cfg.eval_every,
            verbose=cfg.verbose,
        )
        train_items = np.flatnonzero(self._train_mask())
        validation: PeriodicValidation | None = None
        if loss == "bce":
            sampler = NegativeSampler(self._seen_matrix(), pool=train_items)
            epoch_data: Any = PointwiseEpochs(users, items, sampler, cfg.n_negatives, cfg.seed)
            if len(split.val) and split.val_negatives is not None:
                # A leave-one-out split: stop on the protocol's own metric.
                validation = SampledRankingValidation(
                    self._live_pair_scores, split.val, split.val_negatives
                )
            elif len(split.val):
                validation = RankingValidation(
                    self._live_scores,
                    self._seen_matrix(),
                    split.val,
                    train_items,
                    max_users=cfg.eval_users,
                    seed=cfg.seed,
                )
        else:
            inputs = {USER: users.astype(np.int32), ITEM: items.astype(np.int32)}

            def epoch_data(epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
                return inputs, ratings

            if len(split.val):
                validation = RatingValidation(self._live_pair_scores, split.val)
        facts = fit_model(
            model,
            epoch_data,
            settings,
            plan=plan,
            validation=validation,
            checkpoint_dir=self._checkpoint_dir,
        )
        self._device = plan.description
        self._weights = None
        facts["extra"].update(loss=loss)
        return facts

    # --- scoring ------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._fast_scores(self._scoring_weights(), user_idx, item_idx)

    def _pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[n] scores of the pairs ``(user_idx[j], item_idx[j])``."""
        return self._fast_pair_scores(self._scoring_weights(), user_idx, item_idx)

    def _live_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``_scores`` with the weights as they are now (validation during training)."""
        return self._fast_scores(self._extract_weights(), user_idx, item_idx)

    def _live_pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._fast_pair_scores(self._extract_weights(), user_idx, item_idx)

    def _predict_pairs(
        self, user_idx: np.ndarray, item_idx: np.ndarray, batch_size: int = 8192
    ) -> np.ndarray:
        """[n] scores from ``model.predict``: the slow reference the fast path must equal."""
        out = self.keras_model.predict(
            {
                USER: np.asarray(user_idx, dtype=np.int32),
                ITEM: np.asarray(item_idx, dtype=np.int32),
            },
            batch_size=batch_size,
            verbose=0,
        )
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, embedding_dim] GMF item embeddings (the branch that is a dot product)."""
        return self._scoring_weights().gmf_item.copy()

    def _scoring_weights(self) -> _ScoringWeights:
        if self._weights is None:
            self._weights = self._extract_weights()
        return self._weights

    def _extract_weights(self) -> _ScoringWeights:
        model = self.keras_model

        def emb(name: str) -> np.ndarray:
            table = model.get_layer(name).embeddings
            return to_numpy(table).astype(np.float32, copy=False)

        tower_layer = model.get_layer("mlp")
        assert isinstance(tower_layer, MLPTower)
        tower = tower_layer.numpy_weights()
        kernel0, bias0 = tower[0]
        mlp_user, mlp_item = emb("mlp_user"), emb("mlp_item")
        dm = mlp_user.shape[1]
        out = model.get_layer("prediction")
        w = to_numpy(out.kernel).astype(np.float32, copy=False)[:, 0]
        b = float(to_numpy(out.bias)[0])
        d = self.config.embedding_dim
        return _ScoringWeights(
            gmf_user=emb("gmf_user") * w[:d],
            gmf_item=emb("gmf_item"),
            user_half=mlp_user @ kernel0[:dm],
            item_half=mlp_item @ kernel0[dm:] + bias0,
            tower=tower,
            activations=tower_layer.activations(),
            mlp_out=w[d:],
            bias=b,
        )

    @staticmethod
    def _fast_scores(w: _ScoringWeights, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[n_u, n_i] float32 scores, the same function as the Keras model at inference.

        GMF: one matrix product. MLP: the precomputed halves of the first layer, then the rest
        of the tower on every pair: compiled and batched (``pairwise_tower_scores``) for full
        rankings, plain numpy for small blocks (one user's few items), where a compiled call
        costs more than it saves.
        """
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        out = w.gmf_user[users] @ w.gmf_item[items].T  # [n_u, n_i]
        out += np.float32(w.bias)
        item_half = w.item_half[items]  # [n_i, h0]
        user_half = w.user_half[users]  # [n_u, h0]
        n_i, h0 = item_half.shape
        if n_i == 0 or len(users) == 0:
            return out.astype(np.float32)
        if len(users) * n_i >= COMPILED_MIN_PAIRS:
            out += pairwise_tower_scores(
                user_half, item_half, w.tower[1:], w.activations, w.mlp_out
            )
            return out
        rows = max(1, SCORE_CHUNK // (n_i * h0))
        for lo in range(0, len(users), rows):
            hi = min(lo + rows, len(users))
            pre = user_half[lo:hi, None, :] + item_half[None, :, :]  # [c, n_i, h0]
            h = dense_stack_numpy(
                pre.reshape(-1, h0), w.tower, w.activations, first_preactivation=True
            )
            out[lo:hi] += (h @ w.mlp_out).reshape(hi - lo, n_i)
        return out.astype(np.float32, copy=False)

    @staticmethod
    def _fast_pair_scores(
        w: _ScoringWeights, user_idx: np.ndarray, item_idx: np.ndarray
    ) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        out = np.empty(len(users), dtype=np.float32)
        step = max(1, SCORE_CHUNK // max(1, w.item_half.shape[1]))
        for lo in range(0, len(users), step):
            u, i = users[lo : lo + step], items[lo : lo + step]
            gmf = np.einsum("nd,nd->n", w.gmf_user[u], w.gmf_item[i])
            pre = w.user_half[u] + w.item_half[i]
            h = dense_stack_numpy(pre, w.tower, w.activations, first_preactivation=True)
            out[lo : lo + step] = gmf + h @ w.mlp_out + np.float32(w.bias)
        return out

    # --- persistence --------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        self.keras_model.save(path / MODEL_FILE)

    def _load(self, path: Path) -> None:
        self._model = keras.saving.load_model(path / MODEL_FILE, compile=False)
        self._weights = None
        if self.train_result is not None:
            self._device = self.train_result.device
