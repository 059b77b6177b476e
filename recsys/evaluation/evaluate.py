"""Score a ``Recommender`` under the three protocols of ``../shared/benchmarks/PROTOCOL.md``.

Each ``evaluate_*`` talks to the model only through the public ``Recommender`` interface
(``recommend`` / ``score`` and its vocabulary), computes per-user values with
``recsys.evaluation.metrics``, and returns a frozen result holding the means, percentile
bootstrap CIs, the per-user arrays (for paired tests in the promotion gate) and the model's raw
output in the shape of the protocol's output file (``recommendations``, ``scores`` or
``predictions``). ``.to_dict()`` gives the JSON-ready summary without the big arrays.

This module writes no files: callers hand the frames to ``recsys.data.io``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import DataError, RecsysError
from recsys.evaluation import metrics as M
from recsys.models.base import Recommender
from recsys.schema import ITEM_ID, RATING, USER_ID

RANK: Final = "rank"
SCORE: Final = "score"
PREDICTION: Final = "prediction"


# --- results ------------------------------------------------------------------------------------
def _summary(
    values: dict[str, np.ndarray], n_boot: int, seed: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Means and bootstrap CIs; every metric resamples the same users (same seed)."""
    means = {k: float(np.mean(v)) for k, v in values.items()}
    return means, M.bootstrap_cis(values, n_boot=n_boot, seed=seed)


def _json_ci(ci: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
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
    """[n_users, list_length] recommended raw item ids, best first, -1 padded."""
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
        keep = (self.item_ids != M.PAD).ravel()
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
            "ci": _json_ci(self.ci),
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
            "ci": _json_ci(self.ci),
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
            "ci": _json_ci(self.ci),
        }


