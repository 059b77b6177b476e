"""Issue 19 §3: a new champion's bento replaces the running one behind HAProxy with no failed
request, and a rollback is served the same way. Clients send requests without pause (over
kept-alive connections) through both switches: every answer is a 200 and each client's model
tag changes exactly once per switch.

Needs Debian's haproxy (.ci/run installs it); skipped with that reason where it is missing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import cli
from recsys.serving import bluegreen, infra, package
from recsys.serving.store import Registry
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures
from tests.serving.test_serve import make_registry

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="Debian's haproxy is not installed (apt-get install haproxy; .ci/run does)",
)
CLIENTS = 4
USERS = synthetic_data().vocab.user_ids[:40].tolist()


@pytest.fixture(scope="module")
def built(models: fixtures.StoredModels) -> dict[str, str]:
    """Bentos of two different champions: {champion tag: bento tag}."""
    other = fixtures.store_model(fixtures.model(rerank_top=20), models.home)
    assert other != models.champion
    return {
        champion: package.build_bento(champion, models.catalogue, home=models.home)
        for champion in (models.champion, other)
    }


@pytest.fixture(scope="module")
def two_bentos(
    built: dict[str, str], models: fixtures.StoredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Both bentos served: {champion tag: host:port}."""
    work = tmp_path_factory.mktemp("bluegreen")
    with contextlib.ExitStack() as stack:
        yield {
            champion: stack.enter_context(bluegreen.served_bento(bento, work, home=models.home))
            for champion, bento in built.items()
        }


def client(url: str, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    """POST /recommend without pause on one kept-alive connection: (status, model tag)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    i = 0
    while not stop.is_set():
        body = json.dumps({"user_id": USERS[i % len(USERS)], "k": 5})
        try:
            conn.request("POST", "/recommend", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            payload = json.loads(answer.read())
            seen.append((answer.status, payload.get("model_tag", "")))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            seen.append((0, repr(exc)))
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        i += 1
    conn.close()


def runs(tags: list[str]) -> list[tuple[str, int]]:
    """(tag, answers) in the order served, consecutive repeats collapsed."""
    out: list[tuple[str, int]] = []
    for tag in tags:
        if out and out[-1][0] == tag:
            out[-1] = (tag, out[-1][1] + 1)
        else:
            out.append((tag, 1))
    return out


@pytest.mark.slow
def test_a_switch_and_a_rollback_drop_no_request(
    two_bentos: dict[str, str], models: fixtures.StoredModels, tmp_path: Path
) -> None:
    old, new = models.champion, next(t for t in two_bentos if t != models.champion)
    front = bluegreen.BlueGreen(tmp_path, port=infra.free_port())
    with front.running(two_bentos[old]):
        stop = threading.Event()
        seen: list[list[tuple[int, str]]] = [[] for _ in range(CLIENTS)]
        threads = [
            threading.Thread(target=client, args=(front.url, stop, s), daemon=True) for s in seen
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert front.switch(two_bentos[new]) == two_bentos[old]  # the promotion
        assert front.in_flight("blue") == 0
        time.sleep(1.0)
        assert front.switch(two_bentos[old]) == two_bentos[new]  # the rollback
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(15)
    for answers in seen:
        failed = [a for a in answers if a[0] != 200]
        assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"
        served = runs([tag for _, tag in answers])
        assert [tag for tag, _ in served] == [old, new, old], served
        assert min(n for _, n in served) >= 5, f"too few requests around a switch: {served}"


def test_switching_to_a_bento_that_is_not_ready_changes_nothing(
    two_bentos: dict[str, str], models: fixtures.StoredModels, tmp_path: Path
) -> None:
    front = bluegreen.BlueGreen(tmp_path, port=infra.free_port())
    with front.running(two_bentos[models.champion]):
        with pytest.raises(bluegreen.SwitchError, match="not ready"):
            front.switch(f"127.0.0.1:{infra.free_port()}")
        assert front.active == "blue"
        status, body = infra.http("POST", f"{front.url}/recommend", {"user_id": USERS[0], "k": 3})
        assert status == 200 and body["model_tag"] == models.champion


@pytest.mark.slow
def test_the_front_follows_the_registry_through_a_promotion_and_a_rollback(
    built: dict[str, str], models: fixtures.StoredModels, tmp_path: Path
) -> None:
    """`recsys serve --front`'s loop: the registry names another deployable bento (a
    promotion), then the first again (a rollback); the front switches each time while clients
    keep sending, and stopping it stops every bento it started."""
    old, new = models.champion, next(t for t in built if t != models.champion)
    root = make_registry(tmp_path / "registry", old, built[old])
    front = bluegreen.BlueGreen(tmp_path / "front", port=infra.free_port())
    stop, lines = threading.Event(), list[str]()
    loop = threading.Thread(
        target=bluegreen.supervise,
        args=(Registry(root), front, stop),
        kwargs={"poll_s": 0.3, "log": lines.append},
        daemon=True,
    )
    loop.start()

    def wait_for(line: str) -> None:
        deadline = time.monotonic() + 180
        while not any(line in seen for seen in lines):
            assert loop.is_alive() and time.monotonic() < deadline, lines
            time.sleep(0.2)

    wait_for(f"serving {built[old]}")
    clients_stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(CLIENTS)]
    threads = [
        threading.Thread(target=client, args=(front.url, clients_stop, s), daemon=True)
        for s in seen
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    make_registry(root, new, built[new])  # a promotion and its validated bento
    wait_for(f"switched to {built[new]}")
    time.sleep(1.0)
    make_registry(root, old, built[old])  # the rollback, its bento deployable again
    wait_for(f"switched to {built[old]}")
    time.sleep(1.0)
    clients_stop.set()
    for t in threads:
        t.join(15)
    stop.set()
    loop.join(60)
    assert not loop.is_alive()
    for answers in seen:
        failed = [a for a in answers if a[0] != 200]
        assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"
        assert [tag for tag, _ in runs([tag for _, tag in answers])] == [old, new, old]
    for address in front.addresses.values():
        assert infra.http("GET", f"http://{address}/livez")[0] == 0, f"{address} still serves"
    assert infra.http("GET", f"{front.url}/livez")[0] == 0, "haproxy still serves"


def test_the_front_without_a_champion_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = make_registry(tmp_path / "registry", None, None)
    args = ["serve", "--front", str(infra.free_port()), "--registry", str(registry)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "there is no champion yet" in err and "recsys promote" in err
