"""Training data per epoch: vectorized negative sampling and the backend's input pipeline.

``NegativeSampler`` draws, for each positive, items the user never interacted with: exactly
uniform over the allowed items and fully vectorized (no rejection loop, no per-user Python
loop). ``PointwiseEpochs`` turns it into per-epoch ``(user, item, label)`` arrays, resampled
every epoch. ``make_dataset`` shuffles with a seeded numpy permutation and picks ``tf.data``
with the TensorFlow backend and a ``keras.utils.PyDataset`` otherwise (JAX may run without
TensorFlow installed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import keras
import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.training.core import ITEM, STREAM_NEGATIVES, USER, EpochArrays, epoch_rng


class NegativeSampler:
    """Items a user never interacted with, uniform over the allowed items, vectorized.

    For a user whose seen items sit at sorted positions ``s_0 < s_1 < ...`` of the candidate
    pool, the ``r``-th allowed position (0-based) is ``r + #{k : s_k - k <= r}``. All users'
    ``s_k - k`` are kept in one sorted key array ``user * (P + 1) + s_k - k``, so one
    ``searchsorted`` maps uniform ranks ``r ~ U{0, ..., allowed_u - 1}`` to items for every
    draw at once: exact (no rejection, no retries), O(n log nnz), the same cost for a user who
    has seen 90 % of the catalogue as for one who has seen 1 %.

    Args:
      seen: [n_users, n_items] training interactions (any nonzero = seen).
      pool: item indices negatives may come from (default: every item). Seen items outside
        the pool are irrelevant.
    """

    def __init__(self, seen: sp.spmatrix, pool: np.ndarray | None = None) -> None:
        csr = sp.csr_matrix(seen, copy=True)
        csr.sum_duplicates()
        csr.sort_indices()
        csr.eliminate_zeros()
        n_users, n_items = csr.shape
        self.n_items = int(n_items)
        self.pool = (
            np.arange(n_items, dtype=np.int64)
            if pool is None
            else np.unique(np.asarray(pool, dtype=np.int64))
        )
        if len(self.pool) and (self.pool[0] < 0 or self.pool[-1] >= n_items):
            raise ValueError(f"pool items must lie in 0..{n_items - 1}")
        p = len(self.pool)
        position = np.full(n_items, -1, dtype=np.int64)
        position[self.pool] = np.arange(p)
        rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(csr.indptr))
        pos = position[csr.indices]
        in_pool = pos >= 0
        rows, pos = rows[in_pool], pos[in_pool]  # sorted by row, then position
        counts = np.bincount(rows, minlength=n_users)
        self._starts = np.cumsum(counts) - counts
        rank = np.arange(len(rows)) - self._starts[rows]
        self._width = p + 1
        self._keys = rows * self._width + (pos - rank)
        self.allowed = (p - counts).astype(np.int64)
        """[n_users] number of pool items each user never interacted with."""

    def sample(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """[len(users), n] int64 item indices; draws are independent (with replacement).

        Raises:
          DataError: a user has no allowed item (filter with ``allowed > 0`` first).
        """
        users = np.asarray(users, dtype=np.int64)
        allowed = self.allowed[users]
        if len(users) and allowed.min() <= 0:
            bad = users[allowed <= 0]
            raise DataError(
                f"{len(np.unique(bad))} user(s) interacted with every candidate item, so no "
                f"negative exists for them (e.g. user index {bad[0]})",
                fix="drop those users' positives before sampling (NegativeSampler.allowed > 0)",
            )
        u = np.repeat(users, n)
        r = rng.integers(0, np.repeat(allowed, n))
        j = np.searchsorted(self._keys, u * self._width + r, side="right") - self._starts[u]
        return self.pool[r + j].reshape(len(users), n)


class PointwiseEpochs:
    """Per-epoch ``(user, item) -> label`` arrays: every positive with label 1 and
    ``n_negatives`` freshly sampled never-interacted items with label 0 (He et al. 2017).

    Positives of users who have seen every pool item get no negatives (there are none).
    Callable as ``epoch_data`` of ``fit_model``.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        sampler: NegativeSampler,
        n_negatives: int,
        seed: int,
    ) -> None:
        if n_negatives < 1:
            raise ConfigError(f"n_negatives must be >= 1, got {n_negatives}")
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.sampler = sampler
        self.n_negatives = int(n_negatives)
        self.seed = int(seed)
        self._with_room = self.users[sampler.allowed[self.users] > 0]

    def __len__(self) -> int:
        return len(self.users) + len(self._with_room) * self.n_negatives

    def __call__(self, epoch: int) -> EpochArrays:
        rng = epoch_rng(self.seed, epoch, STREAM_NEGATIVES)
        neg = self.sampler.sample(self._with_room, self.n_negatives, rng)
        users = np.concatenate([self.users, np.repeat(self._with_room, self.n_negatives)])
        items = np.concatenate([self.items, neg.ravel()])
        labels = np.zeros(len(users), dtype=np.float32)
        labels[: len(self.users)] = 1.0
        return {USER: users.astype(np.int32), ITEM: items.astype(np.int32)}, labels


# --- input pipeline ---------------------------------------------------------------------------
class ArrayBatches(keras.utils.PyDataset):
    """Mini-batches of in-memory arrays (already in epoch order) for backends without
    ``tf.data``."""

    def __init__(
        self, inputs: Mapping[str, np.ndarray], targets: np.ndarray, *, batch_size: int
    ) -> None:
        super().__init__()
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        self.targets = np.asarray(targets)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return {k: v[rows] for k, v in self.inputs.items()}, self.targets[rows]


def make_dataset(
    inputs: Mapping[str, np.ndarray],
    targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    pipeline: Literal["auto", "tf.data", "pydataset"] = "auto",
) -> Any:
    """One epoch of shuffled batches in the form the backend trains fastest from.

    The rows are shuffled here with a numpy permutation of ``seed``, so every pipeline yields
    the same batches. ``auto``: ``tf.data.Dataset.from_tensor_slices(...).batch().prefetch()``
    with deterministic options under TensorFlow; a ``PyDataset`` (``ArrayBatches``) on other
    backends, which need no TensorFlow. Batches are ``({name: [b]}, [b])``.

    Why not ``tf.data``'s own ``.shuffle(buffer, seed)``: a full-size shuffle buffer cost 1.6 s
    per epoch on 350k rows (2 CPU cores), about 60 % of NeuMF's epoch at batch size 1024; the
    permutation costs ~10 ms, and a smaller buffer would not shuffle uniformly.
    """
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(targets))
        inputs = {k: np.asarray(v)[order] for k, v in inputs.items()}
        targets = np.asarray(targets)[order]
    if pipeline == "auto":
        pipeline = "tf.data" if keras.backend.backend() == "tensorflow" else "pydataset"
    if pipeline == "pydataset":
        return ArrayBatches(inputs, targets, batch_size=batch_size)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((dict(inputs), targets))
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)
