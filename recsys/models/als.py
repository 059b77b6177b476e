"""Weighted ALS: implicit-feedback matrix factorisation (Hu, Koren and Volinsky, ICDM 2008).

Every (user, item) pair is a target ``p_ui`` (1 for a training interaction, 0 otherwise) with
a confidence ``c_ui`` (1 for the pairs never observed, more for those observed, growing with
the interaction's strength ``r_ui``: the ``rating`` column, a play count or click count for
implicit feedback, a star rating for explicit). ALS minimises
``sum_ui c_ui (p_ui - x_u . y_i)^2 + reg (|x|^2 + |y|^2)`` by alternating closed-form solves for
the user and the item factors; ``score(u, i) = x_u . y_i``.

The solver is the ``implicit`` library's (``implicit.cpu.als.AlternatingLeastSquares``, the
conjugate-gradient variant of Takacs et al. 2011 by default), kept on the CPU. It reads the
confidence matrix as given (its own ``alpha`` stays 1): ``confidence`` chooses
``linear`` ``c = 1 + alpha r`` (the paper's eq. 6), ``log`` ``c = 1 + alpha log(1 + r / eps)``
(its eq. 7, for heavy-tailed play counts) or ``binary`` ``c = 1 + alpha`` (strength ignored).

Determinism: the initial factors come from ``seed`` (``random_state``), and each ALS half-step
solves every user (item) row independently in a thread of its own, so the thread count does not
change the arithmetic; BLAS is limited to one thread while fitting (``threadpoolctl``; implicit
warns that a BLAS thread pool slows it down), so the Gram matrix ``Y'Y`` of each step is summed
in one order. Same seed, data and library build: the same factors, bit for bit (checked by the
contract suite). A different BLAS library or CPU instruction set may change the last bits.

Cold start: a user without training interactions has no factors to speak of; it is scored with
the items' training popularity (the ``mostpop`` answer). An item without training interactions
gets a zero vector (score 0) and is outside the default candidates (``scores_cold_items`` False).

Defaults chosen by hand on the ml100k-u1 *validation* files only (``val_train.tsv`` /
``val_test.tsv``, NDCG@10; 60 settings of factors 16-128, regularization 0.01-20, the three
confidences and alpha 0.25-10): 64 factors, regularization 20, ``log`` confidence with alpha
0.5, 15 iterations (0.257; binary and linear confidence within 0.003 of it, EASE 0.259). The
regularization is the setting that matters; ``recsys tune`` should choose it per data set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recsys.data import io
from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError, RecsysError
from recsys.models.base import Recommender, interaction_matrix, resolve_config
from recsys.schema import RATING
from recsys.tuning.space import Choice, Float, Int, SearchSpace

if TYPE_CHECKING:
    from recsys.models.fold_in import Growth

__all__ = ["ALS", "ALSConfig", "confidence_matrix"]


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 64
    regularization: float = 20.0
    """L2 weight ``reg`` on every factor (implicit's ``regularization``, not scaled by the
    number of interactions). With 64 factors on ml100k-u1 validation: 0.202 NDCG@10 at 1,
    0.217 at 5, 0.257 at 20: too little of it overfits badly, so the default errs high."""
    alpha: float = 0.5
    """Confidence scale: ``c = 1 + alpha * f(r)`` for an observed pair."""
    confidence: Literal["linear", "log", "binary"] = "log"
    """``f(r)``: ``r`` (linear), ``log(1 + r / epsilon)`` (log) or 1 (binary)."""
    epsilon: float = 1.0
    """Scale of the ``log`` confidence (the paper's epsilon)."""
    iterations: int = 15
    use_cg: bool = True
    """Conjugate-gradient solves (implicit's default, faster); False: exact Cholesky solves."""
    num_threads: int = 0
    """Threads of the solver; 0 or more than the usable cores: every usable core."""
    seed: int = 20240101

    def __post_init__(self) -> None:
        for key in ("factors", "iterations"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"als.{key} must be a positive integer, got {value!r}")
        if not (self.regularization >= 0 and self.alpha > 0 and self.epsilon > 0):
            raise ConfigError(
                "als needs regularization >= 0, alpha > 0 and epsilon > 0, got "
                f"{self.regularization}, {self.alpha}, {self.epsilon}"
            )
        if self.confidence not in ("linear", "log", "binary"):
            raise ConfigError(
                f"als.confidence must be linear, log or binary, got {self.confidence!r}"
            )
        if self.num_threads < 0:
            raise ConfigError(f"als.num_threads must be >= 0, got {self.num_threads}")


def confidence_matrix(strength: sp.csr_matrix, cfg: ALSConfig) -> sp.csr_matrix:
    """[n_users, n_items] float32 CSR of ``c_ui`` for the observed pairs (see the module
    docstring); a non-positive strength counts as the weakest observation (``r = 0``)."""
    c = strength.tocsr().astype(np.float32, copy=True)
    r = np.maximum(c.data, 0.0)
    if cfg.confidence == "linear":
        f = r
    elif cfg.confidence == "log":
        f = np.log1p(r / cfg.epsilon)
    else:
        f = np.ones_like(r)
    c.data = (1.0 + cfg.alpha * f).astype(np.float32)
    return c


def usable_threads(requested: int) -> int:
    """``requested`` bounded by the cores this process may run on (0: all of them)."""
    cores = len(os.sched_getaffinity(0))
    return cores if requested <= 0 else min(requested, cores)


class ALS(Recommender):
    """Weighted ALS on the training interactions' strengths (see the module docstring)."""

    name = "als"
    search_space: ClassVar[SearchSpace] = {  # recsys tune
        "factors": Choice((16, 32, 64, 128, 256)),
        # unscaled L2: the useful range grows with the data (20 on ml100k-u1 validation)
        "regularization": Float(1e-2, 300.0, log=True),
        "alpha": Float(0.1, 100.0, log=True),
        "confidence": Choice(("linear", "log", "binary")),
        "iterations": Int(5, 30),
    }

    def __init__(self, config: ALSConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(ALSConfig, config, fields, self.name)
        self.user_factors: np.ndarray | None = None
        """[n_users, factors] float32; zero rows for users without training interactions."""
        self.item_factors: np.ndarray | None = None
        """[n_items, factors] float32; zero rows for items without training interactions."""
        self.popularity: np.ndarray | None = None
        """[n_items] float32 training interactions per item: the cold users' scores."""
        self._cold_users: np.ndarray | None = None
        """[n_users] bool: no training interaction (set by ``_fit`` and ``_load``)."""

    def n_parameters(self) -> int:
        if self.user_factors is None or self.item_factors is None:
            return 0
        return int(self.user_factors.size + self.item_factors.size)

    def item_embeddings(self) -> np.ndarray | None:
        return self.item_factors

    def user_embeddings(self, user_idx: np.ndarray) -> np.ndarray:
        """[n, factors] user vectors (``u . v`` is the score, for retrieval)."""
        return self._params()[0][np.asarray(user_idx, dtype=np.int64)]

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        cfg = self.config
        strength = interaction_matrix(split.train, data.vocab, values=RATING)
        conf = confidence_matrix(strength, cfg)
        threads = usable_threads(cfg.num_threads)
        with threadpool_limits(1, "blas"):
            solver = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=1.0,  # the confidence is already in ``conf``
                dtype=np.float32,
                use_cg=cfg.use_cg,
                iterations=cfg.iterations,
                num_threads=threads,
                random_state=cfg.seed,
            )
            solver.fit(conf, show_progress=False)
        self._cold_users = self._seen_matrix().getnnz(axis=1) == 0
        users_seen = ~self._cold_users
        self.user_factors = np.where(users_seen[:, None], solver.user_factors, 0.0).astype(
            np.float32
        )
        self.item_factors = np.where(self._train_mask()[:, None], solver.item_factors, 0.0).astype(
            np.float32
        )
        self.popularity = np.asarray(self._seen_matrix().getnnz(axis=0), dtype=np.float32)
        return {
            "epochs": cfg.iterations,
            "extra": {
                "threads": threads,
                "confidence": cfg.confidence,
                "mean_confidence": round(float(conf.data.mean()), 4) if conf.nnz else 1.0,
                "cold_users": int((~users_seen).sum()),
            },
        }

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        pu, qi, pop = self._params()
        out = np.asarray(pu[user_idx] @ qi[item_idx].T, dtype=np.float32)
        cold = self._trained(self._cold_users)[user_idx]
        if cold.any():  # no history: the popularity order (mostpop's answer)
            out[cold] = pop[item_idx][None, :]
        return out

    def _save(self, path: Path) -> None:
        pu, qi, pop = self._params()
        io.write_array(pu, path / "user_factors.npy")
        io.write_array(qi, path / "item_factors.npy")
        io.write_array(pop, path / "popularity.npy")

    def _load(self, path: Path) -> None:
        self.user_factors = io.read_array(path / "user_factors.npy")
        self.item_factors = io.read_array(path / "item_factors.npy")
        self.popularity = io.read_array(path / "popularity.npy")
        self._cold_users = self._seen_matrix().getnnz(axis=1) == 0

    def _fold_in(self, growth: Growth) -> None:
        """New users' vectors: the ALS user step against the trained item factors (implicit's
        Cholesky least squares, ``recalculate_user``); known users keep theirs."""
        from implicit.cpu.als import AlternatingLeastSquares

        pu, qi, _ = self._params()
        super()._fold_in(growth)
        vocab, new_users, users, items = growth.vocab, growth.new_users, growth.users, growth.items
        grown = np.zeros((vocab.n_users, pu.shape[1]), dtype=np.float32)
        grown[growth.old_rows] = pu
        if len(new_users):
            rows = vocab.encode_users(users)
            pick = np.isin(rows, new_users)
            values = sp.csr_matrix(  # one row per new user, in the order of new_users
                (
                    growth.strength[pick],
                    (np.searchsorted(new_users, rows[pick]), vocab.encode_items(items[pick])),
                ),
                shape=(len(new_users), vocab.n_items),
            )
            solver = AlternatingLeastSquares(
                factors=pu.shape[1],
                regularization=self.config.regularization,
                alpha=1.0,
                dtype=np.float32,
                use_cg=False,
                num_threads=1,
            )
            solver.item_factors = qi
            grown[new_users] = solver.recalculate_user(
                np.arange(len(new_users)), confidence_matrix(values, self.config)
            )
        self.user_factors = grown
        self._cold_users = self._seen_matrix().getnnz(axis=1) == 0

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.user_factors is None or self.item_factors is None or self.popularity is None:
            raise RecsysError("the als model is not trained", fix="call fit() or load()")
        return self.user_factors, self.item_factors, self.popularity
