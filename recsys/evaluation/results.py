"""What the protocol evaluations return: frozen results with means, CIs and per-user values.

``TopKResult``, ``LooResult`` and ``RatingResult`` hold the means, percentile bootstrap CIs,
the per-user (per-row) arrays for paired tests, and the model's raw output in the shape of the
protocol's output file; ``.to_dict()`` gives the JSON-ready summary without the big arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.evaluation import metrics as M
from recsys.schema import ITEM_ID, USER_ID, is_pad

RANK: Final = "rank"
SCORE: Final = "score"
PREDICTION: Final = "prediction"


def summarize(
    values: dict[str, np.ndarray], n_boot: int, seed: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Means and bootstrap CIs; every metric resamples the same users (same seed)."""
    means = {k: float(np.mean(v)) for k, v in values.items()}
    return means, M.bootstrap_cis(values, n_boot=n_boot, seed=seed)


def json_ci(ci: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    return {k: [float(lo), float(hi)] for k, (lo, hi) in ci.items()}


@dataclass(frozen=True, eq=False)
class TopKResult:
    """Full-ranking evaluation (PROTOCOL ``topk``)."""

    metrics: dict[str, float]
    """``{"ndcg@10": mean, "recall@10": ..., "coverage@10": ...}`` in ``REFERENCE.md`` order."""
    ci: dict[str, tuple[float, float]]
    """Bootstrap CI per per-user metric (coverage is one number over users: no CI)."""
    per_user: dict[str, np.ndarray]
    """[n_users] float64 per metric, row i = ``user_ids[i]``."""
    user_ids: np.ndarray
    """[n_users] evaluated raw user ids, ascending."""
    item_ids: np.ndarray
    """[n_users, list_length] recommended raw item ids, best first, padded with -1 (integer
    ids) or ``""`` (string ids: ``recsys.schema.ID_PAD``)."""
    scores: np.ndarray
    """[n_users, list_length] float32 scores, -inf at padding."""
    ks: tuple[int, ...]
    n_items: int
    """Candidate items: the distinct items in train (the coverage denominator)."""
    recommend_seconds: float

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def recommendations(self) -> pd.DataFrame:
        """``recommendations.csv`` rows: user_id, item_id, rank (1-based), score; no padding."""
        n, k = self.item_ids.shape
        keep = ~is_pad(self.item_ids).ravel()
        return pd.DataFrame(
            {
                USER_ID: np.repeat(self.user_ids, k)[keep],
                ITEM_ID: self.item_ids.ravel()[keep],
                RANK: np.tile(np.arange(1, k + 1), n)[keep],
                SCORE: self.scores.ravel()[keep],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "topk",
            "ks": list(self.ks),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "recommend_seconds": self.recommend_seconds,
            "metrics": dict(self.metrics),
            "ci": json_ci(self.ci),
        }


@dataclass(frozen=True, eq=False)
class LooResult:
    """Leave-one-out evaluation with sampled negatives (PROTOCOL ``loo``)."""

    metrics: dict[str, float]
    """``{"hr@10": mean, "ndcg@10": mean}``."""
    ci: dict[str, tuple[float, float]]
    per_user: dict[str, np.ndarray]
    """[n_users] float64 per metric, row i = ``user_ids[i]``."""
    user_ids: np.ndarray
    """[n_users] raw user ids, ascending."""
    scores: pd.DataFrame
    """``scores.csv`` rows: user_id, item_id, score; per user the held-out item, then its
    negatives in the order given. Pairs the model cannot score (ids outside its vocabulary)
    have score -inf."""
    ks: tuple[int, ...]
    n_unscored: int
    """Pairs with an id outside the model's vocabulary (scored -inf)."""
    score_seconds: float

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "loo",
            "ks": list(self.ks),
            "n_users": self.n_users,
            "n_unscored": self.n_unscored,
            "score_seconds": self.score_seconds,
            "metrics": dict(self.metrics),
            "ci": json_ci(self.ci),
        }


@dataclass(frozen=True, eq=False)
class RatingResult:
    """Rating prediction (PROTOCOL ``rating``)."""

    metrics: dict[str, float]
    """``{"rmse", "mae", "accuracy", "precision", "recall", "f1"}``; the last four at
    ``threshold``."""
    ci: dict[str, tuple[float, float]]
    """Bootstrap CIs of ``rmse`` and ``mae`` (resampling test rows)."""
    predictions: pd.DataFrame
    """``predictions.csv`` rows: user_id, item_id, prediction, in test order."""
    per_row: dict[str, np.ndarray]
    """``{"squared_error", "absolute_error"}``: [n_rows] float64, for paired tests."""
    threshold: float
    fallback: float
    """Prediction used for pairs the model cannot score (the training mean rating)."""
    n_fallback: int
    score_seconds: float

    @property
    def n_rows(self) -> int:
        return len(self.predictions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "rating",
            "n_rows": self.n_rows,
            "threshold": self.threshold,
            "fallback": self.fallback,
            "n_fallback": self.n_fallback,
            "score_seconds": self.score_seconds,
            "metrics": dict(self.metrics),
            "ci": json_ci(self.ci),
        }


Evaluation = TopKResult | LooResult | RatingResult
"""The result of any protocol."""
