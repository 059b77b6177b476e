"""The engine behind the service: fallbacks, unknown ids, filters, explanations, the size
limit middleware (RELIABILITY.md items 7, 24)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from recsys.config import ServingConfig
from recsys.errors import ConfigError
from recsys.serving.engine import FALLBACK_POPULARITY, FALLBACK_RECENT, RequestError
from recsys.serving.fastpath import JSONFastPath
from recsys.serving.limits import BodySizeLimit, ErrorFields, LatencyBudget, RewriteJSON
from recsys.serving.schemas import RecommendRequest
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures

UNKNOWN_USER = 10**12


@pytest.fixture(scope="module")
def engine() -> Any:
    return fixtures.engine()


def test_known_user_is_ranked_by_the_champion(engine: Any) -> None:
    user = int(synthetic_data().vocab.user_ids[0])
    r = engine.recommend(user, 5)
    assert r.fallback is None and len(r.item_ids) == 5
    assert not set(r.item_ids) & set(engine.ranker.seen_items(user).tolist())
    assert r.scores == sorted(r.scores, reverse=True)


def test_unknown_user_gets_popularity_and_says_so(engine: Any) -> None:
    """The most popular items, scored by their share of the training interactions (issue 16:
    not raw counts such as 1127.0), the same numbers ``score`` gives an unknown user."""
    r = engine.recommend(UNKNOWN_USER, 5)
    assert r.fallback == FALLBACK_POPULARITY
    counts = engine.popularity[engine.ranker.encode_items(r.item_ids)]
    assert counts.tolist() == sorted(engine.popularity, reverse=True)[:5]
    np.testing.assert_allclose(r.scores, counts / engine.popularity.sum(), rtol=1e-6)
    assert all(0.0 < s < 1.0 for s in r.scores) and sum(r.scores) <= 1.0
    scored = engine.score(UNKNOWN_USER, r.item_ids)
    assert scored.fallback == FALLBACK_POPULARITY
    np.testing.assert_allclose(scored.scores, r.scores, rtol=1e-6)


def test_recommend_many_equals_recommend_per_user(engine: Any) -> None:
    """The micro-batched path answers each user exactly as the single one: known and unknown
    users mixed, with and without a filter and seen-item exclusion."""
    users = [*synthetic_data().vocab.user_ids[:12].tolist(), UNKNOWN_USER]
    users.insert(3, UNKNOWN_USER + 1)
    genre = engine.catalogue.genre_names[0]
    for options in ({}, {"genres": [genre]}, {"exclude_seen": False}):
        many = engine.recommend_many(users, 7, **options)
        assert many == [engine.recommend(u, 7, **options) for u in users]
    assert many[3].fallback == FALLBACK_POPULARITY and many[0].fallback is None
    assert engine.recommend_many(users[:2], 3)[1] == engine.recommend(users[1], 3)


def test_genre_filter_keeps_only_matching_items(engine: Any) -> None:
    cat = engine.catalogue
    genre = cat.genre_names[0]
    user = int(synthetic_data().vocab.user_ids[1])
    for r in (
        engine.recommend(user, 20, genres=[genre]),
        engine.recommend(UNKNOWN_USER, 20, genres=[genre.upper()]),
    ):
        idx = engine.ranker.encode_items(r.item_ids)
        assert len(idx) > 0 and cat.genres[idx, 0].all()


def test_unknown_genre_and_items_are_request_errors_naming_them(engine: Any) -> None:
    with pytest.raises(RequestError) as exc:
        engine.recommend(1, 5, genres=["Nope"])
    assert exc.value.field == "genres" and exc.value.ids == ["Nope"]
    with pytest.raises(RequestError) as exc:
        engine.score(1, [1, 10**9, 10**9 + 1])
    assert exc.value.to_dict() == {
        "error": "2 unknown item id(s) in 'item_ids': [1000000000, 1000000001]",
        "field": "item_ids",
        "unknown_ids": [10**9, 10**9 + 1],
    }
    with pytest.raises(RequestError, match="item_id"):
        engine.similar_items(10**9)


def test_recent_items_fallback_excludes_the_given_items(engine: Any) -> None:
    items = [int(i) for i in engine.ranker.item_ids[:3]]
    r = engine.recommend_recent(items, 10)
    assert r.fallback == FALLBACK_RECENT and len(r.item_ids) == 10
    assert not set(items) & set(r.item_ids)


def test_score_keeps_request_order_and_matches_the_model(engine: Any) -> None:
    user = int(synthetic_data().vocab.user_ids[2])
    items = [int(i) for i in engine.ranker.item_ids[[5, 1, 9]]]
    r = engine.score(user, items)
    assert r.item_ids == items and r.fallback is None
    np.testing.assert_allclose(r.scores, engine.ranker.score([user] * 3, items), rtol=1e-6)
    assert engine.score(UNKNOWN_USER, items).fallback == FALLBACK_POPULARITY


def test_explain_names_history_items_and_genres(engine: Any) -> None:
    user = int(synthetic_data().vocab.user_ids[3])
    ranked, why = engine.explain(user, 4)
    seen = set(engine.ranker.seen_items(user).tolist())
    assert [e.item_id for e in why] == ranked.item_ids
    for e in why:
        assert 0 < len(e.history) <= engine.cfg.explain_history
        assert {i for i, _ in e.history} <= seen
        sims = [s for _, s in e.history]
        assert sims == sorted(sims, reverse=True)
        assert all(g in engine.catalogue.genre_names for g, _ in e.genres)


def test_serving_config_is_strict() -> None:
    assert ServingConfig.from_dict(ServingConfig().to_dict()) == ServingConfig()
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \[.rerank.\] in .serving."):
        ServingConfig.from_dict({"rerank": 5})
    with pytest.raises(ConfigError, match="rerank_top"):
        ServingConfig(rerank_top=0)
    with pytest.raises(ConfigError, match="latency_budget_s"):
        ServingConfig(latency_budget_s=0)
    with pytest.raises(ConfigError, match=r"'serving\.fast_path' must be true or false, got 'no'"):
        ServingConfig.from_dict({"fast_path": "no"})


# --- request size limit ---------------------------------------------------------------------------
def run_asgi(body_chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        msg = await receive()
        seen["body"] = msg["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(body_chunks) - 1}
        for i, c in enumerate(body_chunks)
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(msg: Any) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "headers": headers}
    asyncio.run(BodySizeLimit(app, max_bytes=10)(scope, receive, send))
    status = sent[0]["status"]
    body = sent[1]["body"]
    return status, (json.loads(body) if status != 200 else seen["body"])


def test_body_limit_by_header_by_stream_and_replay() -> None:
    assert run_asgi([b"x" * 11], [(b"content-length", b"11")]) == (
        413,
        {"error": "request body larger than 10 bytes", "field": "body"},
    )
    assert run_asgi([b"x" * 6, b"x" * 6], [])[0] == 413  # chunked, no Content-Length
    assert run_asgi([b"12345", b"678"], []) == (200, b"12345678")
    assert run_asgi([b"1"], [(b"content-length", b"abc")])[0] == 400


# --- latency budget (RELIABILITY.md item 22) ------------------------------------------------------
def run_budget(
    answer_after_s: float, *, path: str = "/recommend", body_after_s: float = 0.0
) -> tuple[list[Any], list[str], bool]:
    """A request to an app that starts its answer after ``answer_after_s`` (and sends the body
    ``body_after_s`` later) behind ``LatencyBudget(budget_s=0.05)`` on ``/recommend``.
    Returns (messages sent, paths counted, whether the app was cancelled)."""
    cancelled = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(answer_after_s)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(body_after_s)
            await send({"type": "http.response.body", "body": b"ok"})
        except asyncio.CancelledError:
            cancelled = True
            raise

    sent: list[Any] = []
    counted: list[str] = []

    async def send(msg: Any) -> None:
        sent.append(msg)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    budget = LatencyBudget(app, budget_s=0.05, paths={"/recommend"}, on_exceeded=counted.append)
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(budget(scope, receive, send))
    return sent, counted, cancelled


def test_latency_budget_answers_503_counts_it_and_stops_the_work() -> None:
    sent, counted, cancelled = run_budget(answer_after_s=5.0)
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {
        "error": "not answered within 0.05 s",
        "field": None,
        "budget_s": 0.05,
    }
    assert counted == ["/recommend"] and cancelled
    assert len(sent) == 2  # the cancelled app sent nothing


def test_latency_budget_leaves_fast_and_started_answers_and_other_paths_alone() -> None:
    sent, counted, _ = run_budget(answer_after_s=0.0)
    assert [m.get("status") for m in sent] == [200, None] and counted == []
    # an answer that started within the budget is finished, however long its body takes
    sent, counted, cancelled = run_budget(answer_after_s=0.0, body_after_s=0.15)
    assert sent[1]["body"] == b"ok" and counted == [] and not cancelled
    # only the listed paths have a budget
    sent, counted, _ = run_budget(answer_after_s=0.15, path="/metrics")
    assert sent[0]["status"] == 200 and counted == []


def test_latency_budget_keeps_the_apps_own_timeout_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise TimeoutError("the app's own")

    async def main() -> None:
        await LatencyBudget(app, budget_s=5.0)({"type": "http", "path": "/x"}, None, None)  # type: ignore[arg-type]

    with pytest.raises(TimeoutError, match="the app's own"):
        asyncio.run(main())


def test_the_service_puts_the_budget_on_its_data_plane() -> None:
    from recsys.serving import service

    options = {cls: opts for cls, opts in service.RecommenderService.middlewares}
    assert options[LatencyBudget]["paths"] == service.DATA_PLANE
    assert options[LatencyBudget]["budget_s"] == ServingConfig().latency_budget_s
    options[LatencyBudget]["on_exceeded"]("/recommend")  # the Prometheus counter takes it


def test_the_fast_path_is_innermost_of_the_services_middlewares() -> None:
    """Added last, so BentoML stacks it inside the latency budget and the body limit."""
    from recsys.serving import service

    classes = [cls for cls, _ in service.RecommenderService.middlewares]
    assert classes == [ErrorFields, RewriteJSON, LatencyBudget, BodySizeLimit, JSONFastPath]
    options = dict(service.RecommenderService.middlewares)[JSONFastPath]
    assert options["routes"] == {"/recommend": RecommendRequest}
    assert options["handlers"] is service._FAST_HANDLERS
