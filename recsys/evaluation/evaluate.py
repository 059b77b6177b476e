"""Score a ``Recommender`` under the three protocols of ``../shared/benchmarks/PROTOCOL.md``.

Each ``evaluate_*`` talks to the model only through the public ``Recommender`` interface
(``recommend`` / ``score`` and its vocabulary), computes per-user values with
``recsys.evaluation.metrics``, and returns a frozen result of ``recsys.evaluation.results``
holding the means, percentile bootstrap CIs, the per-user arrays (for paired tests in the
promotion gate) and the model's raw output in the shape of the protocol's output file.
``recsys.evaluation.harness`` fits models and picks the protocol; ``cross_validate`` and the
result classes stay importable from here.

This module writes no files: callers hand the frames to ``recsys.data.io``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataError, RecsysError
from recsys.evaluation import metrics as M
from recsys.evaluation.results import PREDICTION as PREDICTION
from recsys.evaluation.results import RANK as RANK
from recsys.evaluation.results import SCORE as SCORE
from recsys.evaluation.results import LooResult as LooResult
from recsys.evaluation.results import RatingResult as RatingResult
from recsys.evaluation.results import TopKResult as TopKResult
from recsys.evaluation.results import summarize
from recsys.models.base import Recommender
from recsys.models.ranking import top_k
from recsys.schema import (
    INT_IDS,
    ITEM_ID,
    RATING,
    USER_ID,
    id_array,
    id_kind,
    is_pad,
    pad_ids,
)


def __getattr__(name: str) -> Any:
    """``cross_validate`` and ``CrossValResult`` moved to ``recsys.evaluation.harness`` (which
    imports this module, hence the lazy lookup)."""
    if name in ("cross_validate", "CrossValResult"):
        from recsys.evaluation import harness

        return getattr(harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    A model scored on data newer than its own (the champion against an update's challenger)
    is scored as it would serve: a user it does not know gets its popularity ranking (the
    service's cold-start answer) without their ``train`` items, and an item it does not know
    is never ranked (a miss when it is relevant).

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
    train_users = np.unique(id_array(train[USER_ID]))
    candidates = np.unique(id_array(train[ITEM_ID]))
    test_users = id_array(test[USER_ID])
    users = np.intersect1d(np.unique(test_users), train_users)
    if not len(users):
        raise DataError("no test user has a training interaction: nothing to evaluate")
    start = time.perf_counter()
    item_ids = pad_ids((len(users), length), id_kind(candidates))
    scores = np.full((len(users), length), -np.inf, dtype=np.float32)
    known = model.known_users(users)
    rankable = candidates[model.known_items(candidates)]
    # Never ask for more items than there are candidates; pad to ``length`` here instead.
    asked = min(length, len(rankable))
    if known.any() and asked:
        got_ids, got_scores = model.recommend(
            users[known], k=asked, exclude_seen=True, candidates=rankable
        )
        item_ids[known, :asked], scores[known, :asked] = got_ids, got_scores
    if not known.all() and asked:
        cold = users[~known]
        got_ids, got_scores = popularity_lists(model, rankable, cold, train, asked)
        item_ids[~known, :asked], scores[~known, :asked] = got_ids, got_scores
    seconds = time.perf_counter() - start
    rows = np.searchsorted(users, test_users)
    evaluated = rows < len(users)
    evaluated[evaluated] = users[rows[evaluated]] == test_users[evaluated]
    ranked, relevant_items = _integer_ids(item_ids, id_array(test[ITEM_ID])[evaluated])
    relevant = M.Relevance.from_pairs(rows[evaluated], relevant_items, len(users))
    per_user = M.topk_metrics(ranked, relevant, ks)
    means, cis = summarize(per_user, n_boot, seed)
    for k in ks:
        means[f"coverage@{k}"] = M.coverage_at_k(ranked, k, len(candidates))
    return TopKResult(
        metrics=means, ci=cis, per_user=per_user,
        user_ids=users, item_ids=item_ids, scores=scores,
        ks=ks, n_items=len(candidates), recommend_seconds=round(seconds, 4),
    )  # fmt: skip


def popularity_lists(
    model: Recommender, items: np.ndarray, users: np.ndarray, train: pd.DataFrame, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """([n, k] raw ids, [n, k] scores): ``items`` (known to ``model``) by its training
    popularity for each of ``users`` (unknown to it), their ``train`` items removed."""
    popularity = model.item_popularity()[model.encode_items(items)].astype(np.float32)
    scores = np.broadcast_to(popularity, (len(users), len(items))).copy()
    mine = train[np.isin(id_array(train[USER_ID]), users)]
    rows = np.searchsorted(users, id_array(mine[USER_ID]))
    cols = np.searchsorted(items, id_array(mine[ITEM_ID]))
    found = cols < len(items)
    found[found] = items[cols[found]] == id_array(mine[ITEM_ID])[found]
    scores[rows[found], cols[found]] = -np.inf
    top = top_k(scores, k)
    best = np.take_along_axis(scores, top, axis=1)
    ids = items[top]
    if np.isneginf(best).any():  # a user who has seen nearly everything: pad, as recommend does
        ids = np.where(np.isneginf(best), pad_ids(ids.shape, id_kind(items)), ids)
    return ids, best


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
    pos_users = id_array(test[USER_ID])
    pos_items = id_array(test[ITEM_ID])
    order = np.argsort(pos_users, kind="stable")
    pos_users, pos_items = pos_users[order], pos_items[order]
    if len(pos_users) and (pos_users[1:] == pos_users[:-1]).any():
        raise DataError("leave-one-out test has several rows for one user")
    neg_users = id_array(negatives[USER_ID])
    neg_items = id_array(negatives[ITEM_ID])
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
    means, cis = summarize(per_user, n_boot, seed)
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
    users = id_array(test[USER_ID])
    items = id_array(test[ITEM_ID])
    actual = test[RATING].to_numpy(dtype=np.float64)
    warm = np.isin(users, id_array(train[USER_ID]))
    if not model.scores_cold_items:
        warm &= np.isin(items, id_array(train[ITEM_ID]))
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


def _integer_ids(ranked: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The metrics' integer item ids: integer ids as they are; string ids as their rank among
    the distinct ids of both arrays (padding ``""`` -> ``metrics.PAD``), which keeps every
    equality the metrics test."""
    if id_kind(ranked) == INT_IDS:
        return ranked, relevant
    pad = is_pad(ranked)
    universe = np.unique(np.concatenate([ranked[~pad], relevant]))
    filled = np.where(pad, universe[0] if len(universe) else "", ranked)
    codes = np.where(pad, M.PAD, np.searchsorted(universe, filled))
    return codes.astype(np.int64), np.searchsorted(universe, relevant).astype(np.int64)


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
