"""Validation metrics the loop monitors for early stopping (``PeriodicValidation`` callbacks).

``RankingValidation`` (NDCG@k over a sample of validation users, full ranking of the training
items), ``SampledRankingValidation`` (leave-one-out NDCG@k among sampled negatives) and
``RatingValidation`` (RMSE). Rankings, tie rules and metric definitions are those of
``recsys.evaluation`` (``recsys.models.base.top_k``: ties broken by the lower index), so a
validation number means what the same number means in an evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import DataError
from recsys.evaluation.metrics import (
    group_negatives,
    loo_metrics_from_counts,
    loo_rank_counts_grouped,
    ndcg_at_k,
)
from recsys.models.base import top_k
from recsys.training.callbacks import PeriodicValidation
from recsys.training.core import STREAM_VAL_USERS, epoch_rng


class RankingValidation(PeriodicValidation):
    """NDCG@k of a full ranking of the candidate items for a sample of validation users.

    Seen (training) items are excluded; every validation item of a user is relevant, also one
    that is not a candidate (it still counts in the ideal DCG), as in ``PROTOCOL.md``.
    Users without a training interaction are left out.

    Args:
      scorer: ``(user_idx [u], item_idx [c]) -> [u, c]`` scores, the model's fast path; read
        at call time, so it sees the current weights.
      seen: [n_users, n_items] training interactions.
      val: validation rows with ``user_idx`` and ``item_idx``.
      candidates: item indices to rank (usually the items seen in training).
      k: cut-off.
      max_users: evaluate a seeded random sample of at most this many users.
      seed: for the user sample.
    """

    def __init__(
        self,
        scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
        seen: sp.spmatrix,
        val: pd.DataFrame,
        candidates: np.ndarray,
        *,
        k: int = 10,
        max_users: int = 1000,
        seed: int = 0,
        user_block: int = 256,
    ) -> None:
        super().__init__()
        self.scorer = scorer
        self.k = int(k)
        self.name = f"val_ndcg@{self.k}"
        self.user_block = int(user_block)
        csr = sp.csr_matrix(seen)
        n_items = csr.shape[1]
        self.candidates = np.unique(np.asarray(candidates, dtype=np.int64))
        vu = val["user_idx"].to_numpy(dtype=np.int64)
        vi = val["item_idx"].to_numpy(dtype=np.int64)
        users = np.unique(vu)
        users = users[np.diff(csr.indptr)[users] > 0]
        if len(users) > max_users:
            rng = epoch_rng(seed, 0, STREAM_VAL_USERS)
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        self.users = users
        keep = np.isin(vu, users)
        self._relevant = np.unique(vu[keep] * n_items + vi[keep])
        self._n_relevant = np.bincount(
            np.searchsorted(users, self._relevant // n_items), minlength=len(users)
        )
        self._n_items = n_items
        self._seen = np.asarray(csr[users][:, self.candidates].todense() != 0)

    def evaluate(self) -> float:
        """Mean NDCG@k over the sampled users (0.0 when there are none)."""
        if not len(self.users):
            return 0.0
        out = np.empty(len(self.users))
        for lo in range(0, len(self.users), self.user_block):
            hi = min(lo + self.user_block, len(self.users))
            users = self.users[lo:hi]
            s = np.array(self.scorer(users, self.candidates), dtype=np.float32)
            s[self._seen[lo:hi]] = -np.inf
            top = top_k(s, self.k)
            items = self.candidates[top]
            real = np.isfinite(np.take_along_axis(s, top, axis=1))
            keys = users[:, None] * self._n_items + items
            hits = _isin_sorted(keys, self._relevant) & real
            out[lo:hi] = _ndcg(hits, self._n_relevant[lo:hi], self.k)
        return float(out.mean())


class SampledRankingValidation(PeriodicValidation):
    """NDCG@k of each validation item among its sampled negatives (leave-one-out protocol).

    The ``loo`` protocol of ``PROTOCOL.md`` (He et al. 2017): with g negatives scoring higher
    than the held-out item and t tied, its rank is uniform on {g, ..., g+t}
    (``metrics.loo_metrics_from_counts``). Logged as ``val_loo_ndcg@k``; ``hit_rate`` holds
    the HR@k of the last evaluation.

    Args:
      pair_scorer: ``(user_idx [n], item_idx [n]) -> [n]`` scores at the current weights.
      val: the held-out rows (``user_idx``, ``item_idx``), one per user.
      negatives: ``user_idx``, ``item_idx`` of each validation user's sampled negatives.
      k: cut-off.
    """

    def __init__(
        self,
        pair_scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
        val: pd.DataFrame,
        negatives: pd.DataFrame,
        *,
        k: int = 10,
    ) -> None:
        super().__init__()
        self.pair_scorer = pair_scorer
        self.k = int(k)
        self.name = f"val_loo_ndcg@{self.k}"
        users = val["user_idx"].to_numpy(dtype=np.int64)
        order = np.argsort(users, kind="stable")
        self.users = users[order]
        self.items = val["item_idx"].to_numpy(dtype=np.int64)[order]
        if len(self.users) and (np.diff(self.users) == 0).any():
            raise DataError("leave-one-out validation has several rows for one user")
        neg_users = negatives["user_idx"].to_numpy(dtype=np.int64)
        self.neg_row, mine = group_negatives(self.users, neg_users)
        self.neg_users = neg_users[mine]
        self.neg_items = negatives["item_idx"].to_numpy(dtype=np.int64)[mine]
        self.hit_rate = float("nan")

    def evaluate(self) -> float:
        if not len(self.users):
            return 0.0
        n = len(self.users)
        scores = np.asarray(
            self.pair_scorer(np.r_[self.users, self.neg_users], np.r_[self.items, self.neg_items]),
            dtype=np.float64,
        )
        higher, tied = loo_rank_counts_grouped(scores[:n], scores[n:], self.neg_row)
        per_user = loo_metrics_from_counts(higher, tied, (self.k,))
        self.hit_rate = float(per_user[f"hr@{self.k}"].mean())
        return float(per_user[f"ndcg@{self.k}"].mean())


class RatingValidation(PeriodicValidation):
    """RMSE of predicted ratings on the validation rows (lower is better).

    Args:
      pair_scorer: ``(user_idx [n], item_idx [n]) -> [n]`` predicted ratings.
      val: validation rows with ``user_idx``, ``item_idx`` and ``rating``.
    """

    name = "val_rmse"
    mode: Literal["max", "min"] = "min"

    def __init__(
        self, pair_scorer: Callable[[np.ndarray, np.ndarray], np.ndarray], val: pd.DataFrame
    ) -> None:
        super().__init__()
        self.pair_scorer = pair_scorer
        self.users = val["user_idx"].to_numpy(dtype=np.int64)
        self.items = val["item_idx"].to_numpy(dtype=np.int64)
        self.ratings = val["rating"].to_numpy(dtype=np.float64)

    def evaluate(self) -> float:
        if not len(self.users):
            return 0.0
        pred = np.asarray(self.pair_scorer(self.users, self.items), dtype=np.float64)
        return float(np.sqrt(np.mean((pred - self.ratings) ** 2)))


def _isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(values.shape, dtype=bool)
    j = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[j] == values)


def _ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """[n] NDCG@k per user by ``recsys.evaluation.metrics.ndcg_at_k`` (PROTOCOL.md).

    Args:
      hits: [n, <=k] bool, position j holds whether the item at rank j+1 is relevant (fewer
        than k columns when there are fewer candidates).
      n_relevant: [n] relevant items per user.
    """
    padded = np.zeros((hits.shape[0], k), dtype=bool)
    padded[:, : hits.shape[1]] = hits
    return ndcg_at_k(padded, n_relevant, k)
