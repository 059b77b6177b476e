"""Tuning on the validation files only: the ``Tunable`` hook, EASE's lambda grid, ``Tuning``.

A model class may define ``tune(request: TuningRequest)`` (a classmethod) returning the
constructor fields it chose; see ``recsys.models.tuning.Tunable``. EASE is tuned with
``tune_ease_lambda`` over ``EASE_L2_GRID``. Candidates are scored by the shared
``recsys.evaluation.harness.score`` on the validation files' held-out rows, never the test set.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from recsys.benchmark.config import EASE_L2_GRID, TUNE_METRIC
from recsys.benchmark.splits import SplitData
from recsys.evaluation.evaluate import (
    RatingResult,
)
from recsys.evaluation.harness import (
    Heldout,
    ProtocolName,
    score,
)
from recsys.models.base import Recommender
from recsys.models.tuning import EvaluateFn, TuningRequest
from recsys.models.tuning import Tunable as Tunable  # re-exported by recsys.benchmark

if TYPE_CHECKING:
    from recsys.tuning.study import TuneSettings


@dataclass(frozen=True)
class Tuning:
    """How a model's hyper-parameters were chosen on the validation files."""

    method: str
    metric: str
    chosen: dict[str, Any]
    """Constructor fields merged over the configured ones before the final fit."""
    scores: dict[str, float]
    """Validation score per candidate, where the tuner reports them."""
    seconds: float
    files: dict[str, dict[str, Any]]
    """The validation files used (path, sha256, rows): the test file is never among them."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Scored:
    metrics: dict[str, float]


def validation_evaluator(protocol: ProtocolName, val: SplitData) -> EvaluateFn:
    """The ``evaluate_fn`` that tuners get: the protocol's metric on the validation rows."""

    def evaluate(
        model: Recommender, train: pd.DataFrame, heldout: pd.DataFrame, ks: tuple[int, ...]
    ) -> Any:
        rows = Heldout(train, heldout, val.negatives, val.rating_range())
        ev = score(model, rows, protocol, ks=ks, n_boot=1)
        if isinstance(ev, RatingResult):
            return _Scored({"neg_rmse": -ev.metrics["rmse"], **ev.metrics})
        return ev

    return evaluate


def tune_model(
    cls: type[Recommender],
    fields: Mapping[str, Any],
    val: SplitData,
    protocol: ProtocolName,
) -> Tuning | None:
    """Tune ``cls`` on the validation split; None when it has nothing to tune."""
    from recsys.models.baselines import EASE, tune_ease_lambda

    metric = TUNE_METRIC[protocol]
    evaluate = validation_evaluator(protocol, val)
    start = time.perf_counter()
    hook = getattr(cls, "tune", None)
    if callable(hook):
        chosen = dict(hook(TuningRequest(val.data, val.data.split, evaluate, metric, dict(fields))))
        scores: dict[str, float] = {}
        method = f"{cls.__name__}.tune"
    elif issubclass(cls, EASE):
        configured = float(cls(**fields).config.l2)  # the configured lambda is a candidate too
        result = tune_ease_lambda(
            val.data, val.data.split, (*EASE_L2_GRID, configured), evaluate, metric=metric
        )
        chosen = {"l2": result.best_l2}
        scores = {str(k): float(v) for k, v in result.scores.items()}
        method = "tune_ease_lambda"
    else:
        return None
    seconds = round(time.perf_counter() - start, 4)
    return Tuning(method, metric, chosen, scores, seconds, val.files)


def study_tuning(
    name: str,
    cls: type[Recommender],
    fields: Mapping[str, Any],
    val: SplitData,
    protocol: ProtocolName,
    settings: TuneSettings,
    *,
    log: Any = None,
) -> Tuning | None:
    """``recsys tune``'s study for ``cls`` on the validation split, within ``settings``' budget
    (``recsys.tuning.study``); None when the model declares no search space."""
    from recsys.tuning.study import tune_model as run_study

    study = run_study(name, cls, fields, val, protocol, settings, log=log)
    if study.skipped:
        return None
    scores = {str(t.number): float(t.value) for t in study.trials if t.value is not None}
    return Tuning(
        f"optuna ({len(study.trials)} trials, {study.source})",
        study.metric,
        dict(study.settings),
        scores,
        round(study.seconds, 4),
        val.files,
    )
