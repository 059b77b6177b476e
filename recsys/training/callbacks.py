"""The loop's Keras callbacks: divergence guard, periodic validation hook, progress and logs.

``NonFiniteGuard`` raises ``TrainingError`` naming the epoch and batch of a non-finite loss or
weight; ``PeriodicValidation`` is the base of the validation metrics in
``recsys.training.validation``; ``report_epoch`` prints the one flushed progress line per
epoch that a run under DVC or Dagster shows while it runs.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

import keras
import numpy as np

from recsys.training.core import TrainingError, to_numpy
from recsys.training.state import LoopState


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


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing ``Epoch e/total`` across the loop's one-epoch fits."""

    def __init__(self, total_epochs: int) -> None:
        super().__init__()
        self._total = int(total_epochs)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.epochs = self._total


def monitor_name(validation: PeriodicValidation | None) -> str | None:
    return None if validation is None else validation.name


def report_epoch(
    state: LoopState, total: int, seconds: float, *, validation_name: str | None = None
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


class LastLogs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.logs = dict(logs or {})
