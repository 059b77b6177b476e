"""Keras building blocks shared by the deep recommenders (NeuMF, content, hybrid, two-tower).

Every block is a serializable ``keras.layers.Layer`` (registered under the ``recsys`` package,
with ``get_config``), written with ``keras.ops`` only, so a model that composes them saves to a
``.keras`` file without pickles and runs under any Keras backend (TensorFlow, JAX).

Sublayers inherit the block's dtype policy: under ``mixed_float16`` a tower computes in float16
with float32 variables; the caller keeps its output layer float32.

The numpy replays of these blocks for fast ranking live in ``recsys.models.scoring``
(``dense_stack_numpy`` and ``pairwise_tower_scores`` are re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from recsys.models.scoring import dense_stack_numpy, pairwise_tower_scores
from recsys.train import to_numpy

__all__ = [
    "GMF",
    "EmbeddingBag",
    "FeatureTower",
    "MLPTower",
    "dense_stack_numpy",
    "id_embedding",
    "l2_normalize",
    "pairwise_tower_scores",
]

ID_INIT_STDDEV = 0.05
"""Standard deviation of the normal initial id embeddings of the content-aware models."""


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
            (to_numpy(d.kernel).astype(np.float32), to_numpy(d.bias).astype(np.float32))
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
        return l2_normalize(out) if self._normalize else out

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


def l2_normalize(x: Any) -> Any:
    """``x`` scaled to unit L2 norm along the last axis (norms below 1e-6 count as 1e-6)."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, ops.cast(1e-6, x.dtype))


def id_embedding(
    n: int,
    dim: int,
    *,
    name: str,
    dtype: Any,
    initializer: Any = None,
    regularizer: Any = None,
) -> keras.layers.Embedding:
    """The ``[n, dim]`` id embedding of the content-aware models: normal init of standard
    deviation ``ID_INIT_STDDEV`` (a fresh initializer unless one is passed) and an optional
    activity regularizer."""
    return keras.layers.Embedding(
        n,
        dim,
        embeddings_initializer=initializer
        if initializer is not None
        else keras.initializers.RandomNormal(stddev=ID_INIT_STDDEV),
        activity_regularizer=regularizer,
        dtype=dtype,
        name=name,
    )
