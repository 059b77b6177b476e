"""End to end through the UI's server: dagster-webserver on 127.0.0.1 launches the job over
GraphQL and it succeeds; then headless Debian chromium (installed by .ci/run; the test skips
that part without it) opens the asset graph, dismisses the first-visit dialog, checks that the
asset names are drawn and that an asset selection narrows the graph, and saves a screenshot
(``<tmp>/asset-graph.png``, copied to the git-ignored ``reports/ui/``)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.orchestration.conftest import make_project

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
LOCATION = "orchestration.definitions"
# Everything but the bento: it needs a two-tower retriever (TensorFlow) and a served round trip.
ASSETS = (
    "raw_interactions", "prepared_interactions", "processed_interactions", "tuned_settings",
    "mostpop_model", "ease_model", "bpr_model", "model_metrics", "served_rankings",
    "gate_decision", "champion_model",
)  # fmt: skip
INSTANCE = """\
telemetry:
  enabled: false
run_coordinator:  # launch at once: no daemon in this test
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
concurrency:
  pools:
    default_limit: 1
"""


CHROMIUM_FLAGS = (  # STACK-NOTES.md: what Debian's chromium needs headless on our machines
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1600,1000",
)  # fmt: skip
RENDERED = (  # names short enough to be drawn whole ("proc…_interactions" is elided)
    "raw_interactions", "mostpop_model", "ease_model", "model_metrics", "gate_decision",
    "champion_model", "recommender_bento",
)  # fmt: skip
GRAPH_TEXT = (  # the asset graph's node labels (SVG foreignObjects), joined
    "[...document.querySelectorAll('svg foreignObject')].map(f => f.textContent).join(' | ')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dagster-webserver exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError("dagster-webserver did not come up")


class Chromium:
    """Headless Debian chromium driven over the DevTools protocol (a websocket to 127.0.0.1).

    Plain ``--dump-dom``/``--screenshot`` cannot click, and the UI needs two clicks' worth of
    input: the first-visit "Join the Dagster community" dialog covers the page until "Skip" is
    pressed. ``websockets`` comes with dagster-webserver (uvicorn[standard]).
    """

    def __init__(self, executable: str, profile: Path) -> None:
        from websockets.sync.client import connect

        profile.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert self.proc.poll() is None, "chromium exited at start-up"
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )
        self._id = 0

    def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # skip events; the answer carries our id
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == self._id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression}")
            time.sleep(0.5)
        return value

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_for_nodes(browser: Chromium, names: tuple[str, ...]) -> str:
    """The graph's node labels once every one of ``names`` is drawn."""
    condition = f"{json.dumps(names)}.every(n => t.includes(n))"
    text: str = browser.wait_for(f"(() => {{ const t = {GRAPH_TEXT}; return {condition} && t }})()")
    return text


def check_asset_graph_renders(chromium: str, port: int, groups: list[str], tmp: Path) -> Path:
    """The lineage page with every group expanded shows the asset nodes; a selection typed as
    the UI writes it (parsed in the browser) narrows the graph. Returns the screenshot."""
    expanded = urllib.parse.quote(",".join(f"global@global:{g}" for g in groups))
    base = f"http://127.0.0.1:{port}/asset-groups"
    browser = Chromium(chromium, tmp / "chromium-profile")
    try:
        browser.call("Page.navigate", url=f"{base}?expanded={expanded}")
        graph = wait_for_nodes(browser, RENDERED)
        # The first-visit dialog opens once the app has loaded; it covers the graph until "Skip".
        skip = "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Skip')"
        deadline = time.monotonic() + 15
        while not browser.js(f"!!{skip}") and time.monotonic() < deadline:
            time.sleep(0.5)
        browser.js(f"{skip}?.click()")
        browser.wait_for("!document.body.innerText.includes('Join the Dagster community')", 15)
        time.sleep(1)  # let the graph repaint without the overlay
        shot = browser.screenshot(tmp / "asset-graph.png")
        for name in RENDERED:
            assert name in graph, name

        selection = urllib.parse.quote("key:gate_decision+", safe="")
        browser.call("Page.navigate", url=f"{base}~{selection}/?expanded={expanded}")
        narrowed = wait_for_nodes(browser, ("gate_decision", "champion_model"))
        assert "raw_interactions" not in narrowed, narrowed
        return shot
    finally:
        browser.close()


def test_webserver_launches_the_job_and_renders_the_graph(tmp_path: Path) -> None:
    project = make_project(tmp_path / "repo")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RECSYS_ROOT": str(project),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    port = free_port()
    log = (tmp_path / "webserver.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(port, proc)
        launched = graphql(
            port,
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
            {
                "p": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "jobName": "training_job",
                        "assetSelection": [{"path": [a]} for a in ASSETS],
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status, deadline = "", time.monotonic() + 600
        while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
            time.sleep(3)
            status = graphql(
                port,
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                {"id": run_id},
            )["runOrError"]["status"]
        assert status == "SUCCESS", (tmp_path / "webserver.log").read_text()[-3000:]
        assert (project / "data" / "registry" / "champion.json").is_file()

        chromium = shutil.which("chromium")
        if chromium is None:
            pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
        groups = sorted(
            {n["groupName"] for n in graphql(port, "{ assetNodes { groupName } }")["assetNodes"]}
        )
        screenshot = check_asset_graph_renders(chromium, port, groups, tmp_path)
        copy = REPO / "reports" / "ui" / screenshot.name  # git-ignored, for a human to look at
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, copy)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