# --- protocols ----------------------------------------------------------------------------------
def evaluate_topk(
    model: Recommender,
    train: pd.DataFrame,
    test: pd.DataFrame,
    ks: Sequence[int] = (10, 20),
    *,
    list_length: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> TopKResult:
    """Full ranking: rank every train item for each evaluated user, seen items excluded.

    Evaluated users have >= 1 test row and >= 1 train row. Candidates are the distinct items
    of ``train``; each user's training items are excluded through ``exclude_seen=True``, so
    ``train`` must be what the model was fitted on. Test items absent from train stay in the
    denominators (n_u), as PROTOCOL.md requires.

    Args:
      model: a fitted recommender.
      train: [n, >= 2] interactions with ``user_id``, ``item_id``.
      test: [m, >= 2] held-out interactions; each row is a relevant item.
      ks: cut-offs; metric keys are ``f"{name}@{k}"``.
      list_length: length of the returned lists (default ``max(ks)``; the protocol's
        ``recommendations.csv`` holds 50).
      n_boot, seed: bootstrap resamples and seed for the CIs.

    Raises:
      DataError: no user has both train and test rows.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    length = max(max(ks), list_length or 0)
    train_users = np.unique(train[USER_ID].to_numpy(dtype=np.int64))
    candidates = np.unique(train[ITEM_ID].to_numpy(dtype=np.int64))
    test_users = test[USER_ID].to_numpy(dtype=np.int64)
    users = np.intersect1d(np.unique(test_users), train_users)
    if not len(users):
        raise DataError("no test user has a training interaction: nothing to evaluate")
    start = time.perf_counter()
    # Never ask for more items than there are candidates; pad to ``length`` here instead.
    asked = min(length, len(candidates))
    got_ids, got_scores = model.recommend(users, k=asked, exclude_seen=True, candidates=candidates)
    seconds = time.perf_counter() - start
    item_ids = np.full((len(users), length), M.PAD, dtype=np.int64)
    scores = np.full((len(users), length), -np.inf, dtype=np.float32)
    item_ids[:, :asked], scores[:, :asked] = got_ids, got_scores
    rows = np.searchsorted(users, test_users)
    evaluated = rows < len(users)
    evaluated[evaluated] = users[rows[evaluated]] == test_users[evaluated]
    relevant = M.Relevance.from_pairs(
        rows[evaluated], test[ITEM_ID].to_numpy(dtype=np.int64)[evaluated], len(users)
    )
    per_user = M.topk_metrics(item_ids, relevant, ks)
    means, cis = _summary(per_user, n_boot, seed)
    for k in ks:
        means[f"coverage@{k}"] = M.coverage_at_k(item_ids, k, len(candidates))
    return TopKResult(
        metrics=means,
        ci=cis,
        per_user=per_user,
        user_ids=users,
        item_ids=item_ids,
        scores=scores,
        ks=ks,
        n_items=len(candidates),
        recommend_seconds=round(seconds, 4),
    )


def evaluate_loo(
    model: Recommender,
    test: pd.DataFrame,
    negatives: pd.DataFrame,
    ks: Sequence[int] = (10,),
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> LooResult:
    """Leave-one-out: rank each user's held-out item among its sampled negatives.

    All pairs (held-out and negatives) are scored in one ``model.score`` call. With g negatives
    scoring strictly higher and t equal, the rank is uniform on {g, ..., g+t}
    (``metrics.loo_metrics_from_counts``). A pair with an id outside the model's vocabulary
    scores -inf: an unscorable held-out item is a miss, an unknown user gets the random-guess
    value.

    Args:
      model: a fitted recommender.
      test: [n_users, >= 2] one held-out ``user_id``, ``item_id`` row per user.
      negatives: [n_users * n_neg, >= 2] ``user_id``, ``item_id`` negatives (any count per
        user; every test user needs at least one).
      ks: cut-offs.

    Raises:
      DataError: a user with several test rows, or a test user without negatives.
    """
    ks = tuple(int(k) for k in ks)
    pos_users = test[USER_ID].to_numpy(dtype=np.int64)
    pos_items = test[ITEM_ID].to_numpy(dtype=np.int64)
    order = np.argsort(pos_users, kind="stable")
    pos_users, pos_items = pos_users[order], pos_items[order]
    if len(pos_users) and (np.diff(pos_users) == 0).any():
        raise DataError("leave-one-out test has several rows for one user")
    neg_users = negatives[USER_ID].to_numpy(dtype=np.int64)
    neg_items = negatives[ITEM_ID].to_numpy(dtype=np.int64)
    neg_row, mine = M.group_negatives(pos_users, neg_users)
    neg_users, neg_items = neg_users[mine], neg_items[mine]
    n_neg = np.bincount(neg_row, minlength=len(pos_users))
    if (n_neg == 0).any():
        missing = pos_users[n_neg == 0]
        raise DataError(
            f"{len(missing)} test user(s) have no negatives, e.g. {missing[:5].tolist()}"
        )
    users = np.r_[pos_users, neg_users]
    items = np.r_[pos_items, neg_items]
    start = time.perf_counter()
    scores, known = _score_known(model, users, items)
    seconds = time.perf_counter() - start
    if np.isnan(scores).any():
        raise RecsysError(f"the {model.name} model returned NaN scores")
    n = len(pos_users)
    higher, tied = M.loo_rank_counts_grouped(scores[:n], scores[n:], neg_row)
    per_user = M.loo_metrics_from_counts(higher, tied, ks)
    means, cis = _summary(per_user, n_boot, seed)
    # scores.csv: per user its held-out item, then its negatives (stable: given order).
    by_user = np.argsort(np.r_[np.arange(len(pos_users)), neg_row], kind="stable")
    frame = pd.DataFrame({USER_ID: users, ITEM_ID: items, SCORE: scores}).iloc[by_user]
    return LooResult(
        metrics=means,
        ci=cis,
        per_user=per_user,
        user_ids=pos_users,
        scores=frame.reset_index(drop=True),
        ks=ks,
        n_unscored=int((~known).sum()),
        score_seconds=round(seconds, 4),
    )


def evaluate_rating(
    model: Recommender,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    threshold: float = 4.0,
    clip: tuple[float, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> RatingResult:
    """Rating prediction: RMSE and MAE over every test row, plus "liked" classification.

    ``model.score`` predicts the pairs it can: the user has a training row, and the item has
    one too (or the model scores cold items). Every other row gets the fallback, the mean
    training rating, since PROTOCOL.md counts a missing prediction as an error.

    Args:
      model: a fitted explicit-feedback recommender (scores on the rating scale).
      train: [n, >= 3] ``user_id``, ``item_id``, ``rating``: the fallback's source.
      test: [m, >= 3] rows to predict.
      threshold: predicted >= threshold vs actual >= threshold for the classification metrics.
      clip: optional (low, high) rating range to clip predictions to.
      n_boot, seed: bootstrap over test rows for the RMSE/MAE CIs.

    Raises:
      DataError: empty test set or training ratings.
    """
    if test.empty or train.empty:
        raise DataError("rating evaluation needs non-empty train and test sets")
    fallback = float(train[RATING].to_numpy(dtype=np.float64).mean())
    users = test[USER_ID].to_numpy(dtype=np.int64)
    items = test[ITEM_ID].to_numpy(dtype=np.int64)
    actual = test[RATING].to_numpy(dtype=np.float64)
    warm = np.isin(users, train[USER_ID].to_numpy(dtype=np.int64))
    if not model.scores_cold_items:
        warm &= np.isin(items, train[ITEM_ID].to_numpy(dtype=np.int64))
    start = time.perf_counter()
    scores, known = _score_known(model, users, items, mask=warm)
    seconds = time.perf_counter() - start
    pred = np.where(known, scores.astype(np.float64), fallback)
    if clip is not None:
        pred = np.clip(pred, *clip)
    squared, absolute = (pred - actual) ** 2, np.abs(pred - actual)
    mse_lo, mse_hi = M.bootstrap_ci(squared, n_boot=n_boot, seed=seed)
    means = {"rmse": M.rmse(pred, actual), "mae": M.mae(pred, actual)}
    means.update(M.threshold_metrics(pred, actual, threshold))
    return RatingResult(
        metrics=means,
        # Percentile CIs commute with monotone maps: CI(RMSE) = sqrt(CI(MSE)).
        ci={
            "rmse": (float(np.sqrt(mse_lo)), float(np.sqrt(mse_hi))),
            "mae": M.bootstrap_ci(absolute, n_boot=n_boot, seed=seed),
        },
        predictions=pd.DataFrame({USER_ID: users, ITEM_ID: items, PREDICTION: pred}),
        per_row={"squared_error": squared, "absolute_error": absolute},
        threshold=float(threshold),
        fallback=fallback,
        n_fallback=int((~known).sum()),
        score_seconds=round(seconds, 4),
    )


def _score_known(
    model: Recommender, users: np.ndarray, items: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Score the pairs whose ids the model's vocabulary holds (and ``mask`` allows) in one call.

    ``model.score`` raises ``UnknownIdError`` for a whole batch if any id is unknown, so the
    known pairs are selected first.

    Returns:
      ([n] float32 scores, -inf where not scored; [n] bool scored).
    """
    vocab = model.vocab
    if vocab is None:
        raise RecsysError(f"the {model.name} model is not trained", fix="call fit() or load()")
    known = (vocab.encode_users(users) >= 0) & (vocab.encode_items(items) >= 0)
    if mask is not None:
        known &= mask
    scores = np.full(len(users), -np.inf, dtype=np.float32)
    if known.any():
        scores[known] = model.score(users[known], items[known])
    return scores, known


# --- cross-validation ---------------------------------------------------------------------------
class Evaluation(Protocol):
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
    evaluate: Callable[[Recommender, InteractionSplit], Evaluation],
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
        fit_seconds.append(model.fit(data, split).fit_seconds)
        per_fold.append({k: float(v) for k, v in evaluate(model, split).metrics.items()})
    names = list(per_fold[0])
    if any(list(f) != names for f in per_fold):
        raise ValueError("folds reported different metrics")
    table = np.array([[f[n] for n in names] for f in per_fold], dtype=np.float64)
    return CrossValResult(
        per_fold=tuple(per_fold),
        mean=dict(zip(names, table.mean(axis=0).tolist(), strict=True)),
        std=dict(zip(names, table.std(axis=0).tolist(), strict=True)),
        fit_seconds=tuple(fit_seconds),
    )
