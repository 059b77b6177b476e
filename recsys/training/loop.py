"""The shared Keras training loop: ``fit_model`` trains every deep recommender.

One ``model.fit`` call per epoch (so each epoch gets its freshly sampled data), validation every
``eval_every`` epochs with a ``PeriodicValidation`` (``recsys.training.validation``), early
stopping after ``patience`` evaluations without improvement, the best weights restored, one
progress line per epoch, and a checkpoint every epoch to ``checkpoint_dir``
(``recsys.training.checkpoint``), from which a later call resumes with the same result as an
uninterrupted run. A non-finite loss or weight raises ``TrainingError`` naming the epoch and
batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from recsys.training.callbacks import (
    EpochProgress,
    LastLogs,
    NonFiniteGuard,
    PeriodicValidation,
    monitor_name,
    report_epoch,
)
from recsys.training.checkpoint import (
    CHECKPOINT_SUBDIR,
    assign,
    read_checkpoint,
    snapshot,
    write_checkpoint,
)
from recsys.training.core import STREAM_SHUFFLE, EpochArrays, TrainingError, epoch_rng
from recsys.training.data import make_dataset
from recsys.training.device import DevicePlan
from recsys.training.state import LoopState, TrainSettings
from recsys.training.watch import RunStopped, current_watcher


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
      RunStopped: the watcher installed with ``recsys.training.watch.watching`` said stop.
    """
    ckpt = Path(checkpoint_dir) / CHECKPOINT_SUBDIR if checkpoint_dir is not None else None
    state = LoopState()
    best_weights: list[np.ndarray] | None = None
    resumed_from: int | None = None
    if ckpt is not None and (ckpt / "state.json").is_file():
        with plan.scope():
            state, best_weights = read_checkpoint(ckpt, model, settings)
        resumed_from = state.epoch
    if validation is not None:
        validation.configure(settings.eval_every, settings.epochs)
        state.history.setdefault(validation.name, [])
        state.history.setdefault("val_epoch", [])
    capture = LastLogs()
    cbs: list[keras.callbacks.Callback] = [NonFiniteGuard()]
    if validation is not None:
        cbs.append(validation)
    cbs += [*callbacks, capture]
    if settings.verbose:
        cbs.append(EpochProgress(settings.epochs))
    session_samples, session_seconds = 0, 0.0

    while not state.done:
        epoch = state.epoch
        inputs, targets = epoch_data(epoch)
        seed = int(epoch_rng(settings.seed, epoch, STREAM_SHUFFLE).integers(0, 2**31 - 1))
        data = make_dataset(
            inputs,
            targets,
            batch_size=settings.batch_size,
            seed=seed,
            shuffle=settings.shuffle,
            pipeline=settings.pipeline,
            group=settings.group,
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
            watcher = current_watcher()  # a tuner's pruning (recsys.training.watch)
            if watcher is not None and watcher(epoch + 1, _higher_better(value, validation)):
                raise RunStopped(epoch + 1, value)
            better = state.best_value is None or (
                value > state.best_value if validation.mode == "max" else value < state.best_value
            )
            if better:
                state.best_value, state.best_epoch, state.bad_evals = value, epoch + 1, 0
                best_weights = snapshot(model)
            else:
                state.bad_evals += 1
                if settings.patience and state.bad_evals >= settings.patience:
                    state.stopped_early = True
        if not settings.verbose:  # verbose runs already show Keras' own progress
            report_epoch(state, settings.epochs, seconds, validation_name=monitor_name(validation))
        if state.stopped_early or state.epoch >= settings.epochs:
            if settings.restore_best and best_weights is not None:
                assign(model.variables, best_weights)
            state.done = True
        if ckpt is not None:
            with plan.scope():
                write_checkpoint(ckpt, model, settings, state, best_weights)

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


def _higher_better(value: float, validation: PeriodicValidation) -> float:
    return value if validation.mode == "max" else -value
