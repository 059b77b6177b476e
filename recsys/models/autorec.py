"""I-AutoRec: item-based autoencoder for explicit ratings (Sedhain et al., WWW 2015).

Each item ``i`` is the vector ``r_i`` of the ratings all users gave it (0 where a user did not
rate it). The network reconstructs it through one hidden layer::

    h_i  = g(W r~_i + b)            [hidden]   g = sigmoid; r~_i = r_i with input dropout
    r^_i = V h_i + c                [n_users]  linear output: predicted ratings of item i

    min  sum_i sum_{u observed in r_i} (r_ui - r^_ui)^2 + (l2 / 2) (||W||^2 + ||V||^2)

The loss sees only the observed entries; the prediction for user ``u`` and item ``i`` is
``r^_ui``, clipped to the rating range. Input dropout (a denoising autoencoder) was not in the
paper; it helped on our validation split (``bench/tune_autorec.py``).

``l2`` keeps the paper's meaning (the objective sums over all items), so it does not depend
on the batch size: the Keras loss is the mean over a batch of the per-item sums, so each
kernel carries ``L2(l2 / (2 * n_train_items))``.

Training runs through ``recsys.train.fit_model`` (seeds, device, early stopping on the
validation RMSE when ``split.val`` has rows, ``TrainingError`` on a non-finite loss). The
training matrix is held dense, ``[n_train_items, n_users]`` float32: 6 MiB for ML-100K, 90 MiB
for ML-1M; catalogues beyond ``MAX_DENSE_CELLS`` are refused.

Scoring runs in numpy from a snapshot of the weights: the hidden codes ``h_i`` of every item
are computed once, then a block of scores is ``H[items] V[:, users] + c[users]``.

Users and items without training ratings (``scores_cold_items = False``): an unrated item's
input is all zeros and a user never seen in training has an untrained output unit, so the
network has nothing to say about them. ``score`` then returns a damped mean instead: the item's
mean rating for a user with no training ratings, the user's mean rating for an item with
none, the global mean when both are unknown (damping ``FALLBACK_DAMPING`` pseudo-ratings at the
global mean). ``evaluate_rating`` never asks (it uses the global mean for them itself).

Saved as ``model.keras`` (the network, no pickles) plus ``ratings.parquet`` (the training
ratings, the network's input at inference); a loaded model recomputes the same snapshot, so
its predictions equal the saved model's bit for bit. Ratings must be > 0: 0 marks "not rated".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp
from keras import ops

from recsys.data import io
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.models.histories import csr
from recsys.models.keras_base import MODEL_FILE, KerasRecommender
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.models.scoring import numpy_activation
from recsys.schema import IMPLICIT, RATING
from recsys.train import RatingValidation, resolve_device, set_seeds
from recsys.tuning.space import Choice, Float, Int, SearchSpace

__all__ = ["MODEL_FILE", "AutoRec", "AutoRecConfig", "build_autorec", "masked_squared_error"]

RATINGS_FILE = "ratings.parquet"
INPUT = "ratings"
"""Name of the model's input: [batch, n_users] float32 item rating vectors."""
MAX_DENSE_CELLS = 1 << 29
"""Largest ``n_train_items * n_users`` trained densely (2 GiB of float32)."""
FALLBACK_DAMPING = 5.0
"""Pseudo-ratings at the global mean added to a user's or item's mean (cold pairs only)."""
ACTIVATIONS = ("sigmoid", "tanh", "relu", "elu", "linear")


