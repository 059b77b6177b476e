"""Keras building blocks shared by the deep recommenders (NeuMF, content, hybrid, two-tower).

Every block is a serializable ``keras.layers.Layer`` (registered under the ``recsys`` package,
with ``get_config``), written with ``keras.ops`` only, so a model that composes them saves to a
``.keras`` file without pickles and runs under any Keras backend (TensorFlow, JAX).

Sublayers inherit the block's dtype policy: under ``mixed_float16`` a tower computes in float16
with float32 variables; the caller keeps its output layer float32.

``dense_stack_numpy`` replays an ``MLPTower`` with numpy from ``MLPTower.numpy_weights()``: the
fast scoring paths use it to push precomputed halves of a layer through the rest of a tower
without a Keras call per block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "GMF",
    "EmbeddingBag",
    "FeatureTower",
    "MLPTower",
    "dense_stack_numpy",
    "pairwise_tower_scores",
]

_NUMPY_ACTIVATIONS = ("relu", "linear", "tanh", "sigmoid")


@keras.saving.register_keras_serializable(package="recsys")
class MLPTower(keras.layers.Layer):
    """A stack of Dense layers with ReLU, dropout between them; the last layer linear or not.

    ``[..., d_in] -> [..., units[-1]]``. Dropout follows every layer but the last (it only acts
    in training). ``final_activation=True`` keeps the activation on the last layer too, as the
    MLP branch of NeuMF does before its output layer (He et al. 2017, section 3.3).

    Args:
      units: widths of the Dense layers, first to last.
      dropout: rate after each hidden layer, in [0, 1).
      activation: hidden activation (``relu``, ``tanh``, ``sigmoid`` or ``linear``).
      final_activation: apply ``activation`` to the last layer as well.
      l2: L2 penalty on each kernel (0: none).
    """

    def __init__(
        self,
        units: Sequence[int],
        *,
        dropout: float = 0.0,
        activation: str = "relu",
        final_activation: bool = False,
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._units = tuple(int(u) for u in units)
        if not self._units or min(self._units) < 1:
            raise ValueError(f"MLPTower units must be positive integers, got {list(units)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPTower dropout must be in [0, 1), got {dropout}")
        self._dropout = float(dropout)
        self._activation = activation
        self._final_activation = bool(final_activation)
        self._l2 = float(l2)
        reg = keras.regularizers.L2(self._l2) if self._l2 > 0 else None
        last = len(self._units) - 1
        self.dense_layers = [
            keras.layers.Dense(
                n,
                activation=activation if (j < last or self._final_activation) else None,
                kernel_regularizer=reg,
                dtype=self.dtype_policy,
                name=f"dense_{j}",
            )
            for j, n in enumerate(self._units)
        ]
        self.dropout_layers = [
            keras.layers.Dropout(self._dropout, dtype=self.dtype_policy, name=f"dropout_{j}")
            for j in range(last)
        ]

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        for dense in self.dense_layers:
            dense.build(shape)
            shape = (*shape[:-1], dense.units)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        for j, dense in enumerate(self.dense_layers):
            x = dense(x)
            if j < len(self.dropout_layers) and self._dropout > 0:
                x = self.dropout_layers[j](x, training=training)
        return x

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape)[:-1], self._units[-1])

    @property
    def units(self) -> tuple[int, ...]:
        return self._units

    def activations(self) -> list[str]:
        """Activation name of each Dense layer, first to last."""
        last = len(self._units) - 1
        return [
            self._activation if (j < last or self._final_activation) else "linear"
            for j in range(len(self._units))
        ]

    def numpy_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(kernel [d_in, d_out], bias [d_out]), ...]`` as float32 numpy arrays."""
        return [
            (
                _numpy(d.kernel),
                _numpy(d.bias),
            )
            for d in self.dense_layers
        ]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self._units),
            "dropout": self._dropout,
            "activation": self._activation,
            "final_activation": self._final_activation,
            "l2": self._l2,
        }


def _numpy(variable: Any) -> np.ndarray:
    value = getattr(variable, "value", variable)
    if hasattr(value, "numpy"):  # TensorFlow: its __array__ warns under numpy 2
        return np.asarray(value.numpy(), dtype=np.float32)
    return np.asarray(ops.convert_to_numpy(value), dtype=np.float32)


