"""Percentile bootstrap confidence intervals over users, and the paired bootstrap the gate uses.

Resampling users (not rows) respects that a mean over users is what is being estimated.
Resamples are drawn in blocks, so memory stays bounded; the indices depend only on ``seed``,
``n_boot`` and n, so metrics bootstrapped together are paired. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

_BOOT_BLOCK_ELEMENTS: Final = 4_000_000
"""Resampled indices drawn at once by the bootstraps: bounds memory at ~32 MB."""


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` resamples of the users, drawn with replacement (same size).

    Resamples are drawn in blocks (``_BOOT_BLOCK_ELEMENTS`` indices at a time), so memory stays
    bounded for long inputs such as 20 000 test ratings; the indices depend only on ``seed``,
    ``n_boot`` and n, so every row of a 2-D ``values`` sees the same resamples as it would
    alone (metrics bootstrapped together are paired).

    Args:
      values: [n] or [n_metrics, n] per-user (or per-row) values; n >= 1.

    Returns:
      [n_boot] or [n_metrics, n_boot] float64.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise ValueError(f"values must be [n] or [n_metrics, n], got shape {v.shape}")
    rows = np.atleast_2d(v)
    n = rows.shape[1]
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    out = np.empty((len(rows), n_boot), dtype=np.float64)
    step = max(1, _BOOT_BLOCK_ELEMENTS // n)
    for lo in range(0, n_boot, step):
        hi = min(lo + step, n_boot)
        idx = rng.integers(0, n, size=(hi - lo, n))
        for j, row in enumerate(rows):  # a handful of metrics: keeps one block in memory
            out[j, lo:hi] = row[idx].mean(axis=1)
    return out[0] if v.ndim == 1 else out


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the mean of ``values``.

    Resampling users (not rows) respects that a mean over users is what is being estimated.
    The interval is equivariant under monotone maps: the CI of RMSE is the square root of the
    CI of the mean squared error.

    Args:
      values: [n_users] per-user metric values.

    Returns:
      (low, high).
    """
    _check_alpha(alpha)
    means = bootstrap_means(np.asarray(values).ravel(), n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_cis(
    values: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """``bootstrap_ci`` of every metric, drawing the resamples once (same result, faster).

    Args:
      values: metric name -> [n_users] per-user values (the same users for all).
    """
    _check_alpha(alpha)
    if not values:
        return {}
    names = list(values)
    stacked = np.stack([np.asarray(values[k], dtype=np.float64).ravel() for k in names])
    bounds = np.quantile(bootstrap_means(stacked, n_boot, seed), [alpha / 2, 1 - alpha / 2], axis=1)
    return {k: (float(bounds[0, j]), float(bounds[1, j])) for j, k in enumerate(names)}


@dataclass(frozen=True)
class PairedBootstrap:
    """Paired comparison of two systems on the same users: is ``a`` better than ``b``?"""

    mean_diff: float
    """mean(a - b) over users."""
    ci: tuple[float, float]
    """Percentile bootstrap (1 - alpha) interval of mean(a - b)."""
    p_value: float
    """One-sided p-value for "a > b": the bootstrap share of mean differences <= 0 (ties
    count half, so identical systems get exactly 0.5)."""
    n_users: int


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> PairedBootstrap:
    """Paired percentile bootstrap of mean(a - b), resampling users jointly for both systems.

    Args:
      a: [n_users] per-user metric of system a (the candidate).
      b: [n_users] the same users' metric of system b (the champion), same order.

    Returns:
      ``PairedBootstrap``; a small ``p_value`` means a beats b beyond resampling noise.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} must hold the same users")
    _check_alpha(alpha)
    d = a - b
    means = bootstrap_means(d, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # Exact zeros (identical systems) would otherwise be pushed to one side by rounding.
    scale = np.abs(d).max(initial=0.0)
    eps = 1e-12 * max(scale, 1e-300)
    p = (np.sum(means < -eps) + 0.5 * np.sum(np.abs(means) <= eps)) / n_boot
    return PairedBootstrap(
        mean_diff=float(d.mean()), ci=(float(low), float(high)), p_value=float(p), n_users=len(d)
    )
