"""Mult-DAE: a denoising autoencoder over each user's interactions with a multinomial
likelihood (Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for Collaborative
Filtering", WWW 2018, the paper's Mult-DAE).

A user is the vector ``x_u`` of their training interactions over the catalogue (1 per item,
or a confidence weight, see ``confidence``). The network reads it through input dropout and
reconstructs a distribution over every item::

    x~_u = dropout(x_u / ||x_u||)                                      [n_items]
    h_u  = tanh(W_k ... tanh(W_1 x~_u + b_1) ... + b_k)                [hidden_units[-1]]
    z_u  = W_out tanh-decoder(h_u) + b_out                             [n_items] logits
    loss = - sum_i x_ui log softmax(z_u)_i + (l2 / 2) sum ||W||^2

``score(u, i) = z_ui``: the logit of item ``i`` for user ``u``'s history. There is no user
parameter, so any history can be scored (a user unseen in training is a user with an empty
vector: all-zero input, the decoder's answer to nothing, a popularity-like order), and the fit
is cheap: one dense pass per batch of users, no negative sampling. The multinomial likelihood
spreads one unit of probability over the catalogue per user, which is what a top-k ranking
needs (the paper shows it beats Gaussian and logistic likelihoods for ranking).

Chosen on the ML-100K u1 **validation** files (``docs/benchmarks.md``, issue 17): one hidden
layer of 200 (the paper's 600-200-600 was no better there and slower), input dropout 0.5,
``l2`` 0.01, Adam 1e-3, 256 users per batch; validation NDCG@10 0.260 near epoch 150, then
slowly overfitting (the fit keeps the best epoch when ``split.val`` has rows; the benchmark
chooses ``epochs`` on validation through ``EpochsTuned``). The variational version (Mult-VAE
with KL annealing to 0.2) reached 0.258 in 4x the time and is not implemented.

The network reads each history in one of two forms, the same function:
- **padded** where the longest training history is at most ``1 / PADDED_RATIO`` of the
  catalogue (a shop's or a music log's long tail): each history as its item indices and
  weights padded to the longest (``[batch, L]`` each); the first layer sums the kernel rows of
  the user's items (``recsys.models.histories.HistoryDense``) and the loss gathers the
  log-softmax at those items (``padded_multinomial_nll``). On the 17.6k-item play-count
  stand-in (longest training history 59) an epoch takes 1.0-1.1 s instead of 1.4-2.7 s on one
  thread, and ``n_users * L`` cells are held instead of ``n_users * n_items``.
- **dense** otherwise (ML-100K u1: the longest of 943 histories is 685 of 1 650 items, where
  the padded form's fit took 77.7 s against the dense form's 15.0 s):
  ``[batch, n_items]`` vectors, a ``Dense`` first layer.

Logs beyond ``MAX_CELLS`` in the chosen form are refused with the reason. Saved as
``model.keras`` plus ``inputs.parquet`` (the input weights: the network's input at
inference); a loaded model scores bit for bit as the saved one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import io
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.models.histories import (
    ITEMS,
    MAX_ITEMS,
    WEIGHTS,
    HistoryDense,
    csr,
    input_matrix,
    multinomial_nll,
    padded_histories,
    padded_multinomial_nll,
)
from recsys.models.keras_base import MODEL_FILE, EpochsTuned, KerasRecommender
from recsys.models.model_config import TrainingSettings, check_config_fields
from recsys.train import resolve_device, set_seeds
from recsys.tuning.space import Choice, Float, Int, SearchSpace

__all__ = ["MODEL_FILE", "MultDAE", "MultDAEConfig", "build_multdae"]

INPUTS_FILE = "inputs.parquet"
INPUT = "history"
"""The dense network's input: [batch, n_items] float32 interaction vectors."""
WEIGHT = "weight"
PADDED_RATIO = 8
"""The padded form is used when ``PADDED_RATIO * longest history <= n_items``."""
MAX_CELLS = 1 << 29
"""Largest ``n_users * n_items`` (dense) or ``n_users * L`` (padded) trained on: 2 GiB of
float32 inputs, as much again for the targets."""
SCORE_BLOCK = 4096
"""Users encoded per numpy block when scoring."""


