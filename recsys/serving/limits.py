"""Request limits as plain ASGI middleware (BentoML 1.4 has no setting for either).

- ``BodySizeLimit``: a body over ``max_bytes`` gets ``413 {"error": ..., "field": "body"}``
  before the service parses it: by its ``Content-Length`` when given, else while it streams in
  (chunked uploads). The accepted body is replayed to the application unchanged.
- ``LatencyBudget``: a request whose answer has not started within ``budget_s`` gets ``503``
  with ``Retry-After`` (RELIABILITY.md item 22), counted through ``on_exceeded``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = 64 * 1024) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "malformed Content-Length header")
                    return
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        await self._reject(send, 413, f"request body larger than {self.max_bytes} bytes")

    @staticmethod
    async def _reject(send: Send, status: int, error: str) -> None:
        await send_json(send, status, {"error": error, "field": "body"})


class LatencyBudget:
    """A request on one of ``paths`` that has not started its answer ``budget_s`` seconds after
    it arrived is cancelled and answered ``503 {"error", "field": null, "budget_s"}`` with
    ``Retry-After: 1``; ``on_exceeded(path)`` counts it (the service's Prometheus counter).

    The budget acts at the request's await points: waiting for its micro-batch, reading its
    body, waiting behind other requests. Model work runs on the event loop and is not
    interrupted mid-call, so one pathological call can overrun the budget by its own length;
    BentoML's ``traffic.timeout`` stays as the outer bound (504). Once an answer has started it
    is always completed."""

    def __init__(
        self,
        app: ASGIApp,
        budget_s: float = 1.0,
        paths: Collection[str] | None = None,
        on_exceeded: Callable[[str], None] | None = None,
    ) -> None:
        if budget_s <= 0:
            raise ValueError(f"budget_s must be > 0, got {budget_s}")
        self.app = app
        self.budget_s = float(budget_s)
        self.paths = None if paths is None else frozenset(paths)
        self.on_exceeded = on_exceeded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.paths is not None and scope["path"] not in self.paths):
            await self.app(scope, receive, send)
            return
        deadline = asyncio.timeout(self.budget_s)

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                deadline.reschedule(None)  # an answer under way is always finished
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, tracked)
        except TimeoutError:
            if not deadline.expired():  # the application's own TimeoutError: not ours
                raise
            await self._exceeded(scope, send)

    async def _exceeded(self, scope: Scope, send: Send) -> None:
        if self.on_exceeded is not None:
            self.on_exceeded(scope["path"])
        await send_json(
            send,
            503,
            {
                "error": f"not answered within {self.budget_s} s",
                "field": None,
                "budget_s": self.budget_s,
            },
            extra_headers=[(b"retry-after", b"1")],
        )


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands an already-read ``body`` over in one message, then defers to
    ``receive`` (a disconnect, for instance)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with ``payload`` as JSON."""
    await send_json_bytes(send, status, json.dumps(payload).encode(), extra_headers)


async def send_json_bytes(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with ``body``, already serialized JSON."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
