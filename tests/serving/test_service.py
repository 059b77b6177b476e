"""The bento end to end: `recsys bento build`, `bentoml serve` on 127.0.0.1, every endpoint,
train/serve parity with the gated two-stage model for 200 users, malformed requests (4xx naming the
field, never 5xx), metrics, and infra validation marking a bento deployable only when it works
(RELIABILITY.md items 6, 7, 20, 23, 24). Tiny models under a temporary BENTOML_HOME; servers are
stopped with their process group and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys import cli
from recsys.config import RetrievalConfig, ServingConfig
from recsys.models.twostage import TwoStage
from recsys.serving import package, store
from recsys.serving.schemas import ERROR_STATUSES, MAX_ITEMS, REQUESTS
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
READY_TIMEOUT_S = 150.0
USERS = synthetic_data().vocab.user_ids[:100]


def post(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    return package.http("POST", url, body, raw=raw)


# --- answers ------------------------------------------------------------------------------------
def test_parity_with_the_gated_object_for_200_users(
    server: str, models: fixtures.StoredModels
) -> None:
    """Issue 16: the running bento's /recommend returns, for every one of the 200 users, exactly
    the items in the same order (and the scores) of the gated object's offline top-k: the
    two-stage model as stored in the registry, loaded back (same seen-item exclusion, same tie
    rule). M=30 of 100 items, so the retrieval stage really prunes: the answers differ from the
    ranker's full ranking for some users."""
    gated = store.load_model(models.champion, home=models.home)
    assert isinstance(gated, TwoStage)
    users = synthetic_data().vocab.user_ids
    assert len(users) == 200
    want_ids, want_scores = gated.recommend(users, 10)
    full_ids, _ = gated.parts()[0].recommend(users, 10)
    assert (want_ids != full_ids).any(axis=1).sum() > 0
    for row, user in enumerate(users.tolist()):
        status, body = post(f"{server}/recommend", {"user_id": user, "k": 10})
        assert status == 200, body
        got = [it["item_id"] for it in body["items"]]
        assert got == want_ids[row][want_ids[row] >= 0].tolist(), user
        np.testing.assert_allclose(
            [it["score"] for it in body["items"]], want_scores[row][want_ids[row] >= 0], 1e-6
        )
        assert body["model_tag"] == models.champion
        assert body["retriever_tag"] == f"{models.champion}/twotower"
        assert body["data_version"] == fixtures.DATA_VERSION
        assert body["params_hash"] == fixtures.LABELS.params_hash
        assert body["gate_decision"] == "ungated"  # built by hand, outside the pipeline
        assert body["index_type"] == "exact" and body["fallback"] is None


def test_concurrent_requests_are_answered_as_alone(server: str) -> None:
    """32 clients at once go through the micro-batcher (whether requests share a call depends
    on timing; that they would is tests/serving/test_batching.py): each answer equals the
    lone request's, and every request is counted in the batch-size histogram."""

    def batched_requests() -> float:
        _, text = package.http("GET", f"{server}/metrics")
        prefix = "recsys_recommend_batch_size_sum"
        return sum(
            float(ln.rsplit(" ", 1)[1]) for ln in str(text).splitlines() if ln.startswith(prefix)
        )

    users = [*USERS[:40].tolist(), 10**15]
    alone = {u: post(f"{server}/recommend", {"user_id": u, "k": 5})[1]["items"] for u in users}
    before = batched_requests()
    with ThreadPoolExecutor(32) as pool:
        answers = list(
            pool.map(lambda u: (u, post(f"{server}/recommend", {"user_id": u, "k": 5})), users * 8)
        )
    for user, (status, body) in answers:
        assert status == 200, body
        assert body["items"] == alone[user]
    assert batched_requests() - before >= len(answers)


