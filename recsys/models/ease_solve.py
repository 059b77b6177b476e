"""EASE's closed form, with the work shared across a lambda search and the cheaper of two forms.

``B(lambda) = I - P diag(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1`` (Steck 2019), for a
binary user x item matrix ``X`` [n users, m items]. ``EASESolver`` holds one training matrix;
a lambda search builds one and asks it for each candidate's scores. Two exact forms:

- primal (``n >= m / 2``): the Gram matrix ``G = X^T X`` [m, m] in float64, built once for the
  whole grid; per lambda one LU inverse of ``G + lambda I`` (a plain numpy EASE, less the Gram
  per lambda): ``m^3`` per lambda.
- dual (``n < m / 2``, Woodbury): ``(X^T X + lambda I)^-1 = (I - X^T A^-1 X) / lambda`` with
  ``A = X X^T + lambda I = L L^T`` [n, n] (Cholesky). With ``Y = L^-1 X`` [n, m]:
  ``lambda P = I - Y^T Y``, ``lambda P_jj = 1 - q_j`` with ``q_j = |Y_j|^2``, and for
  ``i != j`` ``B_ij = (Y^T Y)_ij / (1 - q_j)``. Scores of users ``X_u`` need no ``B``:
  ``X_u B = (C - X_u diag(q)) diag(1 / (1 - q))`` with ``C = (L^-1 X X_u^T)^T Y``: about
  ``n^3 / 3 + n^2 m + n |u| m`` per lambda instead of ``m^3``; ``B`` itself (the final fit)
  adds ``n m^2 / 2`` (a syrk). The issue-17 play-count log (1.9k users, 17k items) is ~10x
  cheaper this way; a per-search eigendecomposition of ``X X^T`` would save the per-lambda
  factor, but LAPACK's ``syevd`` ran 10-30x slower than the Cholesky path on the 2-core host.

Both forms are computed in float64 and agree to float tolerance (``tests/recsys/
test_baselines.py``); ``B`` is returned as float32. Only users with a training interaction
count in ``n`` (the others are zero rows of ``X``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import linalg

__all__ = ["DUAL_BELOW", "EASESolver", "ease_from_gram", "ease_weights"]

DUAL_BELOW = 0.5
"""Solve through the users when they are fewer than this fraction of the items: the dual's
``~3 n^2 m`` per lambda (factor, solve, score every user) against the primal's ``m^3``."""


def ease_weights(x: sp.spmatrix, l2: float) -> np.ndarray:
    """[m, m] float32 EASE matrix ``B`` of binary interactions ``x`` [n_users, m]."""
    return EASESolver(sp.csr_matrix(x)).weights(l2)


def ease_from_gram(gram: np.ndarray, l2: float) -> np.ndarray:
    """[m, m] float32 EASE matrix from a Gram matrix ``X'X`` [m, m] (or another positive
    semi-definite item-item matrix in its place; ``gram`` is not modified).

    Solved in float64 (the Gram matrix of a large data set loses digits in float32).
    """
    a = np.array(gram, dtype=np.float64)  # the one copy: inverted below
    a[np.diag_indices_from(a)] += l2
    p = np.linalg.inv(a)
    del a
    p /= -np.diag(p)[None, :]  # B_ij = -P_ij / P_jj
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32)


class EASESolver:
    """The lambda-free part of EASE for one binary training matrix ``x`` [n_users, m items].

    ``weights(l2)`` is ``B`` [m, m] float32; ``scores(x_users, l2)`` is ``x_users @ B``
    [len(x_users), m] float32, computed without ``B`` in the dual form. Each form keeps the
    factorisation of the last lambda, so that scoring several user blocks at one lambda
    factorises once.

    Args:
      x: [n_users, m] binary training interactions.
      dual: force a form; None: dual when fewer than ``DUAL_BELOW`` x m users have a row.
    """

    def __init__(self, x: sp.csr_matrix, *, dual: bool | None = None) -> None:
        self.x = sp.csr_matrix(x, dtype=np.float64)
        self.active = self.x[np.flatnonzero(self.x.getnnz(axis=1))]
        """[n, m] the users with a training row."""
        self.n_users, self.n_items = self.active.shape
        self.dual = self.n_users < DUAL_BELOW * self.n_items if dual is None else dual
        self.gram: np.ndarray | None = None
        if not self.dual:
            self.gram = np.asarray((self.x.T @ self.x).toarray(), dtype=np.float64)
        self._last: tuple[float, Any] | None = None

    def same_matrix(self, x: sp.spmatrix) -> bool:
        """Whether ``x`` is the training matrix this solver factorised."""
        x = sp.csr_matrix(x)
        return x.shape == self.x.shape and x.nnz == self.x.nnz and (x != self.x).nnz == 0

    def _solved(self, l2: float) -> Any:
        """primal: ``B``; dual: (L, Y, 1 - q) with ``X X^T + l2 I = L L^T``, ``Y = L^-1 X``."""
        if self._last is not None and self._last[0] == l2:
            return self._last[1]
        self._last = None  # free the previous lambda's arrays first
        if not self.dual:
            assert self.gram is not None
            solved: Any = ease_from_gram(self.gram, l2)
        else:
            k = np.asarray((self.active @ self.active.T).toarray(), dtype=np.float64)
            k[np.diag_indices_from(k)] += l2
            low = linalg.cholesky(k, lower=True)
            y = linalg.solve_triangular(low, self.active.toarray(), lower=True, overwrite_b=True)
            solved = (low, y, 1.0 - np.einsum("km,km->m", y, y))
        self._last = (l2, solved)
        return solved

    def weights(self, l2: float) -> np.ndarray:
        """[m, m] float32 ``B`` at ``l2``."""
        if not self.dual:
            return np.asarray(self._solved(l2))
        _, y, denom = self._solved(l2)
        b = y.T @ y  # X^T (X X^T + l2 I)^-1 X; numpy hands ``a.T @ a`` to BLAS syrk
        b /= denom[None, :]
        b[np.diag_indices_from(b)] = 0.0
        return b.astype(np.float32)

    def scores(self, x_users: sp.spmatrix, l2: float) -> np.ndarray:
        """[len(x_users), m] float32 ``x_users @ B`` at ``l2`` (``x_users`` binary, m columns)."""
        xu = sp.csr_matrix(x_users, dtype=np.float64)
        if not self.dual:
            return np.asarray(xu @ self.weights(l2), dtype=np.float32)
        low, y, denom = self._solved(l2)
        k_u = np.asarray((self.active @ xu.T).toarray())  # [n, u] X X_u^T
        c = linalg.solve_triangular(low, k_u, lower=True, overwrite_b=True).T @ y  # X_u X^T A^-1 X
        rows = np.repeat(np.arange(xu.shape[0]), np.diff(xu.indptr))
        c[rows, xu.indices] -= 1.0 - denom[xu.indices]  # - X_u diag(q), X_u binary
        c /= denom[None, :]
        return c.astype(np.float32)
