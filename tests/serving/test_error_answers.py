"""Error answers and their logging, below HTTP (issue 16 part 5): a client error is one INFO
line in the server log while a server error keeps its traceback; every JSON error answer
carries the model tag; the OpenAPI schema lists the statuses the service really answers.
The served versions of these checks are in test_service.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from bentoml._internal.server.http_app import log_exception  # pinned bentoml 1.4.40
from bentoml.exceptions import BadInput, ServiceUnavailable
from pydantic import ValidationError

from recsys.serving.limits import (
    BENTOML_ERROR_LOGGER,
    BodySizeLimit,
    ClientErrorLog,
    ErrorFields,
    LatencyBudget,
    RewriteJSON,
    log_client_errors_briefly,
)
from recsys.serving.schemas import ERROR_STATUSES, RecommendRequest, document_errors


# --- logging ------------------------------------------------------------------------------------
class FakeRequest:
    """What BentoML's ``log_exception`` reads of a starlette request."""

    class url:
        path = "/recommend"

    method = "POST"


@pytest.fixture
def bentoml_log() -> Iterator[io.StringIO]:
    """BentoML's error logger, with our filter, writing ``[LEVEL] message`` to a buffer."""
    logger = logging.getLogger(BENTOML_ERROR_LOGGER)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    log_client_errors_briefly()
    log_client_errors_briefly()  # idempotent
    assert sum(isinstance(f, ClientErrorLog) for f in logger.filters) == 1
    yield out
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


def log_while_handling(exc: BaseException) -> None:
    """As BentoML does: ``log_exception(request)`` inside the ``except`` block."""
    try:
        raise exc
    except BaseException:
        log_exception(FakeRequest())  # type: ignore[arg-type]


def test_a_client_error_is_one_info_line(bentoml_log: io.StringIO) -> None:
    try:
        RecommendRequest.model_validate_json(b'{"user_id": 1, "k": 0, "colour": "red"}')
    except ValidationError as exc:
        log_while_handling(exc)
    log_while_handling(BadInput("Invalid JSON input received:\nline two"))
    lines = bentoml_log.getvalue().splitlines()
    assert lines == [
        "[INFO] client error 400 on /recommend [POST]: k: Input should be greater than or "
        "equal to 1; colour: Extra inputs are not permitted",
        "[INFO] client error 400 on /recommend [POST]: BadInput: Invalid JSON input received: "
        "line two",
    ]


def test_a_server_error_keeps_its_level_and_traceback(bentoml_log: io.StringIO) -> None:
    log_while_handling(RuntimeError("a bug"))
    log_while_handling(ServiceUnavailable("models are not loaded yet"))
    text = bentoml_log.getvalue()
    assert text.count("[ERROR] Exception on /recommend [POST]") == 2
    assert text.count("Traceback (most recent call last)") == 2
    assert "RuntimeError: a bug" in text and "client error" not in text


# --- model tag on every JSON error answer ---------------------------------------------------------
def run(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, dict[bytes, bytes], Any]:
    """(status, headers, JSON or raw body) of one request through ``app``."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": [], **scope}, receive, send))
    headers = dict(sent[0]["headers"])
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    assert int(headers[b"content-length"]) == len(payload)
    try:
        return sent[0]["status"], headers, json.loads(payload)
    except ValueError:
        return sent[0]["status"], headers, payload


def answering(status: int, body: bytes, content_type: bytes = b"application/json") -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body[:3], "more_body": True})
        await send({"type": "http.response.body", "body": body[3:]})

    return app


TAG = {"model_tag": "recsys-ease:v1"}
POST = {"method": "POST", "path": "/recommend"}


def test_error_fields_tag_json_error_answers_only() -> None:
    err = b'{"error": "1 validation error", "detail": []}'
    status, _, body = run(ErrorFields(answering(400, err), TAG), POST)
    assert status == 400 and body == {"error": "1 validation error", "detail": [], **TAG}
    own = b'{"error": "x", "model_tag": "kept"}'
    assert run(ErrorFields(answering(422, own), TAG), POST)[2]["model_tag"] == "kept"
    ok = b'{"items": []}'
    assert run(ErrorFields(answering(200, ok), TAG), POST)[2] == {"items": []}
    assert run(ErrorFields(answering(500, b"oops", b"text/plain"), TAG), POST)[2] == b"oops"
    assert run(ErrorFields(answering(400, b"[1]"), TAG), POST)[2] == [1]  # not an object
    assert run(ErrorFields(answering(400, err), {}), POST)[2] == json.loads(err)  # not bound


def test_our_413_and_503_carry_the_model_tag() -> None:
    too_big = ErrorFields(BodySizeLimit(answering(200, b"{}"), max_bytes=4), TAG)
    status, _, body = run(too_big, POST, b"x" * 5)
    assert status == 413 and body["model_tag"] == TAG["model_tag"] and body["field"] == "body"

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    late = ErrorFields(LatencyBudget(slow, budget_s=0.05), TAG)
    status, headers, body = run(late, POST)
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert body == {"error": "not answered within 0.05 s", "field": None, "budget_s": 0.05, **TAG}


# --- OpenAPI ------------------------------------------------------------------------------------
BENTOML_SPEC = {
    "paths": {
        "/recommend": {"post": {"responses": {"200": {"description": "ok"}, "404": {}}}},
        "/livez": {"get": {"responses": {"200": {}}}},
    },
    "components": {"schemas": {}},
}


def test_rewrite_json_documents_the_real_error_statuses() -> None:
    spec = json.dumps(BENTOML_SPEC).encode()
    app = RewriteJSON(answering(200, spec), "/docs.json", lambda s: document_errors(s, ["/x"]))
    assert run(app, {"method": "GET", "path": "/docs.json"})[2]["components"]["schemas"]
    app = RewriteJSON(
        answering(200, spec), "/docs.json", lambda s: document_errors(s, ["/recommend"])
    )
    status, _, got = run(app, {"method": "GET", "path": "/docs.json"})
    responses = got["paths"]["/recommend"]["post"]["responses"]
    assert status == 200 and set(responses) == {"200", *map(str, ERROR_STATUSES)}
    assert responses["200"] == {"description": "ok"}
    assert got["paths"]["/livez"] == BENTOML_SPEC["paths"]["/livez"]
    schema = got["components"]["schemas"]["ErrorResponse"]
    assert {"error", "field", "unknown_ids", "detail", "model_tag"} <= set(schema["properties"])
    # other paths and methods pass unchanged
    assert run(app, {"method": "GET", "path": "/docs"})[2] == BENTOML_SPEC
    assert run(app, {"method": "POST", "path": "/docs.json"})[2] == BENTOML_SPEC
