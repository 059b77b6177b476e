"""Classic collaborative baselines: most-popular, item-kNN (cosine) and EASE (Steck 2019).

Every deep model has to beat these on the same split (``benchmarks/REFERENCE.md``). They are
numpy/scipy only, closed form or one sparse product, and deterministic. All of them read the
training interactions as a binary user x item matrix ``X``: every training row is a positive
interaction whatever its rating, for explicit and implicit feedback alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from recsys.data import io
from recsys.data.preprocess import InteractionSplit, Processed
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.models.base import Recommender, resolve_config, top_k
from recsys.models.ease_solve import EASESolver, ease_from_gram, ease_weights
from recsys.models.ranking import interaction_matrix
from recsys.models.tuning import EvaluateFn
from recsys.tuning.space import Float, Int, SearchSpace

__all__ = [
    "EASE",
    "ItemKNN",
    "MostPopular",
    "binary_interactions",
    "ease_from_gram",
    "ease_weights",
    "knn_weights",
    "resolve_config",
    "tune_ease_lambda",
]
# ``resolve_config`` lives in ``recsys.models.base``, ``ease_from_gram`` and ``ease_weights`` in
# ``recsys.models.ease_solve``; re-exported for old imports.

C = TypeVar("C")

SIMILARITY_BLOCK_ELEMENTS = 1 << 24
"""Dense co-occurrence entries per block when pruning item-kNN neighbours (64 MiB float32)."""


def binary_interactions(seen: sp.csr_matrix) -> sp.csr_matrix:
    """[n_users, n_items] float32 CSR with 1.0 for every stored training interaction."""
    x = seen.tocsr().astype(np.float32, copy=True)
    x.eliminate_zeros()
    x.data[:] = 1.0
    return x


# --- most popular ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MostPopularConfig:
    """No tunables: the ranking is the training interaction count."""


class MostPopular(Recommender):
    """score(u, i) = number of training interactions of item i, the same for every user.

    The non-personalised floor of every table; ties go to the lower item index (``top_k``).
    """

    name = "mostpop"

    def __init__(self, config: MostPopularConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(MostPopularConfig, config, fields, self.name)
        self.counts: np.ndarray | None = None
        """[n_items] float32 training interactions per item."""

    def n_parameters(self) -> int:
        return 0 if self.counts is None else len(self.counts)

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        x = binary_interactions(self._seen_matrix())
        self.counts = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        return {"epochs": 1}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        counts = self._counts()[item_idx]
        return np.broadcast_to(counts, (len(user_idx), len(item_idx))).copy()

    def _save(self, path: Path) -> None:
        io.write_array(self._counts(), path / "counts.npy")

    def _load(self, path: Path) -> None:
        self.counts = io.read_array(path / "counts.npy")

    def _counts(self) -> np.ndarray:
        if self.counts is None:
            raise RecsysError("the mostpop model is not trained", fix="call fit() or load()")
        return self.counts


# --- item kNN -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemKNNConfig:
    k: int = 100
    """Neighbours kept per item (REFERENCE.md: cosine, k=100)."""
    shrink: float = 0.0
    """Added to the cosine denominator: damps similarities resting on few co-occurrences."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.shrink < 0:
            raise ValueError(f"itemknn needs k >= 1 and shrink >= 0, got {self.k}, {self.shrink}")


