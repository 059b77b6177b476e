"""What every part of the training loop shares: input names, seeds and their streams, errors.

Seeds: ``set_seeds`` seeds Python, numpy and the backend; everything random in an epoch
(negatives, shuffling, the validation users) is drawn from ``epoch_rng(seed, epoch, stream)``,
so epoch ``e`` sees the same data whether the run started at epoch 0 or resumed at ``e``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from recsys.errors import RecsysError

USER: str = "user"
"""Input name of the user index in every pointwise model (int32 [batch])."""
ITEM: str = "item"
"""Input name of the item index (int32 [batch])."""

# Independent random streams of one seed (numpy SeedSequence entropy [seed, stream, epoch]).
STREAM_NEGATIVES, STREAM_SHUFFLE, STREAM_VAL_USERS = range(3)

EpochArrays = tuple[dict[str, np.ndarray], np.ndarray]
"""One epoch of training data: ({input name: [n] array}, [n] float32 targets)."""


class TrainingError(RecsysError):
    """Training diverged (non-finite loss or weights) or cannot continue from a checkpoint."""


def to_numpy(value: Any) -> np.ndarray:
    """A Keras variable or backend tensor as a numpy array (a copy, never a live view)."""
    value = getattr(value, "value", value)
    if hasattr(value, "numpy"):  # TensorFlow: its __array__ warns under numpy 2
        return np.array(value.numpy())
    return np.array(keras.ops.convert_to_numpy(value))


def set_seeds(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and the backend (weight init)."""
    keras.utils.set_random_seed(int(seed))


def epoch_rng(seed: int, epoch: int, stream: int = STREAM_NEGATIVES) -> np.random.Generator:
    """The numpy generator of ``stream`` in epoch ``epoch`` (0-based): a pure function of the
    three, so a resumed run draws exactly what an uninterrupted one would."""
    return np.random.default_rng([int(seed), int(stream), int(epoch)])
