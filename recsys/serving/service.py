"""The BentoML service: a thin typed shell over ``recsys.serving.engine.Engine``.

Two models sit at class scope, so ``bentoml build`` packages them into the bento: the champion, a
two-stage model (``recsys.models.twostage.TwoStage``: retriever, index settings, M and ranker, the
very object the gate evaluated), and the item catalogue (genres), a ``Recommender.save`` and a
``Catalogue.save`` directory in the BentoML model store. Their tags are bento arguments
(``bentoml.use_arguments``: ``champion``, ``catalogue``, ``serving``, ``lineage``), which
``recsys.serving.package.build_bento`` passes to ``bentoml build --arg-file``; BentoML stores them
in the bento and sets them again when it serves it, so a built bento always serves the exact
versions it was built from. From source: ``bentoml serve recsys.serving.service:RecommenderService
--arg champion=recsys-twostage:v1``.

Endpoints (POST, JSON): ``/recommend``, ``/recommend_recent``, ``/similar_items``, ``/score``,
``/explain``; BentoML adds ``/livez``, ``/readyz`` (false until the models are loaded) and
``/metrics`` (with our counters below). A valid ``/recommend`` request is answered by
``JSONFastPath`` in front of BentoML's per-API machinery (``serving.fast_path``, on by default: the
same answer in less time). Every answer names the model tag, the retriever, the data version, the
params hash, the gate decision and the index type. Errors are JSON: 400 for a malformed body
(pydantic names the field in ``detail[].loc``), 413 for a body over the ``max_body_bytes``
argument, 422 for unknown item ids or genres (``{"error", "field", "unknown_ids"}``);
back-pressure: BentoML answers 429 when ``max_concurrency`` requests are in flight (measured:
tests/serving/test_load_faults.py), and a data-plane request whose answer has not started within
``serving.latency_budget_s`` gets 503 with ``Retry-After`` (``LatencyBudget``, counted); BentoML's
10 s timeout answers 504.
Every JSON error answer from inside the service's middleware carries ``model_tag``
(``ErrorFields``), the OpenAPI schema at ``/docs.json`` lists these statuses
(``schemas.document_errors``), every answer says what its scores are (``score_kind``), and a
client error is logged as one INFO line instead of BentoML's ERROR traceback
(``ClientErrorLog``).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import bentoml
from bentoml.models import BentoModel
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse

from recsys.config import ServingConfig
from recsys.schema import INT_IDS
from recsys.serving.batching import MicroBatcher
from recsys.serving.engine import FALLBACK_POPULARITY, Engine, Ranked, RequestError, load_engine
from recsys.serving.fastpath import Handler, JSONFastPath
from recsys.serving.limits import (
    BodySizeLimit,
    ErrorFields,
    LatencyBudget,
    RewriteJSON,
    log_client_errors_briefly,
)
from recsys.serving.paths import BASE_DISTRO, BASE_IMAGE
from recsys.serving.schemas import (
    ExplainedItem,
    ExplainResponse,
    GenreWeight,
    HistoryItem,
    RecommendResponse,
    ScoredItem,
    ScoreKind,
    ScoreResponse,
    document_errors,
    request_models,
)
from recsys.serving.service_metrics import (
    BATCH_SIZE,
    BUDGET_EXCEEDED,
    FALLBACKS,
    INDEX_INFO,
    POPULARITY_REFERENCE,
    SERVED_POPULARITY,
    UNKNOWN_IDS,
    popularity_references,
)

MAX_BODY_BYTES: Final = 64 * 1024
GC_THRESHOLDS: Final = (10_000, 10, 1_000)
"""``gc.set_threshold`` in a worker (CPython's defaults: 700, 10, 10)."""
MAX_CONCURRENCY: Final = 32
"""Requests in flight per worker process before BentoML answers 429. BentoML 1.4 divides the
service's ``max_concurrency`` between its workers (one semaphore per process), so the service
asks for this many times ``workers``: each worker queues at most 32, whatever the count."""
REQUEST_TIMEOUT_S: Final = 10
SERVICE_NAME: Final = "recsys"

T = TypeVar("T")

RecommendKey = tuple[int, bool, tuple[str, ...] | None]
"""The options of a ``/recommend`` request that must agree for requests to share a batch."""


class IdArgs(BaseModel):
    """The ids the bento's requests carry, per side: ``int`` (the default) or ``str``, the kind
    of the training data's user and item ids (``recsys.schema``), and ids of the served data
    as the examples OpenAPI shows."""

    model_config = ConfigDict(extra="forbid")
    user_kind: Literal["int", "str"] = INT_IDS
    item_kind: Literal["int", "str"] = INT_IDS
    example_user: int | str | None = None
    example_items: list[int | str] = []


class BentoArgs(BaseModel):
    """The bento's arguments (``--arg KEY=VALUE`` or ``--arg-file``), fixed at build time."""

    model_config = ConfigDict(extra="forbid")
    champion: str = "recsys-twostage:latest"
    """The gated two-stage model (``recsys.models.twostage.TwoStage``: retriever, index
    settings, M and ranker in one artifact)."""
    catalogue: str = "recsys-catalogue:latest"
    serving: dict[str, Any] | str = {}
    """``ServingConfig.to_dict()`` (workers, batching, limits), or its JSON."""
    lineage: dict[str, str] = {}
    """``data_version``, ``params_hash``, ``gate_decision`` of the champion
    (``recsys.serving.package.lineage``); the service is not ready without all three."""
    max_body_bytes: int = MAX_BODY_BYTES
    ids: IdArgs = IdArgs()
    """The kinds of the champion's user and item ids and OpenAPI example ids, from the
    catalogue's metadata (``package.bento_arguments``)."""

    def serving_config(self) -> ServingConfig:
        raw = json.loads(self.serving) if isinstance(self.serving, str) else self.serving
        return ServingConfig.from_dict(raw)


LINEAGE_KEYS: Final = ("data_version", "params_hash", "gate_decision")


ARGS = bentoml.use_arguments(BentoArgs)
SERVING: Final = ARGS.serving_config()
"""The bento's ``ServingConfig``, parsed once."""
REQUEST_MODELS: Final = request_models(
    ARGS.ids.user_kind, ARGS.ids.item_kind, ARGS.ids.example_user, ARGS.ids.example_items
)
"""Each route's request model for the champion's id kinds: a request with an id of the other
kind is a 400 naming the field, as any wrong type."""
if TYPE_CHECKING:
    from recsys.serving.schemas import (
        ExplainRequest,
        RecentItemsRequest,
        RecommendRequest,
        ScoreRequest,
        SimilarItemsRequest,
    )
else:  # the API signatures below name these: BentoML builds its routes from them
    RecommendRequest = REQUEST_MODELS["/recommend"]
    RecentItemsRequest = REQUEST_MODELS["/recommend_recent"]
    SimilarItemsRequest = REQUEST_MODELS["/similar_items"]
    ScoreRequest = REQUEST_MODELS["/score"]
    ExplainRequest = REQUEST_MODELS["/explain"]
DATA_PLANE: Final = ("/recommend", "/recommend_recent", "/similar_items", "/score", "/explain")
"""The request-answering routes: under the latency budget, and excluded from tracing unless
``serving.trace_requests``."""
FAST_ROUTES: Final = {"/recommend": RecommendRequest}
"""Routes answered by ``JSONFastPath`` (when ``serving.fast_path``) once their body validates."""
_FAST_HANDLERS: dict[str, Handler] = {}
"""Bound by the service instance of this worker process (``RecommenderService.__init__``)."""
_ERROR_FIELDS: dict[str, str] = {}
"""``{"model_tag": ...}``, added to every JSON error answer (``ErrorFields``); bound with the
handlers."""


@bentoml.service(
    name=SERVICE_NAME,
    image=bentoml.images.Image(base_image=BASE_IMAGE, distro=BASE_DISTRO, python_version="3.11"),
    resources={"cpu": "2"},
    workers=SERVING.workers,
    logging={"access": {"enabled": SERVING.access_log}},
    traffic={
        "timeout": REQUEST_TIMEOUT_S,
        "max_concurrency": MAX_CONCURRENCY * SERVING.workers,
    },
    tracing={"excluded_urls": [] if SERVING.trace_requests else list(DATA_PLANE)},
)
class RecommenderService:
    """Two-stage recommendation (two-tower retrieval, champion re-ranking) with fallbacks."""

    champion = BentoModel(ARGS.champion)
    catalogue = BentoModel(ARGS.catalogue)

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.lineage_complete = all(ARGS.lineage.get(key) for key in LINEAGE_KEYS)
        self.engine = load_engine(
            Path(self.champion.path),
            Path(self.catalogue.path),
            SERVING,
            model_tag=str(self.champion.tag),
            **{key: ARGS.lineage.get(key, "unknown") for key in LINEAGE_KEYS},
        )
        INDEX_INFO.labels(
            index_type=self.engine.index.kind, n_items=str(self.engine.index.n_items)
        ).set(1)
        for reference, value in popularity_references(self.engine).items():
            POPULARITY_REFERENCE.labels(reference=reference).set(value)
        self.batcher: MicroBatcher[RecommendKey, int, Ranked] = MicroBatcher(
            self._recommend_batch, max_batch=SERVING.max_batch
        )
        self.batcher.on_batch = BATCH_SIZE.observe
        _FAST_HANDLERS["/recommend"] = self._recommend
        _ERROR_FIELDS["model_tag"] = str(self.champion.tag)
        # Garbage collection is the tail of the latency: a full pass walks every live object and
        # stops all requests of the worker. Everything loaded so far (TensorFlow, the models)
        # lives as long as the worker, so it is frozen out of the passes; and full passes are
        # made rare (threshold 1000 instead of 10), young ones less frequent. At the 1e6
        # catalogue, 32 clients, one worker: with CPython's thresholds 28 full passes of ~15 ms
        # in 25 s and p99 37-48 ms; with these, one pass and p99 23-27 ms (bench/serving.py).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded and its lineage (data version, params hash, gate
        decision) is known: an answer must always say what blessed it."""
        return self.engine is not None and self.lineage_complete

    def _engine(self) -> Engine:
        if self.engine is None:  # unreachable: BentoML routes requests after __init__
            raise bentoml.exceptions.ServiceUnavailable("models are not loaded yet")
        return self.engine

    def _answer(self, endpoint: str, fn: Callable[[Engine], T]) -> T:
        """Run ``fn``; a ``RequestError`` becomes its JSON body with its status (422)."""
        try:
            return fn(self._engine())
        except RequestError as exc:
            return cast(T, self._refuse(endpoint, exc))

    @staticmethod
    def _refuse(endpoint: str, exc: RequestError) -> JSONResponse:
        UNKNOWN_IDS.labels(endpoint=endpoint, field=exc.field).inc(max(len(exc.ids), 1))
        # BentoML sends a returned starlette Response as it is.
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    def _recommend_batch(self, key: RecommendKey, user_ids: list[int]) -> list[Ranked]:
        k, exclude_seen, genres = key
        return self._engine().recommend_many(
            user_ids, k, exclude_seen=exclude_seen, genres=None if genres is None else list(genres)
        )

    def _provenance(self, endpoint: str, ranked: Ranked) -> dict[str, Any]:
        engine = self._engine()
        if ranked.fallback is not None:
            FALLBACKS.labels(endpoint=endpoint, fallback=ranked.fallback).inc()
            if ranked.fallback == "popularity":
                UNKNOWN_IDS.labels(endpoint=endpoint, field="user_id").inc()
        elif endpoint == "recommend":
            for quantile in engine.served_quantiles(ranked).tolist():
                SERVED_POPULARITY.observe(quantile)
        return {
            **engine.provenance.fields,
            "fallback": ranked.fallback,
            "score_kind": _score_kind(endpoint, ranked),
        }

    @staticmethod
    def _items(ranked: Ranked) -> list[ScoredItem]:
        return [
            ScoredItem(item_id=i, score=s)
            for i, s in zip(ranked.item_ids, ranked.scores, strict=True)
        ]

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for a user: two-tower retrieval of M candidates, champion re-ranking;
        an unknown user gets the most popular items (``fallback: popularity``). Concurrent
        requests with the same options share one model call (``serving.max_batch``). With
        ``serving.fast_path`` (the default) a valid request is answered by ``JSONFastPath``
        before it reaches this method; the answer is the same (``_recommend``)."""
        return await self._recommend(request)

    async def _recommend(self, request: RecommendRequest) -> RecommendResponse:
        genres = None if request.genres is None else tuple(request.genres)
        try:
            r = await self.batcher.submit(
                (request.k, request.exclude_seen, genres), request.user_id
            )
        except RequestError as exc:
            return cast(RecommendResponse, self._refuse("recommend", exc))
        return RecommendResponse(
            user_id=request.user_id, items=self._items(r), **self._provenance("recommend", r)
        )

    @bentoml.api(route="/recommend_recent")
    async def recommend_recent(self, request: RecentItemsRequest, /) -> RecommendResponse:
        """Top-k for an anonymous user from recently consumed item ids
        (``fallback: recent_items``); unknown item ids are a 422 naming them."""

        def run(engine: Engine) -> RecommendResponse:
            r = engine.recommend_recent(request.item_ids, request.k, genres=request.genres)
            return RecommendResponse(items=self._items(r), **self._provenance("recent", r))

        return self._answer("recommend_recent", run)

    @bentoml.api(route="/similar_items")
    async def similar_items(self, request: SimilarItemsRequest, /) -> RecommendResponse:
        """Nearest items by two-tower item vectors, the query item excluded."""

        def run(engine: Engine) -> RecommendResponse:
            r = engine.similar_items(request.item_id, request.k)
            return RecommendResponse(items=self._items(r), **self._provenance("similar", r))

        return self._answer("similar_items", run)

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """Champion scores of (user, item) pairs in request order."""

        def run(engine: Engine) -> ScoreResponse:
            r = engine.score(request.user_id, request.item_ids)
            return ScoreResponse(
                user_id=request.user_id, items=self._items(r), **self._provenance("score", r)
            )

        return self._answer("score", run)

    @bentoml.api(route="/explain")
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """``recommend`` plus, per item, the closest history items and the shared genres."""

        def run(engine: Engine) -> ExplainResponse:
            r, why = engine.explain(
                request.user_id, request.k, exclude_seen=request.exclude_seen, genres=request.genres
            )
            items = [
                ExplainedItem(
                    item_id=e.item_id,
                    score=e.score,
                    history=[HistoryItem(item_id=i, similarity=s) for i, s in e.history],
                    genres=[GenreWeight(genre=g, history_share=w) for g, w in e.genres],
                )
                for e in why
            ]
            return ExplainResponse(
                user_id=request.user_id, items=items, **self._provenance("explain", r)
            )

        return self._answer("explain", run)