class ItemKNN(Recommender):
    """Item-based kNN over the binary user x item training matrix ``X``.

    ``sim(i, j) = c_ij / (sqrt(n_i) sqrt(n_j) + shrink)`` with ``c_ij`` the number of users who
    interacted with both and ``n_i`` those who interacted with i (cosine for ``shrink = 0``),
    ``sim(i, i) = 0``. Each target item i keeps its ``k`` most similar items ``N_k(i)`` (ties:
    lower index); ``score(u, i) = sum_{j in seen(u) and N_k(i)} sim(i, j)``, i.e. ``X @ W`` with
    ``W[j, i] = sim(i, j)`` for ``j in N_k(i)``.
    """

    name = "itemknn"
    search_space: ClassVar[SearchSpace] = {  # recsys tune
        "k": Int(10, 1000, log=True),
        "shrink": Float(0.0, 200.0),
    }

    def __init__(self, config: ItemKNNConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(ItemKNNConfig, config, fields, self.name)
        self.weights: sp.csr_matrix | None = None
        """[n_items, n_items] float32 CSR ``W``: column i holds the neighbours of item i."""

    def n_parameters(self) -> int:
        return 0 if self.weights is None else int(self.weights.nnz)

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        self.weights = knn_weights(
            binary_interactions(self._seen_matrix()), self.config.k, self.config.shrink
        )
        return {"epochs": 1, "extra": {"nnz": int(self.weights.nnz)}}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        x = binary_interactions(self._seen_matrix()[user_idx])
        w = self._weights()[:, item_idx]
        return np.asarray((x @ w).toarray(), dtype=np.float32)

    def _save(self, path: Path) -> None:
        w = self._weights()
        io.write_array(w.indptr.astype(np.int64), path / "weights_indptr.npy")
        io.write_array(w.indices.astype(np.int64), path / "weights_indices.npy")
        io.write_array(w.data.astype(np.float32), path / "weights_data.npy")

    def _load(self, path: Path) -> None:
        n = self._vocab().n_items
        self.weights = sp.csr_matrix(
            (
                io.read_array(path / "weights_data.npy"),
                io.read_array(path / "weights_indices.npy"),
                io.read_array(path / "weights_indptr.npy"),
            ),
            shape=(n, n),
        )

    def _weights(self) -> sp.csr_matrix:
        if self.weights is None:
            raise RecsysError("the itemknn model is not trained", fix="call fit() or load()")
        return self.weights


def knn_weights(x: sp.csr_matrix, k: int, shrink: float = 0.0) -> sp.csr_matrix:
    """[n_items, n_items] CSR ``W`` with ``W[j, i] = sim(i, j)`` for the top-``k`` j of item i.

    The cosine co-occurrence is computed a block of target items at a time (dense block of at
    most ``SIMILARITY_BLOCK_ELEMENTS``), so memory stays bounded for large catalogues; only
    positive similarities are kept.

    Args:
      x: [n_users, n_items] binary interactions.
      k: neighbours per item.
      shrink: added to the cosine denominator.
    """
    n_items = x.shape[1]
    xt = x.T.tocsr()  # [n_items, n_users]
    norms = np.sqrt(np.asarray(x.sum(axis=0), dtype=np.float64).ravel())
    block = max(1, SIMILARITY_BLOCK_ELEMENTS // max(n_items, 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n_items, block):
        hi = min(lo + block, n_items)
        co = np.asarray((xt[lo:hi] @ x).toarray(), dtype=np.float64)  # [b, n_items] c_ij
        denom = norms[lo:hi, None] * norms[None, :] + shrink
        sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0).astype(np.float32)
        sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        top = top_k(sim, k)  # [b, k] neighbour indices j of target items lo..hi-1
        top_sim = np.take_along_axis(sim, top, axis=1)
        keep = top_sim > 0
        targets = np.broadcast_to(np.arange(lo, hi)[:, None], top.shape)
        rows.append(top[keep])
        cols.append(targets[keep])
        vals.append(top_sim[keep])
    w = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    w.sort_indices()
    return w


# --- EASE -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EASEConfig:
    l2: float = 500.0
    """lambda of ``(X^T X + lambda I)^-1``; 500 was tuned on ml100k-u1 validation
    (REFERENCE.md). Grows with the data set: re-tune with ``tune_ease_lambda``."""

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ValueError(f"ease needs l2 > 0, got {self.l2}")


class EASE(Recommender):
    """Embarrassingly shallow autoencoder (Steck, WWW 2019), closed form.

    ``P = (X^T X + lambda I)^-1``, ``B = I - P diag(1 / diag(P))`` (so ``diag(B) = 0``),
    ``score(u, .) = X_u B``. ``B`` is dense over the items seen in training (items never seen
    score 0): memory ``4 m^2`` bytes, so up to a few 10^4 items. Solved by
    ``recsys.models.ease_solve.EASESolver``: through the users (Woodbury) when they are fewer
    than half the items, else through the items' Gram matrix.
    """

    name = "ease"
    fit_cost = 3.0
    search_space: ClassVar[SearchSpace] = {"l2": Float(1.0, 1e5, log=True)}  # recsys tune

    def __init__(self, config: EASEConfig | None = None, **fields: Any) -> None:
        super().__init__()
        self.config = resolve_config(EASEConfig, config, fields, self.name)
        self.weights: np.ndarray | None = None
        """[m, m] float32 ``B`` over the m training items."""
        self.items: np.ndarray | None = None
        """[m] item indices that rows/columns of ``weights`` stand for (ascending)."""
        self.solver: EASESolver | None = None
        """Set by ``tune_ease_lambda`` only: the solve of its training matrix, shared by every
        candidate lambda; such a model scores from it and never forms ``weights``."""

    def n_parameters(self) -> int:
        return 0 if self.weights is None else int(self.weights.size)

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        self.items = np.flatnonzero(self._train_mask())
        x = binary_interactions(self._seen_matrix())[:, self.items]
        if self.solver is None:
            self.weights = EASESolver(x).weights(self.config.l2)
        elif not self.solver.same_matrix(x):
            raise RecsysError("the shared EASE solve is of another training matrix")
        return {"epochs": 1, "extra": {"l2": self.config.l2, "n_train_items": len(self.items)}}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        items = self._trained(self.items)
        x = binary_interactions(self._seen_matrix()[user_idx])[:, items]
        if self.solver is not None:
            full = self.solver.scores(x, self.config.l2)  # [n_u, m]
        else:
            full = np.asarray(x @ self._params()[0], dtype=np.float32)
        pos = np.searchsorted(items, item_idx)
        known = (pos < len(items)) & (items[np.minimum(pos, len(items) - 1)] == item_idx)
        out = np.zeros((len(user_idx), len(item_idx)), dtype=np.float32)
        out[:, known] = full[:, pos[known]]
        return out

    def _save(self, path: Path) -> None:
        weights, items = self._params()
        io.write_array(weights, path / "weights.npy")
        io.write_array(items.astype(np.int64), path / "items.npy")

    def _load(self, path: Path) -> None:
        self.weights = io.read_array(path / "weights.npy")
        self.items = io.read_array(path / "items.npy")

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        if self.weights is None or self.items is None:
            raise RecsysError("the ease model is not trained", fix="call fit() or load()")
        return self.weights, self.items


@dataclass(frozen=True)
class LambdaTuning:
    """Outcome of ``tune_ease_lambda``: the chosen lambda and the score of every candidate."""

    best_l2: float
    scores: dict[float, float]
    metric: str


def tune_ease_lambda(
    data: Processed,
    val_split: InteractionSplit,
    grid: Iterable[float],
    evaluate_fn: EvaluateFn,
    *,
    metric: str = "ndcg@10",
    k: int = 10,
) -> LambdaTuning:
    """Pick EASE's lambda on a validation split: fit on its train, score its held-out rows.

    The held-out rows are ``val_split.val`` when it has any (a split made with
    ``val_fraction > 0``), else ``val_split.test`` (a split built from validation files such as
    the benchmark's ``val_train.tsv`` / ``val_test.tsv``). Never pass the real test split here.

    Args:
      data: the preprocessed data (vocabulary) ``val_split`` belongs to.
      val_split: train + held-out validation rows.
      grid: candidate lambdas.
      evaluate_fn: ``(model, train, heldout, ks) -> result`` with ``result.metrics[metric]``.
      metric: what to maximise; ties go to the smaller lambda.
      k: the cutoff passed to ``evaluate_fn`` as ``ks=(k,)``.
    """
    heldout = val_split.val if len(val_split.val) else val_split.test
    if heldout.empty:
        raise DataError("tune_ease_lambda needs held-out validation rows", fix="val_fraction > 0")
    candidates = sorted({float(v) for v in grid})
    if not candidates:
        raise ConfigError("tune_ease_lambda needs a non-empty grid of lambdas")
    seen = binary_interactions(interaction_matrix(val_split.train, data.vocab))
    solver = EASESolver(seen[:, np.flatnonzero(seen.getnnz(axis=0))])  # what EASE._fit solves
    scores: dict[float, float] = {}
    for l2 in candidates:  # one factorisation for the grid, one cheap solve per grid point
        model = EASE(EASEConfig(l2=l2))
        model.solver = solver
        model.fit(data, val_split)
        scores[l2] = float(evaluate_fn(model, val_split.train, heldout, (k,)).metrics[metric])
    best = max(candidates, key=lambda v: (scores[v], -v))
    return LambdaTuning(best_l2=best, scores=scores, metric=metric)