def dense_stack_numpy(
    x: np.ndarray,
    weights: Sequence[tuple[np.ndarray, np.ndarray]],
    activations: Sequence[str],
    *,
    first_preactivation: bool = False,
) -> np.ndarray:
    """Inference pass of a Dense stack in numpy (dropout is the identity at inference).

    Args:
      x: [n, d_in] float32 inputs; with ``first_preactivation`` the first layer's
        pre-activation ``x W_0 + b_0`` [n, units[0]] instead (its halves computed elsewhere).
      weights: ``MLPTower.numpy_weights()``.
      activations: ``MLPTower.activations()``.

    Returns:
      [n, units[-1]] float32.
    """
    h = x
    for j, ((kernel, bias), act) in enumerate(zip(weights, activations, strict=True)):
        if not (j == 0 and first_preactivation):
            h = h @ kernel
            h += bias
        h = _activate(h, act)
    return h


def pairwise_tower_scores(
    user_half: np.ndarray,
    item_half: np.ndarray,
    weights: Sequence[tuple[np.ndarray, np.ndarray]],
    activations: Sequence[str],
    readout: np.ndarray,
    *,
    user_block: int = 32,
) -> np.ndarray:
    """``readout . tower(u_half + i_half)`` for every (user, item) pair, compiled and batched.

    The first Dense layer of a tower over ``[user vector, item vector]`` splits into a user
    half and an item half (``W [u; i] + b = W_u u + (W_i i + b)``): callers precompute both
    halves once, and this function runs the first activation and the remaining layers on all
    ``n_u x n_i`` sums, ``user_block`` users at a time, in a backend-compiled function
    (``tf.function`` / ``jax.jit``; eager elsewhere). Items are padded to a few bucket sizes
    and the last user block to ``user_block``, so a compiling backend sees few shapes.

    Args:
      user_half: [n_u, h0] float32 ``W_u u`` per user.
      item_half: [n_i, h0] float32 ``W_i i + b`` per item.
      weights: the tower's (kernel, bias) pairs after the first layer.
      activations: the tower's activations, first layer included (``len(weights) + 1``).
      readout: [h_last] float32 weights of the linear read-out.

    Returns:
      [n_u, n_i] float32.
    """
    n_u, n_i = len(user_half), len(item_half)
    out = np.empty((n_u, n_i), dtype=np.float32)
    if n_u == 0 or n_i == 0:
        return out
    fn = _compiled_tower(tuple(activations))
    padded_items = _bucket(n_i)
    ih = np.zeros((padded_items, item_half.shape[1]), dtype=np.float32)
    ih[:n_i] = item_half
    item_t = ops.convert_to_tensor(ih)
    kernels = tuple(ops.convert_to_tensor(k) for k, _ in weights)
    biases = tuple(ops.convert_to_tensor(b) for _, b in weights)
    read = ops.convert_to_tensor(np.asarray(readout, dtype=np.float32))
    block = np.zeros((user_block, user_half.shape[1]), dtype=np.float32)
    for lo in range(0, n_u, user_block):
        hi = min(lo + user_block, n_u)
        block[: hi - lo] = user_half[lo:hi]
        scores = fn(ops.convert_to_tensor(block), item_t, kernels, biases, read)
        out[lo:hi] = ops.convert_to_numpy(scores)[: hi - lo, :n_i]
    return out


def _bucket(n: int) -> int:
    """``n`` rounded up to a multiple of 2**(bit_length - 4): < 1/8 padding, 8 sizes/octave."""
    step = 1 << max(0, n.bit_length() - 4)
    return -(-n // step) * step


_COMPILED: dict[tuple[str, tuple[str, ...]], Callable[..., Any]] = {}


def _compiled_tower(activations: tuple[str, ...]) -> Callable[..., Any]:
    key = (keras.backend.backend(), activations)
    if key not in _COMPILED:
        acts = [keras.activations.get(a) for a in activations]

        def block_scores(
            user_half: Any, item_half: Any, kernels: Any, biases: Any, readout: Any
        ) -> Any:
            h = acts[0](ops.expand_dims(user_half, 1) + ops.expand_dims(item_half, 0))
            shape = ops.shape(h)
            h = ops.reshape(h, (-1, shape[-1]))
            for act, kernel, bias in zip(acts[1:], kernels, biases, strict=True):
                h = act(ops.matmul(h, kernel) + bias)
            return ops.reshape(ops.matmul(h, ops.expand_dims(readout, 1)), shape[:2])

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            _COMPILED[key] = tf.function(block_scores, reduce_retracing=True)
        elif backend == "jax":
            import jax

            _COMPILED[key] = jax.jit(block_scores)
        else:
            _COMPILED[key] = block_scores
    return _COMPILED[key]


def _activate(h: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(h, 0.0, out=h)
    if name == "linear":
        return h
    if name == "tanh":
        return np.tanh(h, out=h)
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-h))).astype(h.dtype, copy=False)
    raise ValueError(f"no numpy replay for activation {name!r}; use one of {_NUMPY_ACTIVATIONS}")