@dataclass(frozen=True)
class MultDAEConfig(TrainingSettings):
    """Mult-DAE hyper-parameters (``params.yaml``, ``models.multdae``); the defaults were
    chosen on the ML-100K u1 validation files (module docstring)."""

    hidden_units: tuple[int, ...] = (200,)
    """Encoder widths; the decoder mirrors them (600, 200: 600-200-600 as in the paper)."""
    dropout: float = 0.5
    """Input dropout (the denoising); 0 turns it off."""
    l2: float = 0.01
    """Weight decay: ``l2 / 2`` times the sum of squared kernel weights, added to the mean
    per-user loss of a batch."""
    confidence: Literal["binary", "log", "linear"] = "binary"
    """Input (and likelihood) weight of an interaction of strength r (a rating, a play
    count): ``binary`` 1; ``log`` 1 + alpha log(1 + r); ``linear`` 1 + alpha r. On the u1
    validation files ``log`` (alpha 1) gave 0.259 and ``linear`` (0.5) 0.260 against binary's
    0.260: binary by default, the others for play counts and clicks (``recsys tune``)."""
    alpha: float = 1.0
    """Strength scale of the ``log`` and ``linear`` confidences."""
    learning_rate: float = 1e-3
    """Adam."""
    batch_size: int = 256
    """Users per step."""
    epochs: int = 150
    patience: int = 0
    """Validations without improvement before stopping; 0: train all ``epochs``, keep the
    best (what ``tune`` then returns)."""
    eval_every: int = 5
    eval_users: int = 1000

    section: ClassVar[str] = "multdae"

    def __post_init__(self) -> None:
        check_config_fields(
            self,
            self.section,
            positive=("batch_size", "epochs", "eval_every", "eval_users"),
            non_negative=("l2", "alpha", "patience"),
        )
        where = self.section
        units = tuple(int(u) for u in self.hidden_units)
        if not units or min(units) <= 0:
            raise ConfigError(f"{where}.hidden_units must be one or more positive widths")
        object.__setattr__(self, "hidden_units", units)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}.dropout must be in [0, 1), got {self.dropout}")
        if self.confidence not in ("binary", "log", "linear"):
            raise ConfigError(
                f"{where}.confidence must be binary, log or linear, got {self.confidence!r}"
            )


def build_multdae(n_items: int, cfg: MultDAEConfig, *, padded: bool = False) -> keras.Model:
    """The network: ``{history: [batch, n_items]}`` (dense) or ``{items, weights: [batch, L]}``
    (``padded``, any ``L``) ``-> [batch, n_items] logits``."""
    reg = keras.regularizers.L2(cfg.l2 / 2.0) if cfg.l2 > 0 else None
    if padded:
        inputs = {
            ITEMS: keras.Input(shape=(None,), dtype="int32", name=ITEMS),
            WEIGHTS: keras.Input(shape=(None,), dtype="float32", name=WEIGHTS),
        }
        weights = inputs[WEIGHTS]
    else:
        inputs = {INPUT: keras.Input(shape=(n_items,), dtype="float32", name=INPUT)}
        weights = inputs[INPUT]
    x = keras.layers.UnitNormalization(axis=-1, name="normalize")(weights)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed, name="input_dropout")(x)
    widths = list(cfg.hidden_units) + list(reversed(cfg.hidden_units[:-1]))
    if padded:
        x = HistoryDense(n_items, widths[0], kernel_regularizer=reg, name="dense_0")(
            inputs[ITEMS], x
        )
    else:
        x = _dense(widths[0], reg, 0)(x)
    for k, width in enumerate(widths[1:], start=1):
        x = _dense(width, reg, k)(x)
    out = keras.layers.Dense(n_items, kernel_regularizer=reg, dtype="float32", name="logits")(x)
    return keras.Model(inputs, out, name="multdae")


def _dense(width: int, reg: Any, k: int) -> keras.layers.Dense:
    return keras.layers.Dense(width, activation="tanh", kernel_regularizer=reg, name=f"dense_{k}")


@dataclass(frozen=True)
class _Snapshot:
    """What scoring needs, in numpy: every user's last hidden code and the output layer."""

    codes: np.ndarray
    """[n_users, width] float32 input of the output layer for each user's history."""
    kernel: np.ndarray
    """[width, n_items] float32."""
    bias: np.ndarray
    """[n_items] float32."""