def test_every_endpoint_answers_with_provenance(server: str, models: fixtures.StoredModels) -> None:
    user, item = int(USERS[0]), int(fixtures.ranker().train_item_ids[0])
    genre = fixtures.catalogue().genre_names[0]
    calls = {
        "/recommend": {"user_id": user, "k": 3, "exclude_seen": False, "genres": [genre]},
        "/recommend_recent": {"item_ids": [item], "k": 3},
        "/similar_items": {"item_id": item, "k": 3},
        "/score": {"user_id": user, "item_ids": [item, item]},
        "/explain": {"user_id": user, "k": 2},
    }
    for route, payload in calls.items():
        status, body = post(server + route, payload)
        assert status == 200, (route, body)
        assert body["model_tag"] == models.champion, route
        assert body["data_version"] == fixtures.DATA_VERSION, route
        assert body["params_hash"] == fixtures.LABELS.params_hash, route
        assert 1 <= len(body["items"]) <= 3, route
    _, explained = post(f"{server}/explain", calls["/explain"])
    assert explained["items"][0]["history"] and "genres" in explained["items"][0]


def test_cold_start_fallbacks_are_named(server: str) -> None:
    status, body = post(f"{server}/recommend", {"user_id": 10**15, "k": 5})
    assert status == 200 and body["fallback"] == "popularity" and len(body["items"]) == 5
    items = [int(i) for i in fixtures.ranker().item_ids[:2]]
    status, body = post(f"{server}/recommend_recent", {"item_ids": items, "k": 5})
    assert status == 200 and body["fallback"] == "recent_items"


def test_every_answer_says_what_its_scores_are(server: str) -> None:
    """``score_kind`` (issue 16): the champion's scores for a known user, shares of the
    training interactions for the popularity fallback (all of them sum to 1), similarities
    for the item-to-item answers."""
    user, item, unknown = int(USERS[0]), int(fixtures.ranker().train_item_ids[0]), 10**15
    cases = [
        ("/recommend", {"user_id": user, "k": 3}, "model"),
        ("/recommend", {"user_id": unknown, "k": 1000}, "popularity_share"),
        ("/score", {"user_id": user, "item_ids": [item]}, "model"),
        ("/score", {"user_id": unknown, "item_ids": [item]}, "popularity_share"),
        ("/explain", {"user_id": user, "k": 2}, "model"),
        ("/explain", {"user_id": unknown, "k": 2}, "popularity_share"),
        ("/similar_items", {"item_id": item, "k": 3}, "similarity"),
        ("/recommend_recent", {"item_ids": [item], "k": 3}, "similarity"),
    ]
    for route, payload, kind in cases:
        status, body = post(server + route, payload)
        assert status == 200 and body["score_kind"] == kind, (route, payload, body)
        if kind == "popularity_share":
            assert all(0.0 < it["score"] < 1.0 for it in body["items"]), body
    _, everything = post(f"{server}/recommend", cases[1][1])
    assert sum(it["score"] for it in everything["items"]) == pytest.approx(1.0, abs=1e-4)


# --- OpenAPI: examples and error statuses ---------------------------------------------------------
def openapi(server: str) -> dict[str, Any]:
    status, spec = package.http("GET", f"{server}/docs.json")
    assert status == 200, spec
    return dict(spec)


def test_every_openapi_example_answers_200(server: str) -> None:
    """The request bodies Swagger UI's "Try it out" sends (the schema's ``example``) are
    answered by the served data, known users by the champion (issue 16)."""
    spec = openapi(server)
    for route in REQUESTS:
        body = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        example = body["schema"]["example"]
        status, answer = post(server + route, example)
        assert status == 200 and answer["items"], (route, example, answer)
        if "user_id" in example:
            assert answer["fallback"] is None, (route, example, answer)


