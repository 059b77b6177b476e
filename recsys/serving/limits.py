"""Request limits and error answers as plain ASGI middleware (BentoML 1.4 has no setting for
any of them), and the filter that logs a client error as one line.

- ``BodySizeLimit``: a body over ``max_bytes`` gets ``413 {"error": ..., "field": "body"}``
  before the service parses it: by its ``Content-Length`` when given, else while it streams in
  (chunked uploads). The accepted body is replayed to the application unchanged.
- ``LatencyBudget``: a request whose answer has not started within ``budget_s`` gets ``503``
  with ``Retry-After`` (RELIABILITY.md item 22), counted through ``on_exceeded``.
- ``ErrorFields``: adds fields (the model tag) to every JSON error answer from inside it.
- ``RewriteJSON``: answers a ``GET`` of one path with a function of the application's JSON
  answer (the service completes BentoML's OpenAPI schema with it).
- ``ClientErrorLog``: BentoML logs every request it refuses as ``[ERROR] Exception on /path``
  with a full traceback; this filter makes a client error (4xx) one ``INFO`` line instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any, Final

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


class ErrorFields:
    """Adds ``fields`` (read at answer time; e.g. ``{"model_tag": ...}``) to every JSON object
    answered with a status >= 400 by the application inside it: our 413 and 503, the service's
    422, BentoML's 400 and 500. Fields the answer already has are kept. Other answers pass
    through unbuffered; an error answer is buffered (it is small) and re-sent with its new
    ``Content-Length``."""

    def __init__(self, app: ASGIApp, fields: Mapping[str, Any]) -> None:
        self.app = app
        self.fields = fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def add_fields(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _is_json(message.get("headers", [])):
                    start = message  # sent with the body
                    return
            elif start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = self._add(b"".join(chunks))
                await send({**start, "headers": _with_length(start.get("headers", []), body)})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, add_fields)

    def _add(self, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict) or not self.fields:
            return body
        added = {k: v for k, v in self.fields.items() if k not in payload}
        return json.dumps({**payload, **added}).encode()


class RewriteJSON:
    """Answers ``GET path`` with ``rewrite(the application's JSON answer)`` (a 200 only; any
    other answer, or one that is not JSON, passes unchanged)."""

    def __init__(
        self, app: ASGIApp, path: str, rewrite: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        self.app = app
        self.path = path
        self.rewrite = rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start is None:
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            with contextlib.suppress(ValueError):  # not JSON: sent as it is
                body = json.dumps(self.rewrite(json.loads(body))).encode()
        await send({**start, "headers": _with_length(start.get("headers", []), body)})
        await send({"type": "http.response.body", "body": body})


BENTOML_ERROR_LOGGER: Final = "bentoml._internal.server.http_app"
"""The logger of BentoML 1.4.40's ``log_exception``: ``"Exception on %s [%s]"`` with the
traceback, which ``_bentoml_impl.server.app`` calls for every exception of an API call, the
client's (a body that does not validate: 400) as well as the server's (500)."""
_BENTOML_ERROR_MESSAGE: Final = "Exception on %s [%s]"


class ClientErrorLog(logging.Filter):
    """Rewrites BentoML's record of a client error as one ``INFO`` line without traceback:
    ``client error 400 on /recommend [POST]: k: Input should be greater than or equal to 1``.

    A client error is a pydantic ``ValidationError`` (BentoML answers 400) or an exception
    with an HTTP ``error_code`` below 500 (BentoML's ``BadInput`` and kin). Every other record
    passes unchanged: a server error keeps its level and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        status = _client_status(exc)
        if status is None or record.msg != _BENTOML_ERROR_MESSAGE:
            return True
        path, method = record.args if isinstance(record.args, tuple) else ("?", "?")
        record.msg = "client error %d on %s [%s]: %s"
        record.args = (status, path, method, _summary(exc))
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info, record.exc_text = None, None
        return True


def log_client_errors_briefly(logger_name: str = BENTOML_ERROR_LOGGER) -> None:
    """Install ``ClientErrorLog`` on BentoML's error logger (once per process)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, ClientErrorLog) for f in logger.filters):
        logger.addFilter(ClientErrorLog())


def _client_status(exc: BaseException | None) -> int | None:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    code = getattr(exc, "error_code", None)  # bentoml.exceptions.BentoMLException
    if isinstance(code, int) and 400 <= code < 500:
        return int(code)
    return None


def _summary(exc: BaseException | None, most: int = 5) -> str:
    """The errors of ``exc`` on one line: ``loc: msg; ...`` for a pydantic error."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:most]]
        if len(errors) > most:
            parts.append(f"... {len(errors) - most} more")
        text = "; ".join(parts)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())  # one line, whatever the messages hold


def _is_json(headers: Any) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _with_length(headers: Any, body: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Content-Length`` set to the length of ``body``."""
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(len(body)).encode())]


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
