"""BiasedMF: ``r^_ui = mu + b_u + b_i + p_u . q_i`` by alternating least squares.

The rating-prediction baseline beside AutoRec (Protocol 3, ``bench/bench_rating.py``): ALS-WR
(Zhou et al. 2008, weighted-lambda), each user's (item's) ridge penalty ``l2`` times its number
of ratings; predictions are clipped to the training ratings' range. numpy only and
deterministic for a seed. It predicts ratings: ``recommend`` ranks by predicted rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.data import io
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed
from recsys.models.base import Recommender
from recsys.models.model_config import check_config_fields, resolve_config
from recsys.schema import RATING
from recsys.tuning.space import Choice, Float, Int, SearchSpace

__all__ = ["BiasedMF", "BiasedMFConfig"]


@dataclass(frozen=True)
class BiasedMFConfig:
    factors: int = 10
    l2: float = 0.1
    """ALS-WR: each user's (item's) ridge penalty is l2 times its number of ratings.
    factors and l2 were picked on the u1.base validation tenth (``tune_autorec.py --model
    biased_mf``): l2 in {0.03, 0.06, 0.1, 0.2} x factors in {10, 30}."""
    iterations: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        check_config_fields(
            self, "biased_mf", positive=("factors", "iterations"), non_negative=("l2",)
        )


class BiasedMF(Recommender):
    """Biased matrix factorisation of explicit ratings (see the module docstring)."""

    name: ClassVar[str] = "biased_mf"
    fit_cost: ClassVar[float] = 5.0
    requires: ClassVar[frozenset[str]] = frozenset({"ratings"})  # it regresses them
    task: ClassVar[str] = "rating"
    search_space: ClassVar[SearchSpace] = {  # recsys tune
        "factors": Choice((5, 10, 20, 50)),
        "l2": Float(0.01, 1.0, log=True),
        "iterations": Int(5, 30),
    }

    def __init__(self, config: BiasedMFConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(BiasedMFConfig, config, fields, self.name)
        self.params: tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        """``(mu, b_u [n_users], b_i [n_items], P [n_users, f], Q [n_items, f])``, float64."""
        self.range = (1.0, 5.0)

    def n_parameters(self) -> int:
        if self.params is None:
            return 0
        _, bu, bi, p, q = self.params
        return int(1 + bu.size + bi.size + p.size + q.size)

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        cfg = self.config
        train = split.train
        u = train[USER_IDX].to_numpy()
        i = train[ITEM_IDX].to_numpy()
        r = train[RATING].to_numpy(dtype=np.float64)
        n_u, n_i = data.vocab.n_users, data.vocab.n_items
        mu = float(r.mean())
        self.range = (float(r.min()), float(r.max()))
        rng = np.random.default_rng(cfg.seed)
        p = rng.normal(0, 0.1, (n_u, cfg.factors))
        q = rng.normal(0, 0.1, (n_i, cfg.factors))
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        # Stored values are rating positions + 1 (an explicit 0 could be dropped).
        pos = np.arange(1, len(r) + 1)
        by_user = sp.csr_matrix((pos, (u, i)), shape=(n_u, n_i))
        by_item = sp.csr_matrix((pos, (i, u)), shape=(n_i, n_u))
        for _ in range(cfg.iterations):
            _als_side(by_user, r - mu - bi[i], q, p, bu, cfg.l2)
            _als_side(by_item, r - mu - bu[u], p, q, bi, cfg.l2)
        self.params = (mu, bu, bi, p, q)
        return {"epochs": cfg.iterations}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        mu, bu, bi, p, q = self._trained(self.params)
        out = mu + bu[user_idx, None] + bi[None, item_idx] + p[user_idx] @ q[item_idx].T
        return np.clip(out, *self.range).astype(np.float32)

    def item_embeddings(self) -> np.ndarray | None:
        """[n_items, factors] item factors ``Q``."""
        return self._trained(self.params)[4].astype(np.float32)

    def _save(self, path: Path) -> None:
        mu, bu, bi, p, q = self._trained(self.params)
        for name, array in (("user_bias", bu), ("item_bias", bi), ("user_factors", p)):
            io.write_array(array, path / f"{name}.npy")
        io.write_array(q, path / "item_factors.npy")
        io.write_json({"mu": mu, "range": list(self.range)}, path / "biased_mf.json")

    def _load(self, path: Path) -> None:
        meta = io.read_json(path / "biased_mf.json")
        self.range = (float(meta["range"][0]), float(meta["range"][1]))
        self.params = (
            float(meta["mu"]),
            io.read_array(path / "user_bias.npy"),
            io.read_array(path / "item_bias.npy"),
            io.read_array(path / "user_factors.npy"),
            io.read_array(path / "item_factors.npy"),
        )


def _als_side(
    rows: sp.csr_matrix,
    target: np.ndarray,
    fixed: np.ndarray,
    solve: np.ndarray,
    bias: np.ndarray,
    l2: float,
) -> None:
    """Solve ``[bias_j, solve_j]`` of every row j in place: ridge regression of ``target`` on
    ``[1, fixed]`` over the row's ratings (``rows.data`` holds rating positions + 1)."""
    k = fixed.shape[1]
    for j in range(rows.shape[0]):
        lo, hi = rows.indptr[j], rows.indptr[j + 1]
        if lo == hi:
            continue
        x = np.hstack([np.ones((hi - lo, 1)), fixed[rows.indices[lo:hi]]])
        a = x.T @ x + l2 * (hi - lo) * np.eye(k + 1)
        sol = np.linalg.solve(a, x.T @ target[rows.data[lo:hi] - 1])
        bias[j], solve[j] = sol[0], sol[1:]
