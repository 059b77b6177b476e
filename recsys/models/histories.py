"""A user's history as a network's input (issue 17; Mult-DAE's): the interaction-weight
matrix, and its padded form for wide catalogues.

- ``input_matrix``: ``[n_users, n_items]`` CSR of each interaction's weight (binary, log or
  linear confidence in its strength: a rating, a play count).
- ``padded_histories``: rows of it as item indices and weights padded to the longest history,
  ``[n, L]`` each; ``HistoryDense`` is a dense layer over that form (the kernel rows of the
  user's items, summed by weight) and ``padded_multinomial_nll`` the multinomial likelihood
  over it (the log-softmax gathered at the user's items). Where ``L`` is much smaller than the
  catalogue they avoid multiplying vectors that are almost all zeros.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp
from keras import ops

from recsys.data.preprocess import ITEM_IDX, USER_IDX
from recsys.schema import RATING

__all__ = [
    "ITEMS",
    "MAX_ITEMS",
    "WEIGHTS",
    "HistoryDense",
    "csr",
    "input_matrix",
    "multinomial_nll",
    "padded_histories",
    "padded_multinomial_nll",
]

ITEMS = "items"
"""A padded network's first input: [batch, L] int32 item indices, padded with 0."""
WEIGHTS = "weights"
"""A padded network's second input: [batch, L] float32 weights, 0 on the padding."""
MAX_ITEMS = 1 << 24
"""The padded form carries item indices in float32 targets: exact below 2**24."""


@keras.saving.register_keras_serializable(package="recsys")
def multinomial_nll(y_true: Any, y_pred: Any) -> Any:
    """[batch] ``-sum_i y_i log softmax(logits)_i``: the multinomial log-likelihood of each
    user's interaction weights ``y_true`` [batch, n_items] under the logits ``y_pred``."""
    y_true = ops.cast(y_true, "float32")
    logp = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    return -ops.sum(y_true * logp, axis=-1)


@keras.saving.register_keras_serializable(package="recsys")
def padded_multinomial_nll(y_true: Any, y_pred: Any) -> Any:
    """``multinomial_nll`` of a padded history: ``y_true`` [batch, 2L] holds the L item
    indices (as float32, exact below ``MAX_ITEMS``) then their L weights (0 on the padding,
    which so adds nothing), as ``padded_histories`` gives them."""
    length = ops.shape(y_true)[-1] // 2
    items = ops.cast(y_true[:, :length], "int32")
    weights = ops.cast(y_true[:, length:], "float32")
    logp = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    return -ops.sum(weights * ops.take_along_axis(logp, items, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="recsys")
class HistoryDense(keras.layers.Layer):
    """A dense layer over a sparse history: ``activation(sum_j w_j kernel[i_j] + bias)``,
    which is ``Dense(units)`` applied to the ``[n_items]`` vector holding ``w_j`` at ``i_j``
    and 0 elsewhere; ``kernel`` is ``[n_items, units]`` as Dense's would be."""

    def __init__(self, n_items: int, units: int, activation: str = "tanh", **kwargs: Any):
        self.kernel_regularizer = keras.regularizers.get(kwargs.pop("kernel_regularizer", None))
        super().__init__(**kwargs)
        self.n_items, self.units = int(n_items), int(units)
        self.activation = keras.activations.get(activation)

    def build(self, items_shape: Any, weights_shape: Any = None) -> None:
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.n_items, self.units),
            initializer="glorot_uniform",
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, items: Any, weights: Any) -> Any:
        rows = ops.take(self.kernel, ops.cast(items, "int32"), axis=0)  # [batch, L, units]
        return self.activation(ops.einsum("bl,blu->bu", weights, rows) + self.bias)

    def compute_output_shape(self, items_shape: Any, weights_shape: Any = None) -> tuple:
        return (items_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_items": self.n_items,
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


def padded_histories(inputs: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` of ``inputs`` as ``([n, L] int32 item indices, [n, L] float32 weights)``,
    each history left-aligned and padded with item 0 of weight 0; ``L`` the longest history
    (at least 1)."""
    m = inputs[np.asarray(rows, dtype=np.int64)]
    lengths = np.diff(m.indptr)
    length = max(int(lengths.max(initial=0)), 1)
    items = np.zeros((len(lengths), length), dtype=np.int32)
    weights = np.zeros((len(lengths), length), dtype=np.float32)
    row = np.repeat(np.arange(len(lengths)), lengths)
    col = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    items[row, col] = m.indices
    weights[row, col] = m.data
    return items, weights


def input_matrix(
    train: pd.DataFrame, n_users: int, n_items: int, confidence: str, alpha: float
) -> sp.csr_matrix:
    """[n_users, n_items] float32 CSR of the input weights of ``train``'s interactions (a
    repeated pair counts once, with its summed strength)."""
    ones = np.ones(len(train), dtype=np.float32)
    if confidence == "binary":
        m = csr(train, ones, n_users, n_items)
        m.data[:] = 1.0
        return m
    strength = csr(train, train[RATING].to_numpy(dtype=np.float32), n_users, n_items)
    if confidence == "log":
        strength.data = (1.0 + alpha * np.log1p(np.maximum(strength.data, 0.0))).astype(np.float32)
    else:
        strength.data = (1.0 + alpha * np.maximum(strength.data, 0.0)).astype(np.float32)
    return strength


def csr(rows: pd.DataFrame, values: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """[n_users, n_items] float32 CSR of ``values`` at ``rows``' (user_idx, item_idx); a
    repeated pair sums, indices sorted."""
    m = sp.csr_matrix(
        (
            values,
            (rows[USER_IDX].to_numpy(dtype=np.int64), rows[ITEM_IDX].to_numpy(dtype=np.int64)),
        ),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.sort_indices()
    return m