class MultDAE(EpochsTuned, KerasRecommender):
    """Mult-DAE top-k recommender (module docstring).

    Construct with a ``MultDAEConfig`` or its fields as keywords (``MultDAE(epochs=5)``);
    unknown keys raise ``ConfigError``.
    """

    name: ClassVar[str] = "multdae"
    fit_cost: ClassVar[float] = 30.0
    scores_cold_items: ClassVar[bool] = False

    config_class: ClassVar[type[Any]] = MultDAEConfig
    search_space: ClassVar[SearchSpace] = {  # recsys tune; epochs: the most, the best kept
        "hidden_units": Choice(((100,), (200,), (600,), (600, 200))),
        "dropout": Float(0.0, 0.8),
        "l2": Float(1e-4, 0.1, log=True),
        "confidence": Choice(("binary", "log", "linear")),
        "alpha": Float(0.1, 10.0, log=True),
        "learning_rate": Float(3e-4, 3e-3, log=True),
        "epochs": Int(50, 300),
    }

    def __init__(self, config: MultDAEConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        self._inputs: sp.csr_matrix | None = None
        """[n_users, n_items] float32 input weights of the training interactions."""

    # --- training -----------------------------------------------------------------------------
    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        """Train on ``split.train``; validate on ``split.val`` (full-ranking NDCG@10) when it
        has rows and keep the best epoch, else run ``epochs``."""
        cfg = self.config
        n_users, n_items = data.vocab.n_users, data.vocab.n_items
        self._inputs = input_matrix(split.train, n_users, n_items, cfg.confidence, cfg.alpha)
        lengths = np.diff(self._inputs.indptr)
        users = np.flatnonzero(lengths > 0)
        longest = int(lengths.max(initial=1))
        padded = PADDED_RATIO * longest <= n_items
        width = longest if padded else n_items
        if padded and n_items > MAX_ITEMS:
            raise DataError(
                f"multdae's padded form carries item indices as float32: {n_items} items "
                f"exceed {MAX_ITEMS}",
                fix="use a smaller catalogue (a k-core of the items) or another model (als, ease)",
            )
        if len(users) * width > MAX_CELLS:
            raise DataError(
                f"multdae holds every training history as {width} cells "
                f"({'the longest history, padded' if padded else 'the catalogue, dense'}): "
                f"{len(users)} users x {width} exceeds {MAX_CELLS} cells",
                fix="use a smaller catalogue (a k-core of the items), drop the heaviest users' "
                "oldest interactions, or use another model (als, ease)",
            )
        if padded:
            items, weights = padded_histories(self._inputs, users)
            inputs = {ITEMS: items, WEIGHTS: weights}
            targets = np.concatenate([items.astype(np.float32), weights], axis=1)
        else:
            targets = self._inputs[users].toarray()
            inputs = {INPUT: targets}
        plan = resolve_device(cfg.device)
        set_seeds(cfg.seed)
        self._snapshot_cache = None
        with plan.scope():
            model = build_multdae(n_items, cfg, padded=padded)
            model.compile(
                optimizer=self._optimizer(),
                loss=padded_multinomial_nll if padded else multinomial_nll,
                jit_compile=plan.jit_compile,
            )
        validation = self._ranking_validation(split, self._live_scores)

        def epoch_data(epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            return inputs, targets

        facts = self._train(model, epoch_data, plan, validation)
        facts["extra"].update(n_train_users=len(users), input="padded" if padded else "dense")
        return facts

    # --- scoring ------------------------------------------------------------------------------
    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return _block(self._snapshot(), user_idx, item_idx)

    def _live_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``_scores`` with the weights as they are now (validation during training)."""
        return _block(self._extract(), user_idx, item_idx)

    def _extract(self) -> _Snapshot:
        """Every user's history through the encoder and decoder, in numpy (float32)."""
        model = self.keras_model
        x = self._input_matrix()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float64)).ravel()
        scale = sp.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32))
        x = (scale @ x).tocsr()  # UnitNormalization; an empty history stays all zero
        dense_layers = [layer for layer in model.layers if layer.name.startswith("dense_")]
        codes: Any = x
        for layer in dense_layers:
            w = np.asarray(layer.kernel.numpy(), dtype=np.float32)
            b = np.asarray(layer.bias.numpy(), dtype=np.float32)
            codes = np.tanh(np.asarray(codes @ w, dtype=np.float32) + b)
        out = model.get_layer("logits")
        return _Snapshot(
            codes=np.ascontiguousarray(codes, dtype=np.float32),
            kernel=np.asarray(out.kernel.numpy(), dtype=np.float32),
            bias=np.asarray(out.bias.numpy(), dtype=np.float32),
        )

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, width] output-layer weights of each item (its decoder vector)."""
        return np.ascontiguousarray(self._snapshot().kernel.T)

    def _input_matrix(self) -> sp.csr_matrix:
        if self._inputs is None:
            raise RecsysError(f"the {self.name} model is not trained", fix="call fit() or load()")
        return self._inputs

    # --- persistence --------------------------------------------------------------------------
    def _save(self, path: Path) -> None:
        super()._save(path)
        coo = self._input_matrix().tocoo()
        io.write_table(
            pd.DataFrame(
                {
                    USER_IDX: coo.row.astype(np.int64),
                    ITEM_IDX: coo.col.astype(np.int64),
                    WEIGHT: coo.data.astype(np.float32),
                }
            ),
            path / INPUTS_FILE,
        )

    def _load(self, path: Path) -> None:
        super()._load(path)
        vocab = self._vocab()
        rows = io.read_table(path / INPUTS_FILE)
        self._inputs = csr(rows, rows[WEIGHT].to_numpy(dtype=np.float32), vocab.n_users,
                            vocab.n_items)  # fmt: skip


def _block(snap: _Snapshot, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    """[n_u, n_i] logits of the users' histories for the items."""
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    out = snap.codes[users] @ snap.kernel[:, items] + snap.bias[items]
    return np.asarray(out, dtype=np.float32)
