"""The tuning hook a model class may define, and the one request every hook receives.

``recsys benchmark`` (``recsys.benchmark.tuning.tune_model``) calls ``cls.tune(request)`` on a
model class that defines it (a classmethod, see ``Tunable``); the hook fits candidates on
``request.val_split.train``, scores them with ``request.evaluate_fn`` on
``request.val_split.test`` (the validation files' held-out rows, never the real test set) and
returns the constructor fields it chose, which the benchmark merges over ``request.config``
before the final fit. ``EvaluateFn`` is also what ``baselines.tune_ease_lambda`` scores with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from recsys.data.preprocess import InteractionSplit, Processed
    from recsys.models.base import Recommender

__all__ = ["EvaluateFn", "Tunable", "TuningRequest"]


class _MetricsResult(Protocol):
    @property
    def metrics(self) -> Mapping[str, float]: ...


class EvaluateFn(Protocol):
    """``(model, train, heldout, ks) -> result`` with ``result.metrics[metric]`` to maximise:
    ``evaluate_topk`` of ``recsys.evaluation``, or a stand-in."""

    def __call__(
        self,
        model: Recommender,
        train: pd.DataFrame,
        heldout: pd.DataFrame,
        ks: tuple[int, ...],
        /,
    ) -> _MetricsResult: ...


@dataclass(frozen=True)
class TuningRequest:
    """What a ``tune`` hook gets: the data, the validation split, how to score a candidate,
    the metric to maximise and the fields the model would otherwise be built with."""

    data: Processed
    """The preprocessed data (vocabulary) ``val_split`` belongs to."""
    val_split: InteractionSplit
    """Train + held-out validation rows (in ``test``): never the real test split."""
    evaluate_fn: EvaluateFn
    metric: str
    """A key of ``evaluate_fn``'s ``result.metrics``, e.g. ``ndcg@10``."""
    config: Mapping[str, Any]
    """The constructor fields the hook starts from."""


class Tunable(Protocol):
    """A model class with the tuning hook: ``tune`` is a classmethod that returns the
    constructor fields it chose (empty: nothing to tune for this request)."""

    @classmethod
    def tune(cls, request: TuningRequest) -> Mapping[str, Any]: ...
