"""The service's own Prometheus metrics (BentoML adds its request counts and durations,
``bentoml_service_request_*``). The alert rules and the dashboard that read them are in
``recsys/serving/prometheus/`` (docs/operations.md, "Watching the service").

``bentoml.metrics``, not ``prometheus_client``: it sets up the multi-process registry
(BentoML docs), so every worker's counts reach ``/metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bentoml
import numpy as np

if TYPE_CHECKING:
    from recsys.serving.engine import Engine

POPULARITY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""Buckets of an item's popularity quantile: 0 the most interacted training item, 1 the least."""

FALLBACKS = bentoml.metrics.Counter(
    name="recsys_fallbacks_total",
    documentation="Answers given by a cold-start fallback instead of the champion",
    labelnames=["endpoint", "fallback"],
)
UNKNOWN_IDS = bentoml.metrics.Counter(
    name="recsys_unknown_ids_total",
    documentation="Unknown ids in requests (user ids answered by a fallback, item ids and "
    "genres refused with 422)",
    labelnames=["endpoint", "field"],
)
INDEX_INFO = bentoml.metrics.Gauge(
    name="recsys_index_info",
    documentation="Retrieval index in use (1 for the active index type) and catalogue size",
    labelnames=["index_type", "n_items"],
    multiprocess_mode="max",
)

BUDGET_EXCEEDED = bentoml.metrics.Counter(
    name="recsys_latency_budget_exceeded_total",
    documentation="Requests answered 503 because their answer had not started within "
    "serving.latency_budget_s",
    labelnames=["endpoint"],
)

BATCH_SIZE = bentoml.metrics.Histogram(
    name="recsys_recommend_batch_size",
    documentation="Concurrent /recommend requests answered by one model call (micro-batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


SERVED_POPULARITY = bentoml.metrics.Histogram(
    name="recsys_served_item_popularity_quantile",
    documentation="Training-popularity quantile of every item /recommend served from the "
    "champion (0: the most interacted item, 1: the least); fallback answers are not counted",
    buckets=POPULARITY_BUCKETS,
)
POPULARITY_REFERENCE = bentoml.metrics.Gauge(
    name="recsys_item_popularity_reference",
    documentation="Mean popularity quantile for reference: of the training interactions' "
    "items (reference=training) and of the champion's top 10 for a sample of known users at "
    "start (reference=expected); the served mean drifting from 'expected' is alerted on",
    labelnames=["reference"],
    multiprocess_mode="max",
)


def popularity_references(engine: Engine, n_users: int = 256, k: int = 10) -> dict[str, float]:
    """Mean popularity quantiles to compare the served one with: ``training`` (of the training
    interactions' items) and ``expected`` (of the champion's top ``k`` for up to ``n_users``
    known users, evenly spaced over the vocabulary)."""
    weights = np.maximum(engine.popularity, 0.0)
    quantile = engine.popularity_quantile
    out = {"training": float(weights @ quantile / max(float(weights.sum()), 1.0))}
    vocab = engine.ranker.vocab
    users = vocab.user_ids if vocab is not None else np.zeros(0)
    if len(users):
        picked = users[np.linspace(0, len(users) - 1, min(n_users, len(users))).astype(int)]
        answers = engine.recommend_many(picked.tolist(), k)
        served = [engine.served_quantiles(a) for a in answers if a.fallback is None]
        out["expected"] = float(np.concatenate(served).mean()) if served else out["training"]
    return out
