"""Helpers shared by the ``bench/tune_*.py`` scripts: ``--set KEY=VALUE`` overrides, the JSON
record of one ``recsys.evaluation.harness.run_trial`` (the fit and scoring ``recsys benchmark``
and the pipeline share), and the scoring-speed measurement (the fast scoring path against Keras
``predict`` on every pair)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import yaml

from recsys.evaluation.harness import Trial
from recsys.evaluation.results import TopKResult
from recsys.models.base import Recommender


def parse_value(raw: str) -> Any:
    """``--set`` values as YAML, with ``1e-5`` read as a number (YAML 1.1 reads a string)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["epochs=30", "embedding_dim=64"]`` -> ``{"epochs": 30, "embedding_dim": 64}``."""
    return {k: parse_value(v) for k, v in (s.split("=", 1) for s in pairs)}


def record(trial: Trial, curve: str | None = None) -> dict[str, Any]:
    """A trial as the drivers print it: fit facts, metrics (4 decimals), the protocol's output
    seconds, the validation curve ``curve`` of the training history (if named) and the loss."""
    out = trial.fit_facts()
    out["metrics"] = {k: round(v, 4) for k, v in trial.evaluation.metrics.items()}
    seconds = "recommend_seconds" if isinstance(trial.evaluation, TopKResult) else "score_seconds"
    out[seconds] = trial.output_seconds
    if curve is not None:
        out["curve"] = [round(v, 4) for v in trial.train.history.get(curve, [])]
    out["loss"] = [round(v, 4) for v in trial.train.history["loss"]]
    return out


def speed(model: Recommender, n_users: int = 256) -> dict[str, float]:
    """Users x items scored per second by the model's fast path and, for Keras models, by
    ``model.predict`` on every pair (with the largest difference between the two)."""
    vocab = model._vocab()
    users = np.arange(min(n_users, vocab.n_users))
    items = np.flatnonzero(model._train_mask())
    model._scores(users[:8], items)  # warm caches
    start = time.perf_counter()
    fast = np.asarray(model._scores(users, items))
    fast_s = time.perf_counter() - start
    pairs = len(users) * len(items)
    out: dict[str, float] = {"pairs": pairs, "fast_pairs_per_s": round(pairs / fast_s)}
    predict = getattr(model, "_predict_pairs", None)
    if predict is not None:
        uu, ii = np.repeat(users, len(items)), np.tile(items, len(users))
        predict(uu[:1000], ii[:1000])  # trace once
        start = time.perf_counter()
        slow = np.asarray(predict(uu, ii)).reshape(len(users), len(items))
        slow_s = time.perf_counter() - start
        out.update(
            predict_pairs_per_s=round(pairs / slow_s),
            speedup=round(slow_s / fast_s, 1),
            max_abs_diff=float(np.abs(fast - slow).max()),
        )
    return out
