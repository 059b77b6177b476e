"""The cost side of the gate: single-request latency and on-disk model size. The only impure
functions of the gate; ``decide`` never calls them."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.errors import DataError
from recsys.schema import id_array

if TYPE_CHECKING:
    from recsys.models.base import Recommender


@dataclass(frozen=True)
class LatencyStats:
    """Single-request ``recommend`` latency, in milliseconds."""

    p50_ms: float
    p99_ms: float
    n_requests: int
    max_ms: float = math.nan
    k: int = 10
    """The ``k`` every timed call asked for."""


def measure_latency(
    model: Recommender,
    user_ids: np.ndarray | Sequence[int] | Sequence[str],
    *,
    k: int = 10,
    n_requests: int = 200,
    warmup: int = 10,
    seed: int = 0,
) -> LatencyStats:
    """Time ``n_requests`` one-user ``recommend`` calls (users drawn with a seed), after warm-up.

    This is the in-process cost of the model: the serving stack adds its own overhead on top.
    """
    users = id_array(user_ids)  # integer or text ids, as the model's vocabulary holds them
    if not len(users) or n_requests < 1:
        raise ValueError("measure_latency needs at least one user and one request")
    rng = np.random.default_rng(seed)
    picks = rng.choice(users, size=warmup + n_requests)
    times = np.empty(n_requests, dtype=np.float64)
    for i, user in enumerate(picks):
        start = time.perf_counter()
        model.recommend(np.array([user]), k=k)
        if i >= warmup:
            times[i - warmup] = (time.perf_counter() - start) * 1e3
    p50, p99 = np.percentile(times, [50, 99])
    return LatencyStats(
        p50_ms=float(p50),
        p99_ms=float(p99),
        n_requests=n_requests,
        max_ms=float(times.max()),
        k=k,
    )


def dir_size(path: Path | str) -> int:
    """Bytes of every regular file under ``path`` (the on-disk size of a saved model)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("model directory not found", where=str(path))
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = Path(root) / name
            if full.is_file() and not full.is_symlink():
                total += full.stat().st_size
    return total