@dataclass(frozen=True)
class AutoRecConfig(TrainingSettings):
    """I-AutoRec hyper-parameters; the defaults suit ML-100K (``bench/bench_rating.py``).

    Tuned on validation rows only (``bench/tune_autorec.py``): a per-user random tenth of
    ``u1.base`` held out, early stopping on its RMSE. l2 in {100, 200, 300} x dropout in
    {0, 0.2, 0.4} at batch 64 / lr 3e-4 -> l2 200, dropout 0.2 (val RMSE 0.9013); then batch
    128 / lr 6e-4 reached 0.9006 in fewer epochs, hidden 300 / 1000 gave 0.9017 / 0.9131. The
    best epoch was 70, 70 and 40 on the u1, u2, u3 validation tenths: ``epochs = 70`` for the
    refit on the whole base file, where there is no validation set to stop on.
    """

    hidden_units: int = 500
    """Width of the hidden layer (the paper's k = 500)."""
    activation: Literal["sigmoid", "tanh", "relu", "elu", "linear"] = "sigmoid"
    """Hidden activation g; the output is linear."""
    l2: float = 200.0
    """lambda of the paper's objective (sum of squared errors over all observed ratings)."""
    dropout: float = 0.2
    """Input dropout (denoising) while training; 0 turns it off."""
    learning_rate: float = 6e-4
    """Adam."""
    batch_size: int = 128
    """Items per step."""
    epochs: int = 70
    patience: int = 4
    """Validations without improvement before stopping (needs ``split.val``; 0: never)."""
    eval_every: int = 5
    """Validate every this many epochs."""
    rating_range: tuple[float, float] | None = None
    """Predictions are clipped to this range; None: the training ratings' min and max."""

    def __post_init__(self) -> None:
        check_config_fields(
            self,
            "autorec",
            positive=("hidden_units", "batch_size", "epochs", "eval_every"),
            non_negative=("l2", "patience"),
        )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"autorec.activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.rating_range is not None:
            low, high = (float(v) for v in self.rating_range)
            if not low < high:
                raise ConfigError(f"autorec.rating_range must be (low, high), got {low}, {high}")
            object.__setattr__(self, "rating_range", (low, high))