def test_openapi_lists_the_statuses_the_service_answers(server: str) -> None:
    spec = openapi(server)
    for route in REQUESTS:
        responses = spec["paths"][route]["post"]["responses"]
        assert set(responses) == {"200", *map(str, ERROR_STATUSES)}, route
        schema = responses["422"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "model_tag" in spec["components"]["schemas"]["ErrorResponse"]["properties"]


def test_error_answers_carry_the_model_tag(server: str, models: fixtures.StoredModels) -> None:
    """Ours (413, 422) and BentoML's (400) alike; 503 is tested in test_error_answers.py."""
    cases: list[tuple[str, Any, bytes | None, int]] = [
        ("/recommend", {"user_id": 1, "k": 0}, None, 400),
        ("/recommend", None, b"{not json", 400),
        ("/score", {"user_id": 1, "item_ids": [10**10]}, None, 422),
        ("/recommend", {"user_id": 1, "genres": ["Nope"]}, None, 422),
        ("/recommend", None, b'{"user_id": 1' + b" " * 70_000 + b"}", 413),
    ]
    for route, body, raw, want in cases:
        status, payload = post(server + route, body, raw=raw)
        assert status == want and payload["model_tag"] == models.champion, (route, payload)
        assert payload["error"], payload


CHROMIUM = os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_swagger_ui_try_it_out_answers_200_on_every_endpoint(server: str, tmp_path: Path) -> None:
    """Issue 16: in the served Swagger UI (BentoML's index page, assets served by the bento
    itself), "Try it out" then "Execute" on each data-plane endpoint shows a 200 answer.
    Headless Debian Chromium through Playwright, a fresh profile, every request to another
    host refused (the page must work offline)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            outside: list[str] = []

            def offline(route: Any) -> None:
                if route.request.url.startswith(server):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", offline)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{server}/")
            for path in REQUESTS:
                block = page.locator(
                    ".opblock-post", has=page.locator(f'[data-path="{path}"]')
                ).first
                block.locator(".opblock-summary").click()
                block.locator("button.try-out__btn").click()
                block.locator("button.execute").click()
                status = block.locator(".live-responses-table tbody .response-col_status").first
                sync_api.expect(status).to_have_text("200")
                answer = block.locator(".live-responses-table .microlight").first
                sync_api.expect(answer).to_contain_text('"model_tag"')
        finally:
            context.close()
    assert all("127.0.0.1" not in url for url in outside), outside


# --- logs -----------------------------------------------------------------------------------------
CLIENT_ERRORS: list[bytes] = [
    b"{not json",
    b"",
    b"\xff\xfe",
    b"[1, 2]",
    b'{"k": 5}',
    b'{"user_id": "7"}',
    b'{"user_id": -1}',
    b'{"user_id": 1, "k": 0}',
    b'{"user_id": 1, "k": 1001}',
    b'{"user_id": 1, "colour": "red"}',
    b'{"user_id": 1, "genres": "Drama"}',
]


def test_client_errors_are_one_log_line_each(server: str, serve_log: Path) -> None:
    """Issue 16: BentoML logged each refused request as ``[ERROR] Exception on /recommend``
    with a full traceback. Now: one INFO line per request, naming the status and the field,
    and no traceback (a server error keeps its traceback: test_error_answers.py)."""
    before = len(serve_log.read_bytes())
    for raw in CLIENT_ERRORS:
        assert post(f"{server}/recommend", raw=raw)[0] == 400, raw
    line = "client error 400 on /recommend [POST]"
    deadline = time.monotonic() + 10.0
    while True:  # the worker's log lines reach the file a moment later
        new = serve_log.read_bytes()[before:].decode("utf-8", "replace")
        if new.count(line) >= len(CLIENT_ERRORS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert new.count(line) == len(CLIENT_ERRORS), new
    assert "Traceback" not in new and "Exception on" not in new and "[ERROR]" not in new, new
    logged = [ln for ln in new.splitlines() if line in ln]
    assert all("[INFO]" in ln for ln in logged), logged
    assert any(ln.endswith("k: Input should be greater than or equal to 1") for ln in logged)


# --- malformed requests: 4xx naming the field, never 5xx ------------------------------------------
BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("/recommend", {"k": 5}, 400, "user_id"),
    ("/recommend", {"user_id": "7"}, 400, "user_id"),
    ("/recommend", {"user_id": True}, 400, "user_id"),
    ("/recommend", {"user_id": -1}, 400, "user_id"),
    ("/recommend", {"user_id": 2**64}, 400, "user_id"),
    ("/recommend", {"user_id": 1.5}, 400, "user_id"),
    ("/recommend", {"user_id": 1, "k": 0}, 400, "k"),
    ("/recommend", {"user_id": 1, "k": 1001}, 400, "k"),
    ("/recommend", {"user_id": 1, "exclude_seen": "no"}, 400, "exclude_seen"),
    ("/recommend", {"user_id": 1, "genres": "Drama"}, 400, "genres"),
    ("/recommend", {"user_id": 1, "genres": ["Nope"]}, 422, "genres"),
    ("/recommend", {"user_id": 1, "colour": "red"}, 400, "colour"),
    ("/recommend", [1, 2], 400, "model_type"),
    ("/recommend_recent", {"item_ids": []}, 400, "item_ids"),
    ("/recommend_recent", {"item_ids": [10**10]}, 422, "item_ids"),
    ("/recommend_recent", {"item_ids": list(range(MAX_ITEMS + 1))}, 400, "item_ids"),
    ("/similar_items", {"item_id": 10**10}, 422, "item_id"),
    ("/score", {"user_id": 1, "item_ids": [1, 10**10]}, 422, "10000000000"),
    ("/score", {"user_id": 1, "item_ids": None}, 400, "item_ids"),
    ("/explain", {"user_id": 1, "k": -3}, 400, "k"),
]


@pytest.mark.parametrize(("route", "body", "status", "named"), BAD_REQUESTS)
def test_malformed_requests_get_a_4xx_naming_the_field(
    server: str, route: str, body: Any, status: int, named: str
) -> None:
    got, payload = post(server + route, body)
    assert got == status, payload
    assert named in json.dumps(payload), payload


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"\xff\xfe", 400),
        (b'{"user_id": 1' + b" " * 70_000 + b"}", 413),
    ],
)
def test_broken_and_oversized_bodies_are_4xx(server: str, raw: bytes, status: int) -> None:
    got, payload = post(f"{server}/recommend", raw=raw)
    assert got == status, payload


def test_metrics_count_fallbacks_unknown_ids_and_index_type(server: str) -> None:
    post(f"{server}/recommend", {"user_id": 10**15, "k": 1})
    post(f"{server}/score", {"user_id": 1, "item_ids": [10**10]})
    status, text = package.http("GET", f"{server}/metrics")
    assert status == 200
    lines = str(text).splitlines()

    def value(prefix: str) -> float:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(prefix))

    assert value('recsys_fallbacks_total{endpoint="recommend",fallback="popularity"}') >= 1
    assert value('recsys_unknown_ids_total{endpoint="score",field="item_ids"}') >= 1
    assert value('recsys_index_info{index_type="exact"') == 1


# --- the fast path -------------------------------------------------------------------------------
def raw_post(url: str, body: bytes, content_type: str | None) -> tuple[int, dict[str, str], Any]:
    """(status, the headers BentoML's answers carry, JSON or text body)."""
    req = urllib.request.Request(url, data=body, method="POST")
    if content_type is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, headers, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, payload = exc.code, exc.headers, exc.read()
    kept = {k: headers.get(k, "") for k in ("content-type", "server")}
    try:
        return status, kept, json.loads(payload)
    except ValueError:
        return status, kept, payload.decode("utf-8", "replace")


def test_the_fast_path_answers_as_bentomls_api_does(
    server: str, models: fixtures.StoredModels
) -> None:
    """Every kind of /recommend request gets the same status, body and headers from the default
    bento (``serving.fast_path``) as from one built with it off (BentoML's API for all)."""
    user = int(USERS[0])
    genre = fixtures.catalogue().genre_names[0]
    cases: list[tuple[bytes, str | None]] = [
        *[
            (json.dumps({"user_id": int(u), "k": 7}).encode(), "application/json")
            for u in USERS[:5]
        ],
        (json.dumps({"user_id": user, "k": 3, "exclude_seen": False}).encode(), None),
        (
            json.dumps({"user_id": user, "genres": [genre]}).encode(),
            "application/json; charset=utf-8",
        ),
        (json.dumps({"user_id": 10**15, "k": 2}).encode(), "application/json"),  # fallback
        (json.dumps({"user_id": user, "genres": ["no such genre"]}).encode(), "application/json"),
        (json.dumps({"user_id": "x"}).encode(), "application/json"),
        (json.dumps({"user_id": user, "k": 1001}).encode(), "application/json"),
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (json.dumps({"user_id": user, "k": 2}).encode(), "text/plain"),
    ]
    serving = ServingConfig(fast_path=False)
    tag = package.build_bento(models.champion, models.catalogue, serving=serving, home=models.home)
    with package.serving(tag, home=models.home) as (plain, proc, log):
        assert package.wait_ready(plain, proc, READY_TIMEOUT_S) is not None, log.read_text()
        statuses = set()
        for body, content_type in cases:
            fast = raw_post(f"{server}/recommend", body, content_type)
            want = raw_post(f"{plain}/recommend", body, content_type)
            assert fast == want, (body, content_type)
            statuses.add(fast[0])
    assert statuses == {200, 400, 422}  # answers, BentoML's validation errors, our refusals


# --- ANN inside the service ----------------------------------------------------------------------
def test_ann_parity_with_the_offline_two_stage(models: fixtures.StoredModels) -> None:
    """A two-stage model with HNSW retrieval and M=20, served from source: the answers equal
    the same stored model's offline ``recommend`` (the service calls that same method)."""
    gated = fixtures.model(rerank_top=20, retrieval=RetrievalConfig(kind="hnsw"))
    tag = fixtures.store_model(gated, models.home)
    args = {
        "champion": tag,
        "catalogue": models.catalogue,
        "lineage": package.lineage(tag, home=models.home),
    }
    offline = store.load_model(tag, home=models.home)
    target = "recsys.serving.service:RecommenderService"
    with package.serving(target, home=models.home, args=args) as (url, proc, log):
        assert package.wait_ready(url, proc, READY_TIMEOUT_S) is not None, log.read_text()[-3000:]
        users = USERS[:50]
        want, _ = offline.recommend(users, 10)
        for row, user in enumerate(users.tolist()):
            status, body = post(f"{url}/recommend", {"user_id": user, "k": 10})
            assert status == 200 and body["index_type"] == "hnsw", body
            assert [it["item_id"] for it in body["items"]] == want[row][want[row] >= 0].tolist()


# --- infra validation ----------------------------------------------------------------------------
def test_validate_marks_a_working_bento_deployable(
    bento: str, models: fixtures.StoredModels, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    assert cli.main(["bento", "validate", bento, "--registry", str(registry)]) == 0
    assert package.deployable(registry) == bento
    name, _, version = bento.partition(":")
    report = json.loads((registry / "bentos" / name / f"{version}.json").read_text())
    assert report["deployable"] and len(report["checks"]) >= 10


def test_validate_refuses_a_bento_whose_model_does_not_load(
    bento: str, models: fixtures.StoredModels, tmp_path: Path
) -> None:
    """A model missing from the serving environment (RELIABILITY.md item 20): not deployable,
    and the previously deployable bento stays the deployable one."""
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / package.DEPLOYABLE_FILE).write_text(json.dumps({"bento_tag": "recsys:before"}))
    shutil.rmtree(store.model_path(models.catalogue, home=models.home))
    report = package.validate_bento(bento, home=models.home, registry=registry, timeout_s=60)
    assert not report.deployable
    assert report.checks[0].name == "ready" and not report.checks[0].passed
    assert package.deployable(registry) == "recsys:before"
