"""Watching a training run from outside it: a tuner's pruning and wall-clock budget.

``fit_model`` is called deep inside each model's ``fit``; a tuner cannot pass it a callback.
Instead it installs a watcher for the duration of one fit (``watching(watcher)``, a context
variable, so nothing leaks into other fits or threads). The loop calls the watcher after every
validation with the 1-based epoch and the validation value oriented so that higher is better
(an RMSE is negated); when the watcher answers True the loop stops at once by raising
``RunStopped`` (the fit is abandoned: a pruned trial has no use for its weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from recsys.errors import RecsysError

__all__ = ["EpochWatcher", "RunStopped", "current_watcher", "watching"]

EpochWatcher = Callable[[int, float], bool]
"""``(epoch (1-based), validation value, higher is better) -> stop now``."""

_WATCHER: ContextVar[EpochWatcher | None] = ContextVar("recsys_epoch_watcher", default=None)


class RunStopped(RecsysError):
    """The watcher stopped the run after ``epoch`` (a pruned tuning trial, a spent budget)."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training stopped by its watcher after epoch {epoch} (value {value:g})")
        self.epoch, self.value = epoch, value


def current_watcher() -> EpochWatcher | None:
    return _WATCHER.get()


@contextmanager
def watching(watcher: EpochWatcher) -> Iterator[None]:
    """Install ``watcher`` for the fits run inside the ``with`` block."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)
