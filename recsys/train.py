"""The shared Keras training loop: seeds, device, negatives, input pipeline, validation, resume.

Every deep recommender (NeuMF, content, hybrid, two-tower) trains through ``fit_model``:

- **Seeds.** ``set_seeds`` seeds Python, numpy and the backend; everything random in an epoch
  (negatives, shuffling) is drawn from ``epoch_rng(seed, epoch)``, so epoch ``e`` sees the same
  data whether the run started at epoch 0 or resumed at ``e``.
- **Device.** ``resolve_device("auto" | "cpu" | "gpu")`` -> a ``DevicePlan`` (description,
  mixed precision, XLA, ``MirroredStrategy`` on several GPUs with TensorFlow). Asking for a GPU
  where none is visible raises ``DeviceError``; nothing is downgraded silently.
- **Negatives.** ``NegativeSampler`` draws, for each positive, items the user never interacted
  with: exactly uniform over the allowed items and fully vectorized (no rejection loop, no
  per-user Python loop). ``PointwiseEpochs`` turns it into per-epoch ``(user, item, label)``
  arrays, resampled every epoch.
- **Input pipeline.** ``make_dataset`` shuffles with a seeded numpy permutation and picks
  ``tf.data`` with the TensorFlow backend and a ``keras.utils.PyDataset`` otherwise (JAX may
  run without TensorFlow installed).
- **Loop.** ``fit_model`` runs one ``model.fit`` call per epoch (so each epoch gets its freshly
  sampled data), validates every ``eval_every`` epochs with ``RankingValidation`` (NDCG@10 over
  a sample of validation users, full ranking of the training items),
  ``SampledRankingValidation`` (leave-one-out NDCG@10 among sampled negatives) or
  ``RatingValidation`` (RMSE), stops early after ``patience`` evaluations without
  improvement, restores the best weights, and checkpoints every epoch to ``checkpoint_dir``
  (weights, optimizer state and the loop's own state), from which a later call resumes with
  the same result as an uninterrupted run. A non-finite loss or weight raises
  ``TrainingError`` naming the epoch and batch.

No file paths here except the checkpoint directory a caller passes in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import io
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.evaluation.metrics import loo_metrics_from_counts, ndcg_at_k

__all__ = [
    "DeviceError",
    "DevicePlan",
    "NegativeSampler",
    "NonFiniteGuard",
    "PeriodicValidation",
    "PointwiseEpochs",
    "RankingValidation",
    "RatingValidation",
    "SampledRankingValidation",
    "TrainSettings",
    "TrainingError",
    "describe_device",
    "epoch_rng",
    "fit_model",
    "make_dataset",
    "resolve_device",
    "set_seeds",
    "to_numpy",
]

USER: str = "user"
"""Input name of the user index in every pointwise model (int32 [batch])."""
ITEM: str = "item"
"""Input name of the item index (int32 [batch])."""

CHECKPOINT_FORMAT = 1
CHECKPOINT_SUBDIR = "latest"
"""``checkpoint_dir/latest/`` is replaced atomically after every epoch."""

# Independent random streams of one seed (numpy SeedSequence entropy [seed, stream, epoch]).
_NEGATIVES, _SHUFFLE, _VAL_USERS = range(3)

EpochArrays = tuple[dict[str, np.ndarray], np.ndarray]
"""One epoch of training data: ({input name: [n] array}, [n] float32 targets)."""


class TrainingError(RecsysError):
    """Training diverged (non-finite loss or weights) or cannot continue from a checkpoint."""


class DeviceError(RecsysError):
    """The requested device is not available."""


def to_numpy(value: Any) -> np.ndarray:
    """A Keras variable or backend tensor as a numpy array (a copy, never a live view)."""
    value = getattr(value, "value", value)
    if hasattr(value, "numpy"):  # TensorFlow: its __array__ warns under numpy 2
        return np.array(value.numpy())
    return np.array(keras.ops.convert_to_numpy(value))


# --- seeds ------------------------------------------------------------------------------------
def set_seeds(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and the backend (weight init)."""
    keras.utils.set_random_seed(int(seed))


def epoch_rng(seed: int, epoch: int, stream: int = _NEGATIVES) -> np.random.Generator:
    """The numpy generator of ``stream`` in epoch ``epoch`` (0-based): a pure function of the
    three, so a resumed run draws exactly what an uninterrupted one would."""
    return np.random.default_rng([int(seed), int(stream), int(epoch)])


