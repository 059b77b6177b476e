"""One path to fit a model and score it on held-out rows, shared by every caller.

``recsys train`` / ``recsys evaluate`` (``recsys.pipeline``: two stages in two processes, the
model saved in between, so they call ``fit`` and ``score`` separately), ``recsys benchmark``
(``recsys.benchmark``: each fold is a ``run_trial``; its tuning scores candidates with
``score`` on the validation files), ``cross_validate`` and the ``bench/tune_*.py`` drivers. What
differs between them, which rows are held out and which protocol scores them, is a ``Heldout``
and a protocol name; the fitting and the scoring are these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import numpy as np
import pandas as pd

from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError
from recsys.evaluation.evaluate import evaluate_loo, evaluate_rating, evaluate_topk
from recsys.evaluation.results import Evaluation, TopKResult
from recsys.models.base import Recommender, TrainResult

ProtocolName = Literal["topk", "loo", "rating"]
DEFAULT_KS: Final[Mapping[str, tuple[int, ...]]] = {"topk": (10, 20), "loo": (10,), "rating": ()}
"""Cut-offs per protocol when a caller names none (PROTOCOL.md's)."""


@dataclass(frozen=True, eq=False)
class Heldout:
    """What a fitted model is scored on, in raw ids."""

    train: pd.DataFrame
    """The interactions the model was fitted on: its seen items (excluded from rankings), the
    candidates (``topk``) and the fallback rating (``rating``)."""
    test: pd.DataFrame
    """Held-out rows: relevant items (``topk``), one per user (``loo``) or rows to predict."""
    negatives: pd.DataFrame | None = None
    """``loo``: each test user's sampled negatives."""
    clip: tuple[float, float] | None = None
    """``rating``: the range predictions are clipped to."""


def fit(model: Recommender, data: Processed, split: InteractionSplit | None = None) -> TrainResult:
    """Fit ``model`` on ``split`` (default ``data.split``): ``train`` to learn, ``val`` to tune."""
    return model.fit(data, split)


def score(
    model: Recommender,
    heldout: Heldout,
    protocol: ProtocolName = "topk",
    *,
    ks: Sequence[int] | None = None,
    list_length: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Score a fitted model on ``heldout`` under ``protocol`` (``recsys.evaluation.evaluate``).

    Args:
      ks: cut-offs (default ``DEFAULT_KS[protocol]``; unused by ``rating``).
      list_length: ``topk`` only: length of the returned lists (default ``max(ks)``).
      n_boot, seed: bootstrap resamples and seed of the CIs.

    Raises:
      ConfigError: an unknown protocol, or ``loo`` without negatives.
    """
    if protocol not in DEFAULT_KS:
        raise ConfigError(f"unknown protocol '{protocol}'", fix=f"use one of {tuple(DEFAULT_KS)}")
    cutoffs = DEFAULT_KS[protocol] if ks is None else tuple(ks)
    if protocol == "topk":
        return evaluate_topk(
            model,
            heldout.train,
            heldout.test,
            cutoffs,
            list_length=list_length,
            n_boot=n_boot,
            seed=seed,
        )
    if protocol == "loo":
        if heldout.negatives is None:
            raise ConfigError("protocol 'loo' needs the sampled negatives")
        return evaluate_loo(
            model, heldout.test, heldout.negatives, cutoffs, n_boot=n_boot, seed=seed
        )
    return evaluate_rating(
        model, heldout.train, heldout.test, clip=heldout.clip, n_boot=n_boot, seed=seed
    )


FIT_FACTS = ("fit_seconds", "epochs", "best_epoch", "samples_per_second", "device", "n_parameters")
"""The ``TrainResult`` fields that ``Trial.fit_facts`` reports, in this order."""


@dataclass(frozen=True, eq=False)
class Trial:
    """One fit of a model and its evaluation."""

    config: dict[str, Any]
    """``model.config_dict()`` after the fit (tuning hooks may have filled fields)."""
    train: TrainResult
    evaluation: Evaluation

    @property
    def output_seconds(self) -> float:
        """Time to produce the protocol's output (recommend, score or predict)."""
        ev = self.evaluation
        return ev.recommend_seconds if isinstance(ev, TopKResult) else ev.score_seconds

    def fit_facts(self) -> dict[str, Any]:
        """The fit's facts as the tuning drivers print them."""
        return {"config": self.config, **{name: getattr(self.train, name) for name in FIT_FACTS}}


def run_trial(
    model: Recommender,
    data: Processed,
    heldout: Heldout,
    protocol: ProtocolName = "topk",
    *,
    split: InteractionSplit | None = None,
    ks: Sequence[int] | None = None,
    list_length: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Trial:
    """``fit`` then ``score``: a fresh model fitted on ``split`` (default ``data.split``) and
    scored on ``heldout``, which must hold none of the rows it was fitted on."""
    result = fit(model, data, split)
    evaluation = score(
        model, heldout, protocol, ks=ks, list_length=list_length, n_boot=n_boot, seed=seed
    )
    return Trial(model.config_dict(), result, evaluation)


def fold_statistics(
    per_fold: Sequence[Mapping[str, float]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and population standard deviation (ddof=0, as Surprise's) of each metric over folds.

    Raises:
      ValueError: no folds, or folds reporting different metrics.
    """
    if not per_fold:
        raise ValueError("cross_validate needs at least one fold")
    names = list(per_fold[0])
    if any(list(f) != names for f in per_fold):
        raise ValueError("folds reported different metrics")
    table = np.array([[f[n] for n in names] for f in per_fold], dtype=np.float64)
    return (
        dict(zip(names, table.mean(axis=0).tolist(), strict=True)),
        dict(zip(names, table.std(axis=0).tolist(), strict=True)),
    )


class Scored(Protocol):
    """What ``cross_validate`` needs of an evaluation result: its mean metrics."""

    @property
    def metrics(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class CrossValResult:
    """Metrics per fold and their mean and standard deviation over folds."""

    per_fold: tuple[dict[str, float], ...]
    mean: dict[str, float]
    std: dict[str, float]
    """Population standard deviation over folds (ddof=0, as Surprise's ``cross_validate``)."""
    fit_seconds: tuple[float, ...] = field(default=())

    @property
    def n_folds(self) -> int:
        return len(self.per_fold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_folds": self.n_folds,
            "mean": dict(self.mean),
            "std": dict(self.std),
            "per_fold": [dict(f) for f in self.per_fold],
            "fit_seconds": list(self.fit_seconds),
        }


def cross_validate(
    make_model: Callable[[], Recommender],
    folds: Sequence[tuple[Processed, InteractionSplit]],
    evaluate: Callable[[Recommender, InteractionSplit], Scored],
) -> CrossValResult:
    """Fit a fresh model on each fold's training set and evaluate it on that fold.

    Example (PROTOCOL ``rating``, the five official ML-100K folds)::

        cv = cross_validate(
            lambda: SVD(...),
            [(data, data.split) for data in (u1, u2, u3, u4, u5)],
            lambda model, s: evaluate_rating(model, s.train, s.test),
        )
        cv.mean["rmse"], cv.std["rmse"]

    For a ``kfold`` preprocessing, ``folds = [(data, f) for f in data.folds]``.

    Args:
      make_model: returns a new, unfitted model (called once per fold).
      folds: (data, split) pairs; the model is fitted with ``model.fit(data, split)``.
      evaluate: scores a fitted model on a split (any ``evaluate_*`` wrapped in a lambda).

    Raises:
      ValueError: no folds, or folds reporting different metrics.
    """
    if not folds:
        raise ValueError("cross_validate needs at least one fold")
    per_fold: list[dict[str, float]] = []
    fit_seconds: list[float] = []
    for data, split in folds:
        model = make_model()
        seconds = fit(model, data, split).fit_seconds
        assert seconds is not None  # a fit in this process is timed
        fit_seconds.append(seconds)
        per_fold.append({k: float(v) for k, v in evaluate(model, split).metrics.items()})
    mean, std = fold_statistics(per_fold)
    return CrossValResult(
        per_fold=tuple(per_fold), mean=mean, std=std, fit_seconds=tuple(fit_seconds)
    )
