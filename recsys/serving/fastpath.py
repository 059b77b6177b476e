"""A lean answer path for hot JSON routes, in front of BentoML's per-API machinery.

BentoML 1.4 answers an API request through its router, ``ContextMiddleware``, the input serde,
the API method's dispatch and an ``IterableResponse``. On our 2-core host, skipping it took a
``/recommend`` at the 1e6-item catalogue from ~0.6 to ~0.45 ms of the worker's time (32
clients: 1,436-1,705 -> 2,043-2,371 req/s; docs/benchmarks.md, "Fast path").
``JSONFastPath`` answers a ``POST`` to one of its routes itself when the body validates against
the route's request model, with the handler the BentoML API calls, serialized as BentoML
serializes it (``model_dump_json``, ``application/json``, BentoML's ``Server`` header).
Everything else goes on to BentoML unchanged, the body replayed: a body that does not validate,
another content type, method or path, a route whose handler is not bound yet. So every error
answer is BentoML's own, and the OpenAPI schema is BentoML's.

The service adds it after its other middlewares, so it sits inside them: BentoML's traffic
middlewares (the request counters and latency histograms of ``/metrics``, the ``max_concurrency``
429, the timeout 504) and ours (``LatencyBudget``, ``BodySizeLimit``) apply to it as to any
request. It sits outside what BentoML adds after the service's middlewares: CORS (which our
service does not enable; turn ``serving.fast_path`` off before enabling it) and
``ContextMiddleware`` (the request context a BentoML API method could read; ``_recommend`` reads
none).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from recsys.serving.limits import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    replay_body,
    send_json,
    send_json_bytes,
)

Handler = Callable[[Any], Awaitable[BaseModel | Response]]
"""Takes the validated request model; returns the response model, or a starlette ``Response``
sent as it is (e.g. a 422 refusal)."""

INTERNAL_ERROR = "An unexpected error has occurred, please check the server log."
"""BentoML 1.4's body for an unexpected exception in an API (``{"error": ...}``, 500)."""

logger = logging.getLogger(__name__)


class JSONFastPath:
    """Answer ``POST`` requests to ``routes`` (path → request model) with ``handlers[path]``.

    ``handlers`` is read at request time: the service binds its handlers when its instance is
    created, after BentoML has built the middleware stack."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, type[BaseModel]],
        handlers: Mapping[str, Handler],
        server_header: str,
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.handlers = handlers
        self.server_header = server_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        handler = self.handlers.get(scope["path"]) if model is not None else None
        if model is None or handler is None or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            request = model.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replay_body(body, receive), send)  # BentoML's own 400
            return
        try:
            answer = await handler(request)
        except Exception:  # as BentoML answers an API's unexpected exception
            logger.exception("unexpected error answering %s", scope["path"])
            await send_json(send, 500, {"error": INTERNAL_ERROR}, self._server())
            return
        if isinstance(answer, Response):
            answer.headers["server"] = self.server_header
            await answer(scope, receive, send)
            return
        await send_json_bytes(send, 200, answer.model_dump_json().encode(), self._server())

    def _server(self) -> list[tuple[bytes, bytes]]:
        return [(b"server", self.server_header.encode())]


def _is_json(scope: Scope) -> bool:
    """No ``Content-Type`` (BentoML then assumes JSON) or ``application/json[; params]``."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return True
