"""``JSONFastPath``: valid JSON bodies answered by the bound handler, everything else handed to
the application behind it unchanged (the served service's parity: test_service.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from recsys.serving.fastpath import INTERNAL_ERROR, JSONFastPath


class Ask(BaseModel):
    user_id: int
    k: int = Field(default=10, ge=1)


class Answer(BaseModel):
    user_id: int
    items: list[int]


def run(
    handler: Any,
    chunks: list[bytes],
    *,
    path: str = "/recommend",
    method: str = "POST",
    content_type: bytes | None = b"application/json",
    bound: bool = True,
    truncated: bool = False,
) -> tuple[int, dict[str, str], bytes, bytes | None]:
    """One request through ``JSONFastPath`` in front of an app that echoes the body it reads.
    Returns (status, headers, body, the body the app read or None when it was not called)."""
    app_read: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body", False):
                break
        app_read.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app:" + body})

    messages = [
        {"type": "http.request", "body": c, "more_body": truncated or i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg: Any) -> None:
        sent.append(msg)

    headers = [] if content_type is None else [(b"content-type", content_type)]
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    fast = JSONFastPath(
        app,
        routes={"/recommend": Ask},
        handlers={"/recommend": handler} if bound else {},
        server_header="BentoML Service/test",
    )
    asyncio.run(fast(scope, receive, send))
    if not sent:
        return 0, {}, b"", app_read[0] if app_read else None
    start = sent[0]
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], out_headers, body, app_read[0] if app_read else None


async def top(ask: Ask) -> Answer:
    return Answer(user_id=ask.user_id, items=list(range(ask.k)))


def test_a_valid_body_is_answered_by_the_handler_as_bentoml_serializes_it() -> None:
    status, headers, body, app_read = run(top, [b'{"user_id": 7, ', b'"k": 3}'])
    assert (status, app_read) == (200, None)  # chunks joined; the app never saw the request
    assert body == Answer(user_id=7, items=[0, 1, 2]).model_dump_json().encode()
    assert headers == {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "server": "BentoML Service/test",
    }
    for content_type in (None, b"application/json; charset=utf-8", b"Application/JSON"):
        assert run(top, [b'{"user_id": 1}'], content_type=content_type)[0] == 200


@pytest.mark.parametrize(
    "body", [b'{"user_id": "x"}', b'{"user_id": 1, "k": 0}', b"{not json", b""]
)
def test_a_body_that_does_not_validate_goes_to_the_app_unchanged(body: bytes) -> None:
    status, _, out, app_read = run(top, [body])
    assert (status, out, app_read) == (299, b"app:" + body, body)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "/score"},
        {"method": "GET"},
        {"content_type": b"multipart/form-data; boundary=x"},
        {"content_type": b"application/vnd.bentoml+pickle"},
        {"bound": False},  # the service instance has not bound its handler yet
    ],
)
def test_other_requests_go_to_the_app(kwargs: dict[str, Any]) -> None:
    body = b'{"user_id": 7}'
    status, _, out, app_read = run(top, [body], **kwargs)
    assert (status, out, app_read) == (299, b"app:" + body, body)


def test_a_response_from_the_handler_is_sent_as_it_is() -> None:
    async def refuse(ask: Ask) -> JSONResponse:
        return JSONResponse({"error": "unknown genre", "field": "genres"}, status_code=422)

    status, headers, body, app_read = run(refuse, [b'{"user_id": 7}'])
    assert (status, json.loads(body), app_read) == (
        422,
        {"error": "unknown genre", "field": "genres"},
        None,
    )
    assert headers["server"] == "BentoML Service/test"


def test_an_unexpected_error_is_bentomls_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ask: Ask) -> Answer:
        raise RuntimeError("index corrupted")

    with caplog.at_level(logging.ERROR, logger="recsys.serving.fastpath"):
        status, _, body, app_read = run(broken, [b'{"user_id": 7}'])
    assert (status, json.loads(body), app_read) == (500, {"error": INTERNAL_ERROR}, None)
    assert "index corrupted" in caplog.text


def test_a_client_gone_before_its_body_ends_gets_nothing() -> None:
    called: list[Ask] = []

    async def handler(ask: Ask) -> Answer:
        called.append(ask)
        return await top(ask)

    # one chunk saying more is coming, then the client disconnects
    status, _, _, app_read = run(handler, [b'{"user_id": 7'], truncated=True)
    assert (status, app_read, called) == (0, None, [])