@keras.saving.register_keras_serializable(package="recsys")
def masked_squared_error(y_true: Any, y_pred: Any) -> Any:
    """[batch] sum of squared errors over the observed (non-zero) ratings of each item.

    Args:
      y_true: [batch, n_users] ratings, 0 where not observed (ratings are > 0).
      y_pred: [batch, n_users] reconstructions.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    observed = ops.cast(ops.greater(y_true, 0.0), "float32")
    return ops.sum(observed * ops.square(y_true - y_pred), axis=-1)


def build_autorec(
    n_users: int, n_train_items: int, cfg: AutoRecConfig, *, output_bias: float = 0.0
) -> keras.Model:
    """The I-AutoRec network: ``[batch, n_users] -> [batch, n_users]``.

    Args:
      n_users: users in the vocabulary (input and output width).
      n_train_items: items with training ratings, for the L2 scale (see the module docstring).
      output_bias: initial output bias (the global mean rating starts training near it).
    """
    reg = keras.regularizers.L2(cfg.l2 / (2.0 * n_train_items)) if cfg.l2 > 0 else None
    ratings = keras.Input(shape=(n_users,), dtype="float32", name=INPUT)
    x = ratings
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed, name="input_dropout")(x)
    hidden = keras.layers.Dense(
        cfg.hidden_units, activation=cfg.activation, kernel_regularizer=reg, name="encoder"
    )(x)
    out = keras.layers.Dense(
        n_users,
        kernel_regularizer=reg,
        bias_initializer=keras.initializers.Constant(output_bias),
        dtype="float32",  # predicted ratings stay float32 under mixed precision
        name="decoder",
    )(hidden)
    return keras.Model({INPUT: ratings}, out, name="autorec")


@dataclass(frozen=True)
class _Snapshot:
    """What scoring needs, in numpy: the item codes and the decoder."""

    codes: np.ndarray
    """[n_items, hidden] float32 ``h_i`` of every item (unrated items: ``g(b)``)."""
    decoder: np.ndarray
    """[hidden, n_users] float32 ``V``."""
    bias: np.ndarray
    """[n_users] float32 ``c``."""
    fallback: _Fallback


@dataclass(frozen=True)
class _Fallback:
    """Damped means for the pairs the network cannot score, and the clipping range."""

    cold_users: np.ndarray
    """[n_users] bool: no training rating."""
    cold_items: np.ndarray
    """[n_items] bool: no training rating."""
    user_mean: np.ndarray
    """[n_users] float32 damped mean rating of each user."""
    item_mean: np.ndarray
    """[n_items] float32 damped mean rating of each item."""
    global_mean: float
    low: float
    high: float

    @classmethod
    def of(cls, r: sp.csr_matrix, rating_range: tuple[float, float] | None) -> _Fallback:
        """From the [n_items, n_users] training ratings."""
        item_n = np.diff(r.indptr).astype(np.float64)
        user_n = np.bincount(r.indices, minlength=r.shape[1]).astype(np.float64)
        mu = float(r.data.mean())
        k = FALLBACK_DAMPING
        item_sum = np.asarray(r.sum(axis=1), dtype=np.float64).ravel()
        user_sum = np.asarray(r.sum(axis=0), dtype=np.float64).ravel()
        low, high = (
            rating_range if rating_range is not None else (float(r.data.min()), float(r.data.max()))
        )
        return cls(
            cold_users=user_n == 0,
            cold_items=item_n == 0,
            user_mean=((user_sum + k * mu) / (user_n + k)).astype(np.float32),
            item_mean=((item_sum + k * mu) / (item_n + k)).astype(np.float32),
            global_mean=mu,
            low=low,
            high=high,
        )

    def apply(self, out: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fill in the cold entries of the [n_u, n_i] block ``out`` and clip it, in place."""
        cold_u, cold_i = self.cold_users[users], self.cold_items[items]
        if cold_i.any():
            out[:, cold_i] = self.user_mean[users][:, None]  # the user's mean
        if cold_u.any():
            out[cold_u, :] = self.item_mean[items][None, :]  # the item's mean
            out[np.ix_(cold_u, cold_i)] = self.global_mean
        return np.clip(out, self.low, self.high, out=out)

    def apply_pairs(self, pred: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The same for [n] pair predictions ``(users[j], items[j])``."""
        cold_u, cold_i = self.cold_users[users], self.cold_items[items]
        value = np.where(
            cold_u,
            np.where(cold_i, self.global_mean, self.item_mean[items]),
            self.user_mean[users],
        )
        pred = np.where(cold_u | cold_i, value, pred).astype(np.float32)
        return np.clip(pred, self.low, self.high, out=pred)


class AutoRec(KerasRecommender):
    """I-AutoRec rating predictor; ``score`` and ``recommend`` use predicted ratings.

    Construct with an ``AutoRecConfig`` or its fields as keywords (``AutoRec(epochs=5)``);
    unknown keys raise ``ConfigError``.
    """

    name: ClassVar[str] = "autorec"
    fit_cost: ClassVar[float] = 45.0
    scores_cold_items: ClassVar[bool] = False
    requires: ClassVar[frozenset[str]] = frozenset({"ratings"})
    task: ClassVar[str] = "rating"

    config_class: ClassVar[type[Any]] = AutoRecConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "hidden_units": Choice((200, 500)),
        "l2": Float(10.0, 1000.0, log=True),
        "dropout": Float(0.0, 0.5),
        "learning_rate": Float(1e-4, 3e-3, log=True),
        "epochs": Int(20, 150),
    }

    def __init__(self, config: AutoRecConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._ratings: sp.csr_matrix | None = None
        """[n_items, n_users] float32 training ratings (the network's input at inference)."""

    # --- training -----------------------------------------------------------------------------
    def _check_data(self, data: Processed) -> None:
        """Explicit ratings only: implicit data has nothing for the autoencoder to reconstruct."""
        if data.feedback == IMPLICIT:
            raise ConfigError(
                "autorec predicts explicit ratings, but the data is implicit",
                fix="keep explicit ratings (preprocess.implicit_threshold: null) or use a "
                "top-k model (neumf, bpr, ease)",
            )

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        """Train on ``split.train``; stop early on ``split.val``'s RMSE when it has rows, else
        run ``epochs``."""
        cfg = self.config
        train = split.train
        ratings = train[RATING].to_numpy(dtype=np.float32)
        if (ratings <= 0).any():
            raise DataError(
                "autorec needs ratings > 0 (0 marks a missing rating in its input)",
                fix="shift the rating scale so that it starts above 0",
            )
        n_users, n_items = data.vocab.n_users, data.vocab.n_items
        self._ratings = _rating_matrix(train, n_items, n_users)
        items = np.flatnonzero(self._train_mask())
        if len(items) * n_users > MAX_DENSE_CELLS:
            raise DataError(
                f"autorec holds the training matrix dense: {len(items)} items x {n_users} users "
                f"exceeds {MAX_DENSE_CELLS} cells",
                fix="use a smaller catalogue (k-core) or another rating model",
            )
        dense = self._ratings[items].toarray()  # [m, n_users]
        plan = resolve_device(cfg.device)
        set_seeds(cfg.seed)
        self._snapshot_cache = None
        with plan.scope():
            model = build_autorec(n_users, len(items), cfg, output_bias=float(ratings.mean()))
            model.compile(
                optimizer=self._optimizer(), loss=masked_squared_error, jit_compile=plan.jit_compile
            )
        self._model = model
        validation = None
        if len(split.val):
            validation = RatingValidation(self._live_pair_scores, split.val)

        def epoch_data(epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            return {INPUT: dense}, dense

        facts = self._train(model, epoch_data, plan, validation)
        facts["extra"].update(n_train_items=len(items))
        return facts

    # --- scoring ------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        snap = self._snapshot()
        out = snap.codes[items] @ snap.decoder[:, users] + snap.bias[users]  # [n_i, n_u]
        return snap.fallback.apply(np.ascontiguousarray(out.T, dtype=np.float32), users, items)

    def _live_pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[n] predictions of the pairs with the weights as they are now (validation)."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        snap = self._extract()
        pred = np.einsum("nh,hn->n", snap.codes[items], snap.decoder[:, users]) + snap.bias[users]
        return snap.fallback.apply_pairs(pred, users, items)

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, hidden_units] hidden codes ``h_i`` (the encoder's view of each item)."""
        return self._snapshot().codes.copy()  # type: ignore[no-any-return]

    def _extract(self) -> _Snapshot:
        """Encode every item with the current weights (numpy, float32)."""
        model = self.keras_model
        encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
        w = np.asarray(encoder.kernel.numpy(), dtype=np.float32)
        b = np.asarray(encoder.bias.numpy(), dtype=np.float32)
        pre = np.asarray(self._rating_matrix() @ w, dtype=np.float32) + b  # [n_items, hidden]
        return _Snapshot(
            codes=numpy_activation(pre, self.config.activation),
            decoder=np.asarray(decoder.kernel.numpy(), dtype=np.float32),
            bias=np.asarray(decoder.bias.numpy(), dtype=np.float32),
            fallback=_Fallback.of(self._rating_matrix(), self.config.rating_range),
        )

    def _rating_matrix(self) -> sp.csr_matrix:
        if self._ratings is None:
            raise RecsysError(f"the {self.name} model is not trained", fix="call fit() or load()")
        return self._ratings

    # --- persistence --------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        super()._save(path)
        coo = self._rating_matrix().tocoo()
        io.write_table(
            pd.DataFrame(
                {
                    ITEM_IDX: coo.row.astype(np.int64),
                    USER_IDX: coo.col.astype(np.int64),
                    RATING: coo.data.astype(np.float32),
                }
            ),
            path / RATINGS_FILE,
        )

    def _load(self, path: Path) -> None:
        super()._load(path)
        vocab = self._vocab()
        self._ratings = _rating_matrix(
            io.read_table(path / RATINGS_FILE), vocab.n_items, vocab.n_users
        )


def _rating_matrix(rows: pd.DataFrame, n_items: int, n_users: int) -> sp.csr_matrix:
    """[n_items, n_users] float32 CSR of the ``rating`` column, indices sorted."""
    m = csr(rows, rows[RATING].to_numpy(dtype=np.float32), n_users, n_items).T.tocsr()
    m.sort_indices()
    return m
