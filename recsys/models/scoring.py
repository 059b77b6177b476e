"""Fast scoring: the Keras blocks replayed in numpy (or a compiled function) from their weights.

Ranking a whole catalogue by ``model.predict`` over every (user, item) pair repeats the
embedding lookups and the widest matrix product of a head per pair. The deep models instead
take a numpy snapshot of their weights once per training state and score blocks from it:

- ``dense_stack_numpy`` replays an ``MLPTower`` from ``MLPTower.numpy_weights()``;
- ``pairwise_tower_scores`` runs a tower's remaining layers on every ``user half + item half``
  sum of a block in a backend-compiled function (``tf.function`` / ``jax.jit``);
- ``GmfMlpHead`` is the head ``w . [u * e, MLP([u', e'])] + b`` that NeuMF, DeepContent and
  the Hybrid's content path share: the GMF part with its output weights is one matrix product
  and the MLP's first layer splits into a user half and an item half computed once per row,
  ``W [u'; e'] + b = W_u u' + (W_e e' + b)``, so per pair only ``act(user half + item half)``
  and the narrower layers remain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops
from scipy.special import expit

from recsys.train import to_numpy

__all__ = [
    "SCORE_CHUNK",
    "GmfMlpHead",
    "dense_stack_numpy",
    "numpy_activation",
    "pairwise_tower_scores",
]

SCORE_CHUNK = 1 << 21
"""Pair x first-layer-width floats per block of the numpy scorers (8 MiB of float32)."""
NUMPY_ACTIVATIONS = ("relu", "linear", "tanh", "sigmoid", "elu")


def numpy_activation(h: np.ndarray, name: str) -> np.ndarray:
    """Keras activation ``name`` in numpy on float32 ``h`` (``relu`` and ``tanh`` in place)."""
    if name == "relu":
        return np.maximum(h, 0.0, out=h)
    if name == "linear":
        return h
    if name == "tanh":
        return np.tanh(h, out=h)
    if name == "sigmoid":
        return expit(h).astype(h.dtype, copy=False)  # type: ignore[no-any-return]
    if name == "elu":
        return np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))).astype(h.dtype, copy=False)
    raise ValueError(f"no numpy replay for activation {name!r}; use one of {NUMPY_ACTIVATIONS}")


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
        h = numpy_activation(h, act)
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


@dataclass(frozen=True)
class GmfMlpHead:
    """Numpy replay of ``w . [u * e, MLP([u', e'])] + b`` over user x item pairs.

    ``u``/``e`` are the GMF vectors and ``u'``/``e'`` the MLP's inputs: NeuMF has a second
    pair of embeddings for its MLP branch, the content models feed the tower outputs to both.
    """

    user_gmf: np.ndarray
    """[n_users, d] user vectors scaled by the GMF part of the output kernel."""
    item_gmf: np.ndarray
    """[n_items, d] item vectors."""
    user_half: np.ndarray | None
    """[n_users, h0] first MLP layer on the user's MLP input (no bias); None without an MLP."""
    item_half: np.ndarray | None
    """[n_items, h0] first MLP layer on the item's MLP input, plus its bias."""
    tower: list[tuple[np.ndarray, np.ndarray]]
    activations: list[str]
    mlp_out: np.ndarray | None
    """[h_last] MLP part of the output kernel."""
    bias: float

    @classmethod
    def from_layers(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        mlp: Any,
        out: keras.layers.Dense,
        *,
        mlp_users: np.ndarray | None = None,
        mlp_items: np.ndarray | None = None,
    ) -> GmfMlpHead:
        """Arrange the weights of an MLP head (``MLPTower`` or None) and the output ``Dense``.

        Args:
          users, items: [n, d] GMF vectors.
          mlp_users, mlp_items: [n, d'] the MLP's inputs (default: ``users`` and ``items``).
        """
        d = users.shape[1]
        w = to_numpy(out.kernel).astype(np.float32)[:, 0]
        b = float(to_numpy(out.bias)[0]) if out.use_bias else 0.0
        if mlp is None:
            return cls(users * w[:d], items, None, None, [], [], None, b)
        mlp_users = users if mlp_users is None else mlp_users
        mlp_items = items if mlp_items is None else mlp_items
        dm = mlp_users.shape[1]
        tower = mlp.numpy_weights()
        kernel0, bias0 = tower[0]
        return cls(
            user_gmf=users * w[:d],
            item_gmf=items,
            user_half=mlp_users @ kernel0[:dm],
            item_half=mlp_items @ kernel0[dm:] + bias0,
            tower=tower,
            activations=mlp.activations(),
            mlp_out=w[d:],
            bias=b,
        )

    def scores(
        self, user_idx: np.ndarray, item_idx: np.ndarray, *, compiled_min_pairs: int | None = None
    ) -> np.ndarray:
        """[n_u, n_i] float32 scores, the same function as the Keras head at inference.

        The MLP runs on every pair from the precomputed halves: compiled and batched
        (``pairwise_tower_scores``) for blocks of at least ``compiled_min_pairs`` pairs (None:
        never), plain numpy otherwise (one user's few items, where a compiled call costs more
        than it saves).
        """
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        out = self.user_gmf[users] @ self.item_gmf[items].T  # [n_u, n_i]
        out += np.float32(self.bias)
        if self.user_half is None or self.item_half is None or self.mlp_out is None:
            return out.astype(np.float32, copy=False)
        item_half = self.item_half[items]  # [n_i, h0]
        user_half = self.user_half[users]  # [n_u, h0]
        n_i, h0 = item_half.shape
        if n_i == 0 or len(users) == 0:
            return out.astype(np.float32, copy=False)
        if compiled_min_pairs is not None and len(users) * n_i >= compiled_min_pairs:
            out += pairwise_tower_scores(
                user_half, item_half, self.tower[1:], self.activations, self.mlp_out
            )
            return out
        rows = max(1, SCORE_CHUNK // (n_i * h0))
        for lo in range(0, len(users), rows):
            hi = min(lo + rows, len(users))
            pre = user_half[lo:hi, None, :] + item_half[None, :, :]  # [c, n_i, h0]
            h = dense_stack_numpy(
                pre.reshape(-1, h0), self.tower, self.activations, first_preactivation=True
            )
            out[lo:hi] += (h @ self.mlp_out).reshape(hi - lo, n_i)
        return out.astype(np.float32, copy=False)

    def pair_scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """[n] float32 scores of the pairs ``(user_idx[j], item_idx[j])``."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        out = np.empty(len(users), dtype=np.float32)
        width = 1 if self.item_half is None else self.item_half.shape[1]
        step = max(1, SCORE_CHUNK // max(1, width))
        for lo in range(0, len(users), step):
            u, i = users[lo : lo + step], items[lo : lo + step]
            score = np.einsum("nd,nd->n", self.user_gmf[u], self.item_gmf[i])
            if self.user_half is not None and self.item_half is not None:
                pre = self.user_half[u] + self.item_half[i]
                h = dense_stack_numpy(pre, self.tower, self.activations, first_preactivation=True)
                score = score + h @ self.mlp_out
            out[lo : lo + step] = score + np.float32(self.bias)
        return out