@keras.saving.register_keras_serializable(package="recsys")
class GMF(keras.layers.Layer):
    """Generalized matrix factorization: the elementwise product ``p_u * q_i``.

    ``([..., d], [..., d]) -> [..., d]``; a Dense layer on top weighs the factors (He et al.
    2017, eq. 9). Kept as a named block so the fast scorer can find the GMF branch.
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        user, item = inputs
        return ops.multiply(user, item)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="recsys")
class EmbeddingBag(keras.layers.Layer):
    """Mean of token embeddings over the non-padding positions of a token-id list.

    ``[..., T] int -> [..., dim]``: for item title tokens ``[n_items, T]`` with 0 = padding
    (``ContentFeatures.item_tokens``). A row of only padding gives the zero vector. Id 0's
    embedding exists but never contributes.

    Args:
      vocab_size: number of token ids (``len(ContentFeatures.tokens)``).
      dim: embedding width.
      pad_id: the id that marks padding.
      l2: L2 penalty on the table (0: none).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        pad_id: int = 0,
        l2: float = 0.0,
        embeddings_initializer: Any = "uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vocab_size = int(vocab_size)
        self._dim = int(dim)
        self._pad_id = int(pad_id)
        self._l2 = float(l2)
        self._initializer = keras.initializers.get(embeddings_initializer)
        self.embedding = keras.layers.Embedding(
            self._vocab_size,
            self._dim,
            embeddings_initializer=self._initializer,
            embeddings_regularizer=keras.regularizers.L2(self._l2) if self._l2 > 0 else None,
            dtype=self.dtype_policy,
            name="tokens",
        )

    def build(self, input_shape: Any) -> None:
        self.embedding.build(input_shape)
        self.built = True

    def call(self, tokens: Any) -> Any:
        vectors = self.embedding(tokens)  # [..., T, dim]
        mask = ops.cast(ops.not_equal(tokens, self._pad_id), vectors.dtype)[..., None]
        total = ops.sum(vectors * mask, axis=-2)
        count = ops.maximum(ops.sum(mask, axis=-2), ops.cast(1.0, vectors.dtype))
        return total / count

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape)[:-1], self._dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "vocab_size": self._vocab_size,
            "dim": self._dim,
            "pad_id": self._pad_id,
            "l2": self._l2,
            "embeddings_initializer": keras.initializers.serialize(self._initializer),
        }


@keras.saving.register_keras_serializable(package="recsys")
class FeatureTower(keras.layers.Layer):
    """Concatenate feature blocks and map them through an ``MLPTower``; optionally L2-normalize.

    ``[[..., d_1], [..., d_2], ...] -> [..., units[-1]]``: a user or item tower of a content or
    two-tower model (an id embedding, a genre multi-hot, an ``EmbeddingBag`` of title tokens).
    ``normalize=True`` puts the output on the unit sphere, so a dot product is a cosine.

    Args:
      units, dropout, activation, l2: as ``MLPTower``; the last layer is linear.
      normalize: L2-normalize the output.
    """

    def __init__(
        self,
        units: Sequence[int],
        *,
        dropout: float = 0.0,
        activation: str = "relu",
        l2: float = 0.0,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._normalize = bool(normalize)
        self.tower = MLPTower(
            units,
            dropout=dropout,
            activation=activation,
            l2=l2,
            dtype=self.dtype_policy,
            name="mlp",
        )

    def build(self, input_shape: Any) -> None:
        shapes = [tuple(s) for s in input_shape]
        width = sum(int(s[-1]) for s in shapes)
        self.tower.build((*shapes[0][:-1], width))
        self.built = True

    def call(self, inputs: Sequence[Any], training: bool | None = None) -> Any:
        parts = [ops.cast(x, self.compute_dtype) for x in inputs]
        x = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        out = self.tower(x, training=training)
        if self._normalize:
            out = out / ops.maximum(
                ops.sqrt(ops.sum(ops.square(out), axis=-1, keepdims=True)),
                ops.cast(1e-6, out.dtype),
            )
        return out

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape[0])[:-1], self.tower.units[-1])

    def get_config(self) -> dict[str, Any]:
        cfg = self.tower.get_config()
        return {
            **super().get_config(),
            "units": cfg["units"],
            "dropout": cfg["dropout"],
            "activation": cfg["activation"],
            "l2": cfg["l2"],
            "normalize": self._normalize,
        }
