"""The shared Keras training loop: every deep recommender (NeuMF, AutoRec, content, hybrid,
two-tower) trains through ``fit_model``. One module per responsibility:

- ``core``: input names, ``set_seeds`` / ``epoch_rng`` (one random stream per purpose and
  epoch, so a resumed run draws what an uninterrupted one would), ``TrainingError``.
- ``device``: ``resolve_device`` -> ``DevicePlan`` (CPU/GPU, mixed precision, XLA, mirrored).
- ``data``: ``NegativeSampler``, ``PointwiseEpochs``, ``make_dataset`` (tf.data or PyDataset;
  ``group``: softmax groups of a positive and its negatives, shuffled and batched whole).
- ``losses``: ``GroupSoftmaxCrossEntropy`` (sampled softmax over each group).
- ``callbacks``: ``NonFiniteGuard``, ``PeriodicValidation``, progress lines (``report_epoch``).
- ``validation``: ``RankingValidation``, ``SampledRankingValidation``, ``RatingValidation``.
- ``state``: ``TrainSettings`` and the loop state; ``checkpoint``: resumable checkpoints.
- ``loop``: ``fit_model``; ``watch``: a watcher that sees each validation value and may stop
  the run (a tuner's pruning, ``recsys.tuning``).

No file paths here except the checkpoint directory a caller passes in. ``recsys.train``
re-exports this API under its old import path.
"""

from recsys.training.callbacks import NonFiniteGuard, PeriodicValidation, report_epoch
from recsys.training.core import (
    ITEM,
    USER,
    EpochArrays,
    TrainingError,
    epoch_rng,
    set_seeds,
    to_numpy,
)
from recsys.training.data import ArrayBatches, NegativeSampler, PointwiseEpochs, make_dataset
from recsys.training.device import (
    DeviceError,
    DevicePlan,
    describe_device,
    resolve_device,
    visible_gpus,
)
from recsys.training.loop import fit_model
from recsys.training.state import TrainSettings
from recsys.training.validation import (
    RankingValidation,
    RatingValidation,
    SampledRankingValidation,
)
from recsys.training.watch import EpochWatcher, RunStopped, watching

__all__ = [
    "ITEM",
    "USER",
    "ArrayBatches",
    "DeviceError",
    "DevicePlan",
    "EpochArrays",
    "EpochWatcher",
    "NegativeSampler",
    "NonFiniteGuard",
    "PeriodicValidation",
    "PointwiseEpochs",
    "RankingValidation",
    "RatingValidation",
    "RunStopped",
    "SampledRankingValidation",
    "TrainSettings",
    "TrainingError",
    "describe_device",
    "epoch_rng",
    "fit_model",
    "make_dataset",
    "report_epoch",
    "resolve_device",
    "set_seeds",
    "to_numpy",
    "visible_gpus",
    "watching",
]