def _score_kind(endpoint: str, ranked: Ranked) -> ScoreKind:
    """What the scores of an answer of ``endpoint`` (``_provenance``'s names) mean."""
    if ranked.fallback == FALLBACK_POPULARITY:
        return "popularity_share"
    return "similarity" if endpoint in ("recent", "similar") else "model"


def _count_budget_exceeded(path: str) -> None:
    BUDGET_EXCEEDED.labels(endpoint=path.lstrip("/")).inc()


log_client_errors_briefly()  # a refused request is one INFO line, not an ERROR traceback
# Outermost of ours, so that our own error answers (413, 503) get the model tag too.
cast(Any, RecommenderService).add_asgi_middleware(ErrorFields, fields=_ERROR_FIELDS)
cast(Any, RecommenderService).add_asgi_middleware(
    RewriteJSON, path="/docs.json", rewrite=lambda spec: document_errors(spec, DATA_PLANE)
)
cast(Any, RecommenderService).add_asgi_middleware(
    LatencyBudget,
    budget_s=SERVING.latency_budget_s,
    paths=DATA_PLANE,
    on_exceeded=_count_budget_exceeded,
)
cast(Any, RecommenderService).add_asgi_middleware(BodySizeLimit, max_bytes=ARGS.max_body_bytes)
# BentoML stacks these in the order added, the first outermost, inside its own traffic
# middlewares (metrics, timeout, max_concurrency) and outside its ContextMiddleware and router:
# the fast path goes last, so the budget and the body limit apply to it.
if SERVING.fast_path:
    cast(Any, RecommenderService).add_asgi_middleware(
        JSONFastPath,
        routes=FAST_ROUTES,
        handlers=_FAST_HANDLERS,
        server_header=f"BentoML Service/{SERVICE_NAME}",  # as BentoML's own answers
    )
