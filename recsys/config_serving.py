"""The ``serving`` section of ``params.yaml``: how candidates are retrieved (exact or ANN
index) and how the service answers. ``recsys.config`` re-exports every name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from recsys.config_loader import from_dict
from recsys.errors import ConfigError

Storage = Literal["float32", "float16", "int8"]
"""How an ANN index stores item vectors (``RetrievalConfig.storage``)."""
IndexKind = Literal["auto", "exact", "hnsw", "ivf"]


@dataclass(frozen=True)
class RetrievalConfig:
    """How candidates are retrieved (the ``serving`` settings baked into a bento).

    The defaults keep exact search up to 100k items (one [1, d] x [d, n] product: ~2 ms at
    100k x 128 on one core) and IVF (vectors stored as float16) above it.
    ``bench/ann_recall.py`` measured, on a 1e6-item clustered catalogue (d=64, 2-core EPYC):
    IVF with 4000 lists and nprobe=32 recall@10 0.997 against exact search (nprobe=16: 0.984),
    p50 0.16-0.19 ms per query, built in 76 s single-threaded (~5 min on a loaded host); HNSW
    with M=32, efConstruction=80 only 0.70 at efSearch=128 and 0.85 at 1024, built in ~17 min
    (loaded host). HNSW stays available (``ann="hnsw"``).
    """

    kind: IndexKind = "auto"
    """``auto``: exact below ``exact_below`` items, else ``ann``."""
    exact_below: int = 100_000
    ann: Literal["hnsw", "ivf"] = "ivf"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None
    """IVF lists; None: 4 sqrt(n_items) (at most n_items / 39)."""
    nprobe: int = 32
    storage: Storage = "float16"
    """How the ANN index stores the item vectors: ``float32`` (IVF-Flat, HNSW-Flat),
    ``float16`` or ``int8`` (faiss scalar quantizers: IVF-SQ, HNSW-SQ; int8 with a per-dimension
    range learnt from the vectors). The two-stage service re-scores the retrieved candidates
    with the ranker's own float32 weights, so storage changes which candidates are found, not
    their final scores. ``bench/ann_recall.py --storage`` measured, 1e6 x 64 items, IVF nprobe
    32: vectors 244 / 122 / 61 MiB, p50 0.19 / 0.16 / 0.16 ms per query, recall@10 0.997 /
    0.997 / 0.973, the exact top 10 among the top 200 in 99.75 % for all three;
    ``bench/quantization.py``: ml100k-u1 NDCG@10 unchanged after re-scoring. Exact search
    (catalogues below ``exact_below``) always uses the float32 vectors."""
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "exact", "hnsw", "ivf"):
            raise ConfigError(f"retrieval.kind must be auto|exact|hnsw|ivf, got {self.kind!r}")
        if self.ann not in ("hnsw", "ivf"):
            raise ConfigError(f"retrieval.ann must be hnsw|ivf, got {self.ann!r}")
        for name in ("exact_below", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"retrieval.{name} must be an integer >= 1, got {value!r}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"retrieval.nlist must be >= 1, got {self.nlist}")
        if self.storage not in get_args(Storage):
            raise ConfigError(
                f"retrieval.storage must be {'|'.join(get_args(Storage))}, got {self.storage!r}"
            )

    def resolved_kind(self, n_items: int) -> Literal["exact", "hnsw", "ivf"]:
        if self.kind == "auto":
            return "exact" if n_items < self.exact_below else self.ann
        return self.kind


@dataclass(frozen=True)
class ServingConfig:
    """Serving settings, baked into a bento as JSON (``package.build_bento(serving=...)``)."""

    retriever: str = "twotower"
    """The candidate family whose user and item vectors retrieve the M candidates (it must
    have embeddings: ``twotower``); the gated two-stage model is built from it and the best
    candidate (``recsys.promotion``)."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank_top: int = 200
    """M: candidates retrieved per user and re-ranked by the champion."""

    explain_history: int = 3
    """History items reported per recommended item by ``explain``."""
    workers: int = 1
    """Worker processes of the served bento. Each loads the models and builds its own index
    (memory and start-up time grow with it); one worker runs Python on one core at a time
    (the GIL). The workers share one listening socket and the first to wake accepts a burst
    of new connections, so on one host a second worker adds throughput only when clients'
    connections happen to spread (docs/serving.md, "Workers")."""

    access_log: bool = False
    """BentoML's per-request access log line. Off by default: on a loaded 2-core host the
    line per request cost 30-65 % of the throughput at 8 clients (bench/serving.py A/B, ML-100K);
    ``/metrics`` counts requests and latencies either way."""

    max_batch: int = 64
    """Most concurrent ``/recommend`` requests answered by one model call (1: no batching).
    Batches form only from requests already waiting, so a lone request is never delayed."""

    trace_requests: bool = False
    """OpenTelemetry spans for the data-plane endpoints. BentoML 1.4 creates a span per request
    even with no exporter configured; on our 2-core host a no-op endpoint served 1,860 req/s
    without it and 1,100 with it (32 clients, one worker), so the data-plane
    routes are excluded from tracing unless this is on (``/livez``, ``/readyz``, ``/metrics``
    keep BentoML's defaults)."""

    latency_budget_s: float = 1.0
    """Seconds a data-plane request may wait for its answer to start; past it, 503 with
    ``Retry-After`` and ``recsys_latency_budget_exceeded_total`` (RELIABILITY.md item 22;
    ``recsys.serving.limits.LatencyBudget``). At 1e6 items and 48 saturating clients the p99
    is 32-45 ms, so 1 s sheds only requests stuck behind a real overload. BentoML's own 10 s
    ``traffic.timeout`` (504) stays as the outer bound."""

    fast_path: bool = True
    """``/recommend`` requests whose body validates are answered by
    ``recsys.serving.fastpath.JSONFastPath`` instead of BentoML's per-API machinery (router,
    context, serde, dispatch); anything else, errors included, still goes through BentoML. Same
    answers (tested); at the 1e6 catalogue, 32 clients: 2,043-2,371 req/s and p99 19.7-24.5 ms
    against 1,436-1,705 and 24.0-31.2 ms without (docs/benchmarks.md, "Fast path")."""

    def __post_init__(self) -> None:
        for name in ("access_log", "trace_requests", "fast_path"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"serving.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("rerank_top", "explain_history", "workers", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serving.{name} must be an integer >= 1, got {value!r}")
        budget = self.latency_budget_s
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise ConfigError(f"serving.latency_budget_s must be a number > 0, got {budget!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServingConfig:
        """Strict: unknown keys, wrong types and bad values raise ``ConfigError``."""
        return from_dict(cls, raw, "serving")