# --- devices ----------------------------------------------------------------------------------
def _tf_gpus() -> list[Any]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # One process may not grab every GPU's whole memory (RELIABILITY.md item 10).
        with contextlib.suppress(RuntimeError, ValueError):  # already initialized
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def visible_gpus() -> list[str]:
    """Names of the GPUs the Keras backend can use (empty on a CPU-only host)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for gpu in _tf_gpus():
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except (RuntimeError, ValueError):
                details = {}
            names.append(str(details.get("device_name", "GPU")))
        return names
    if backend == "jax":
        import jax

        try:
            return [str(d.device_kind) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU backend
            return []
    if backend == "torch":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [str(torch.cuda.get_device_name(j)) for j in range(n)]
    return []


def describe_device(gpus: Sequence[str] | None = None) -> str:
    """``"cpu"``, ``"gpu:NVIDIA H100 80GB HBM3"`` or ``"gpu x2:NVIDIA H100 80GB HBM3"``."""
    names = visible_gpus() if gpus is None else list(gpus)
    if not names:
        return "cpu"
    if len(names) == 1:
        return f"gpu:{names[0]}"
    return f"gpu x{len(names)}:{names[0]}"


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a model trains. Build, compile and fit the model inside ``scope()``."""

    kind: Literal["cpu", "gpu"]
    description: str
    """What ``TrainResult.device`` records, e.g. ``"gpu:NVIDIA H100 80GB HBM3"``."""
    replicas: int = 1
    """GPUs used (``MirroredStrategy`` when > 1)."""
    mixed_precision: bool = False
    """``mixed_float16``: float16 compute, float32 variables; output layers stay float32."""
    jit_compile: bool = False
    """XLA-compile the train step."""
    hide_gpus: bool = False
    """CPU requested on a host that has GPUs: pin the computation to the CPU."""
    strategy: Any = field(default=None, compare=False, repr=False)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The dtype policy and device/distribution scope; the global policy is restored."""
        previous = keras.config.dtype_policy()
        if self.mixed_precision:
            keras.config.set_dtype_policy("mixed_float16")
        try:
            with self._device_scope():
                yield
        finally:
            keras.config.set_dtype_policy(previous)

    def _device_scope(self) -> contextlib.AbstractContextManager[Any]:
        backend = keras.backend.backend()
        if self.strategy is not None:
            return self.strategy.scope()  # type: ignore[no-any-return]
        if self.hide_gpus and backend == "tensorflow":
            import tensorflow as tf

            return tf.device("/CPU:0")  # type: ignore[no-any-return]
        if self.hide_gpus and backend == "jax":
            import jax

            return jax.default_device(jax.devices("cpu")[0])  # type: ignore[no-any-return]
        return contextlib.nullcontext()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "replicas": self.replicas,
            "mixed_precision": self.mixed_precision,
            "jit_compile": self.jit_compile,
        }


def resolve_device(
    requested: str = "auto",
    *,
    mixed_precision: bool | None = None,
    jit_compile: bool | None = None,
) -> DevicePlan:
    """Turn ``"auto" | "cpu" | "gpu"`` into a ``DevicePlan``.

    ``auto`` takes the GPU(s) when visible. On a GPU, mixed precision and XLA default to on
    (``None``); on several GPUs with TensorFlow, a ``MirroredStrategy`` (without XLA, which
    ``tf.distribute`` does not combine with Keras' train step). Other backends use one GPU.

    Raises:
      DeviceError: ``"gpu"`` requested and no GPU is visible.
      ConfigError: an unknown ``requested`` value.
    """
    if requested not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'gpu', got {requested!r}")
    gpus = visible_gpus()
    if requested == "gpu" and not gpus:
        raise DeviceError(
            f"device='gpu' was requested but the {keras.backend.backend()} backend sees no GPU",
            fix="set device: auto (uses the CPU and records it) or cpu, or check "
            "CUDA_VISIBLE_DEVICES and the CUDA install",
        )
    if requested == "cpu" or not gpus:
        return DevicePlan(kind="cpu", description="cpu", hide_gpus=bool(gpus))
    backend = keras.backend.backend()
    strategy = None
    used = gpus[:1]
    if len(gpus) > 1 and backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        used = gpus
    return DevicePlan(
        kind="gpu",
        description=describe_device(used),
        replicas=len(used),
        mixed_precision=True if mixed_precision is None else mixed_precision,
        jit_compile=(strategy is None) if jit_compile is None else jit_compile,
        strategy=strategy,
    )


# --- negative sampling ------------------------------------------------------------------------
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
        rng = epoch_rng(self.seed, epoch, _NEGATIVES)
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


# --- callbacks --------------------------------------------------------------------------------
class NonFiniteGuard(keras.callbacks.Callback):
    """Raise ``TrainingError`` on the first non-finite batch loss or end-of-epoch weight.

    The running loss Keras reports becomes NaN/inf at the first bad batch and stays so, which
    makes the batch number exact. Weights are checked at each epoch end.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(np.asarray(loss))):
            raise TrainingError(
                f"training diverged: the loss became {float(np.asarray(loss))} at epoch "
                f"{self.epoch + 1}, batch {batch + 1}",
                fix=f"lower learning_rate (now {self._learning_rate()}); check the inputs "
                "for NaN/inf; try gradient clipping or a smaller batch",
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        bad = [v.path for v in self.model.variables if not _finite(v)]
        if bad:
            raise TrainingError(
                f"non-finite weights after epoch {epoch + 1}: {', '.join(bad[:5])}",
                fix=f"lower learning_rate (now {self._learning_rate()}) or add regularization",
            )

    def _learning_rate(self) -> str:
        try:
            return f"{float(to_numpy(self.model.optimizer.learning_rate)):g}"
        except (AttributeError, TypeError, ValueError):
            return "unknown"


def _finite(variable: Any) -> bool:
    value = to_numpy(variable)
    return not np.issubdtype(value.dtype, np.floating) or bool(np.isfinite(value).all())


class PeriodicValidation(keras.callbacks.Callback):
    """Evaluate every ``every`` epochs and at the last epoch; write the value into the logs.

    Subclasses set ``name`` (the log key, e.g. ``val_ndcg@10``) and ``mode`` (``max`` when
    higher is better) and implement ``evaluate``. The metric appears in Keras' progress bar.
    """

    name: str = "val"
    mode: Literal["max", "min"] = "max"

    def __init__(self) -> None:
        super().__init__()
        self.every = 1
        self.last_epoch: int | None = None
        self.seconds = 0.0
        """Time spent evaluating (``fit_model`` leaves it out of the training throughput)."""

    def configure(self, every: int, last_epoch: int) -> None:
        self.every, self.last_epoch = max(1, int(every)), int(last_epoch)

    def due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or (epoch + 1) == self.last_epoch

    def evaluate(self) -> float:
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self.due(epoch):
            start = time.perf_counter()
            logs[self.name] = self.evaluate()
            self.seconds += time.perf_counter() - start


class RankingValidation(PeriodicValidation):
    """NDCG@k of a full ranking of the candidate items for a sample of validation users.

    Seen (training) items are excluded; every validation item of a user is relevant, also one
    that is not a candidate (it still counts in the ideal DCG), as in ``PROTOCOL.md``.
    Users without a training interaction are left out.

    Args:
      scorer: ``(user_idx [u], item_idx [c]) -> [u, c]`` scores, the model's fast path; read
        at call time, so it sees the current weights.
      seen: [n_users, n_items] training interactions.
      val: validation rows with ``user_idx`` and ``item_idx``.
      candidates: item indices to rank (usually the items seen in training).
      k: cut-off.
      max_users: evaluate a seeded random sample of at most this many users.
      seed: for the user sample.
    """

    mode: Literal["max", "min"] = "max"

    def __init__(
        self,
        scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
        seen: sp.spmatrix,
        val: pd.DataFrame,
        candidates: np.ndarray,
        *,
        k: int = 10,
        max_users: int = 1000,
        seed: int = 0,
        user_block: int = 256,
    ) -> None:
        super().__init__()
        self.scorer = scorer
        self.k = int(k)
        self.name = f"val_ndcg@{self.k}"
        self.user_block = int(user_block)
        csr = sp.csr_matrix(seen)
        n_items = csr.shape[1]
        self.candidates = np.unique(np.asarray(candidates, dtype=np.int64))
        vu = val["user_idx"].to_numpy(dtype=np.int64)
        vi = val["item_idx"].to_numpy(dtype=np.int64)
        users = np.unique(vu)
        users = users[np.diff(csr.indptr)[users] > 0]
        if len(users) > max_users:
            rng = epoch_rng(seed, 0, _VAL_USERS)
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        self.users = users
        keep = np.isin(vu, users)
        self._relevant = np.unique(vu[keep] * n_items + vi[keep])
        self._n_relevant = np.bincount(
            np.searchsorted(users, self._relevant // n_items), minlength=len(users)
        )
        self._n_items = n_items
        self._seen = np.asarray(csr[users][:, self.candidates].todense() != 0)

    def evaluate(self) -> float:
        """Mean NDCG@k over the sampled users (0.0 when there are none)."""
        if not len(self.users):
            return 0.0
        out = np.empty(len(self.users))
        for lo in range(0, len(self.users), self.user_block):
            hi = min(lo + self.user_block, len(self.users))
            users = self.users[lo:hi]
            s = np.array(self.scorer(users, self.candidates), dtype=np.float32)
            s[self._seen[lo:hi]] = -np.inf
            top = _top_k(s, self.k)
            items = self.candidates[top]
            real = np.isfinite(np.take_along_axis(s, top, axis=1))
            keys = users[:, None] * self._n_items + items
            hits = _isin_sorted(keys, self._relevant) & real
            out[lo:hi] = _ndcg(hits, self._n_relevant[lo:hi], self.k)
        return float(out.mean())


class SampledRankingValidation(PeriodicValidation):
    """NDCG@k of each validation item among its sampled negatives (leave-one-out protocol).

    The ``loo`` protocol of ``PROTOCOL.md`` (He et al. 2017): with g negatives scoring higher
    than the held-out item and t tied, its rank is uniform on {g, ..., g+t}
    (``metrics.loo_metrics_from_counts``). Logged as ``val_loo_ndcg@k``; ``hit_rate`` holds
    the HR@k of the last evaluation.

    Args:
      pair_scorer: ``(user_idx [n], item_idx [n]) -> [n]`` scores at the current weights.
      val: the held-out rows (``user_idx``, ``item_idx``), one per user.
      negatives: ``user_idx``, ``item_idx`` of each validation user's sampled negatives.
      k: cut-off.
    """

    mode: Literal["max", "min"] = "max"

    def __init__(
        self,
        pair_scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
        val: pd.DataFrame,
        negatives: pd.DataFrame,
        *,
        k: int = 10,
    ) -> None:
        super().__init__()
        self.pair_scorer = pair_scorer
        self.k = int(k)
        self.name = f"val_loo_ndcg@{self.k}"
        users = val["user_idx"].to_numpy(dtype=np.int64)
        order = np.argsort(users, kind="stable")
        self.users = users[order]
        self.items = val["item_idx"].to_numpy(dtype=np.int64)[order]
        if len(self.users) and (np.diff(self.users) == 0).any():
            raise DataError("leave-one-out validation has several rows for one user")
        neg_users = negatives["user_idx"].to_numpy(dtype=np.int64)
        row = np.minimum(np.searchsorted(self.users, neg_users), max(len(self.users) - 1, 0))
        mine = self.users[row] == neg_users if len(self.users) else np.zeros(len(row), bool)
        self.neg_row = row[mine]
        self.neg_users = neg_users[mine]
        self.neg_items = negatives["item_idx"].to_numpy(dtype=np.int64)[mine]
        self.hit_rate = float("nan")

    def evaluate(self) -> float:
        if not len(self.users):
            return 0.0
        n = len(self.users)
        scores = np.asarray(
            self.pair_scorer(np.r_[self.users, self.neg_users], np.r_[self.items, self.neg_items]),
            dtype=np.float64,
        )
        pos, neg = scores[:n], scores[n:]
        higher = np.bincount(self.neg_row, weights=neg > pos[self.neg_row], minlength=n)
        tied = np.bincount(self.neg_row, weights=neg == pos[self.neg_row], minlength=n)
        per_user = loo_metrics_from_counts(
            higher.astype(np.int64), tied.astype(np.int64), (self.k,)
        )
        self.hit_rate = float(per_user[f"hr@{self.k}"].mean())
        return float(per_user[f"ndcg@{self.k}"].mean())


class RatingValidation(PeriodicValidation):
    """RMSE of predicted ratings on the validation rows (lower is better).

    Args:
      pair_scorer: ``(user_idx [n], item_idx [n]) -> [n]`` predicted ratings.
      val: validation rows with ``user_idx``, ``item_idx`` and ``rating``.
    """

    name = "val_rmse"
    mode: Literal["max", "min"] = "min"

    def __init__(
        self, pair_scorer: Callable[[np.ndarray, np.ndarray], np.ndarray], val: pd.DataFrame
    ) -> None:
        super().__init__()
        self.pair_scorer = pair_scorer
        self.users = val["user_idx"].to_numpy(dtype=np.int64)
        self.items = val["item_idx"].to_numpy(dtype=np.int64)
        self.ratings = val["rating"].to_numpy(dtype=np.float64)

    def evaluate(self) -> float:
        if not len(self.users):
            return 0.0
        pred = np.asarray(self.pair_scorer(self.users, self.items), dtype=np.float64)
        return float(np.sqrt(np.mean((pred - self.ratings) ** 2)))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[n, min(k, m)] column indices of the largest scores, best first (ties: lower index)."""
    n, m = scores.shape
    k = min(k, m)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(values.shape, dtype=bool)
    j = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[j] == values)


def _ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """[n] NDCG@k per user by ``recsys.evaluation.metrics.ndcg_at_k`` (PROTOCOL.md).

    Args:
      hits: [n, <=k] bool, position j holds whether the item at rank j+1 is relevant (fewer
        than k columns when there are fewer candidates).
      n_relevant: [n] relevant items per user.
    """
    padded = np.zeros((hits.shape[0], k), dtype=bool)
    padded[:, : hits.shape[1]] = hits
    return ndcg_at_k(padded, n_relevant, k)


class _EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing ``Epoch e/total`` across the loop's one-epoch fits."""

    def __init__(self, total_epochs: int) -> None:
        super().__init__()
        self._total = int(total_epochs)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.epochs = self._total


def _name(validation: PeriodicValidation | None) -> str | None:
    return None if validation is None else validation.name


def report_epoch(
    state: _LoopState, total: int, seconds: float, *, validation_name: str | None = None
) -> str:
    """One line per epoch on stderr, flushed at once, so that a training run under DVC or
    Dagster (whose output is a pipe, not a terminal) shows its progress while it runs:
    ``epoch 3/20: loss 0.4123, ndcg@10 0.3012 (best 0.3012 at 3), 1.9 s``."""
    parts = [f"epoch {state.epoch}/{total}: loss {state.history['loss'][-1]:.4g}"]
    if validation_name and state.history.get("val_epoch", [])[-1:] == [float(state.epoch)]:
        parts.append(
            f"{validation_name} {state.history[validation_name][-1]:.4g} "
            f"(best {state.best_value:.4g} at {state.best_epoch})"
        )
    parts.append(f"{seconds:.1f} s" + (" (early stop)" if state.stopped_early else ""))
    line = ", ".join(parts)
    print(line, file=sys.stderr, flush=True)
    return line


class _LastLogs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.logs = dict(logs or {})


# --- the loop ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSettings:
    """The loop's knobs, taken from a model's config."""

    epochs: int
    batch_size: int
    seed: int
    patience: int = 3
    """Evaluations without improvement before stopping (0: never stop early)."""
    eval_every: int = 1
    """Validate every this many epochs (and after the last)."""
    verbose: int = 0
    """0 silent, 1 progress bar, 2 one line per epoch (``model.fit``'s ``verbose``)."""
    restore_best: bool = True
    shuffle: bool = True
    pipeline: Literal["auto", "tf.data", "pydataset"] = "auto"

    def __post_init__(self) -> None:
        for key, low in (("epochs", 1), ("batch_size", 1), ("patience", 0), ("eval_every", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a checkpoint and its resumption."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "patience": self.patience,
            "eval_every": self.eval_every,
            "restore_best": self.restore_best,
            "shuffle": self.shuffle,
        }


@dataclass
class _LoopState:
    epoch: int = 0
    """Epochs completed."""
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    done: bool = False
    samples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    elapsed: list[float] = field(default_factory=list)
    """``train_seconds`` after each epoch."""


def fit_model(
    model: keras.Model,
    epoch_data: Callable[[int], EpochArrays],
    settings: TrainSettings,
    *,
    plan: DevicePlan,
    validation: PeriodicValidation | None = None,
    checkpoint_dir: Path | str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Train a compiled model epoch by epoch; return ``TrainResult`` fields.

    Args:
      model: built and compiled inside ``plan.scope()``.
      epoch_data: ``epoch (0-based) -> (inputs, targets)``; must be a pure function of the
        epoch (draw with ``epoch_rng``) for resumption to be exact.
      settings: epochs, batch size, seed, early stopping, verbosity.
      plan: from ``resolve_device``.
      validation: a ``PeriodicValidation`` such as ``RankingValidation`` or
        ``RatingValidation`` (None: no early stopping; the last epoch's weights are kept).
      checkpoint_dir: write ``<dir>/latest/`` after every epoch and resume from it when it
        exists (same model, same settings). A finished run's checkpoint returns at once.
      callbacks: extra Keras callbacks, run after validation in every epoch.

    Returns:
      ``{"epochs", "best_epoch", "samples_per_second", "history", "device", "extra"}``;
      ``history`` has ``loss`` per epoch and, with validation, the metric (e.g.
      ``val_ndcg@10``) with the 1-based epochs it was measured at in ``val_epoch``;
      ``extra["epoch_train_seconds"]`` the training seconds (validation excluded) after each
      epoch, for time-to-quality curves (not in ``history``: a resumed run's history equals
      an uninterrupted one's, its timings do not).

    Raises:
      TrainingError: non-finite loss, weights or validation metric; an incompatible checkpoint.
    """
    ckpt = Path(checkpoint_dir) / CHECKPOINT_SUBDIR if checkpoint_dir is not None else None
    state = _LoopState()
    best_weights: list[np.ndarray] | None = None
    resumed_from: int | None = None
    if ckpt is not None and (ckpt / "state.json").is_file():
        with plan.scope():
            state, best_weights = _read_checkpoint(ckpt, model, settings)
        resumed_from = state.epoch
    if validation is not None:
        validation.configure(settings.eval_every, settings.epochs)
        state.history.setdefault(validation.name, [])
        state.history.setdefault("val_epoch", [])
    capture = _LastLogs()
    cbs: list[keras.callbacks.Callback] = [NonFiniteGuard()]
    if validation is not None:
        cbs.append(validation)
    cbs += [*callbacks, capture]
    if settings.verbose:
        cbs.append(_EpochProgress(settings.epochs))
    session_samples, session_seconds = 0, 0.0

    while not state.done:
        epoch = state.epoch
        inputs, targets = epoch_data(epoch)
        seed = int(epoch_rng(settings.seed, epoch, _SHUFFLE).integers(0, 2**31 - 1))
        data = make_dataset(
            inputs,
            targets,
            batch_size=settings.batch_size,
            seed=seed,
            shuffle=settings.shuffle,
            pipeline=settings.pipeline,
        )
        start = time.perf_counter()
        eval_before = validation.seconds if validation is not None else 0.0
        with plan.scope():
            model.fit(
                data,
                epochs=epoch + 1,
                initial_epoch=epoch,
                verbose=settings.verbose,
                callbacks=cbs,
                shuffle=False,
            )
        seconds = time.perf_counter() - start
        if validation is not None:  # the callback ran inside fit: not training time
            seconds -= validation.seconds - eval_before
            state.eval_seconds += validation.seconds - eval_before
        session_samples += len(targets)
        session_seconds += seconds
        state.samples += len(targets)
        state.train_seconds += seconds
        logs = capture.logs
        state.history["loss"].append(float(np.asarray(logs.get("loss", np.nan))))
        # Training seconds so far (validation excluded): the x axis of time-to-quality curves.
        state.elapsed.append(round(state.train_seconds, 4))
        state.epoch = epoch + 1
        if validation is not None and validation.name in logs:
            value = float(np.asarray(logs[validation.name]))
            if not np.isfinite(value):
                raise TrainingError(
                    f"the validation metric {validation.name} is {value} after epoch {epoch + 1}",
                    fix="the scores are not finite: lower learning_rate",
                )
            state.history[validation.name].append(value)
            state.history["val_epoch"].append(float(epoch + 1))
            better = state.best_value is None or (
                value > state.best_value if validation.mode == "max" else value < state.best_value
            )
            if better:
                state.best_value, state.best_epoch, state.bad_evals = value, epoch + 1, 0
                best_weights = _snapshot(model)
            else:
                state.bad_evals += 1
                if settings.patience and state.bad_evals >= settings.patience:
                    state.stopped_early = True
        if not settings.verbose:  # verbose runs already show Keras' own progress
            report_epoch(state, settings.epochs, seconds, validation_name=_name(validation))
        if state.stopped_early or state.epoch >= settings.epochs:
            if settings.restore_best and best_weights is not None:
                _assign(model.variables, best_weights)
            state.done = True
        if ckpt is not None:
            with plan.scope():
                _write_checkpoint(ckpt, model, settings, state, best_weights)

    if session_seconds > 0:
        throughput: float | None = session_samples / session_seconds
    else:
        throughput = state.samples / state.train_seconds if state.train_seconds > 0 else None
    return {
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "samples_per_second": None if throughput is None else round(throughput, 1),
        "history": {k: list(v) for k, v in state.history.items()},
        "device": plan.description,
        "extra": {
            "stopped_early": state.stopped_early,
            "resumed_from_epoch": resumed_from,
            "train_seconds": round(state.train_seconds, 3),
            "epoch_train_seconds": list(state.elapsed),
            "eval_seconds": round(state.eval_seconds, 3),
            "best_value": state.best_value,
            "monitor": None if validation is None else validation.name,
            "device_plan": plan.as_dict(),
        },
    }


# --- checkpoints ------------------------------------------------------------------------------
def _snapshot(model: keras.Model) -> list[np.ndarray]:
    return [to_numpy(v) for v in model.variables]


def _assign(variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def _optimizer_variables(model: keras.Model) -> list[Any]:
    optimizer = model.optimizer
    if optimizer is None:
        return []
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(optimizer.variables)


def _shapes(variables: Sequence[Any]) -> list[list[int]]:
    return [[int(d) for d in v.shape] for v in variables]


def _write_checkpoint(
    path: Path,
    model: keras.Model,
    settings: TrainSettings,
    state: _LoopState,
    best_weights: list[np.ndarray] | None,
) -> None:
    """Replace ``path`` with the model's and optimizer's variables and the loop state."""
    opt_vars = _optimizer_variables(model)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings.fingerprint(),
        "model_shapes": _shapes(model.variables),
        "optimizer_shapes": _shapes(opt_vars),
        "state": dataclasses.asdict(state),
        "has_best": best_weights is not None,
    }
    with io.atomic_dir(path) as tmp:
        _save_arrays(tmp / "model.npz", _snapshot(model))
        _save_arrays(tmp / "optimizer.npz", [to_numpy(v) for v in opt_vars])
        if best_weights is not None:
            _save_arrays(tmp / "best.npz", best_weights)
        io.write_json(meta, tmp / "state.json")


def _read_checkpoint(
    path: Path, model: keras.Model, settings: TrainSettings
) -> tuple[_LoopState, list[np.ndarray] | None]:
    """Restore the variables written by ``_write_checkpoint``; return the loop state."""
    meta = io.read_json(path / "state.json")
    where = str(path)
    fix = "delete the checkpoint directory or train with the settings it was written with"
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"unsupported checkpoint format {meta.get('format')!r}", where=where)
    if meta["settings"] != settings.fingerprint():
        raise TrainingError(
            f"the checkpoint was written with other settings: {meta['settings']} != "
            f"{settings.fingerprint()}",
            where=where,
            fix=fix,
        )
    opt_vars = _optimizer_variables(model)
    if meta["model_shapes"] != _shapes(model.variables) or meta["optimizer_shapes"] != _shapes(
        opt_vars
    ):
        raise TrainingError(
            "the checkpoint holds a different model (variable shapes differ)", where=where, fix=fix
        )
    _assign(model.variables, _load_arrays(path / "model.npz"))
    _assign(opt_vars, _load_arrays(path / "optimizer.npz"))
    best = _load_arrays(path / "best.npz") if meta["has_best"] else None
    state = _LoopState(**meta["state"])
    return state, best


def _save_arrays(path: Path, arrays: Sequence[np.ndarray]) -> None:
    with io.atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays])


def _load_arrays(path: Path) -> list[np.ndarray]:
    if not path.is_file():
        raise TrainingError("checkpoint file missing", where=str(path))
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{j}"] for j in range(len(data.files))]
