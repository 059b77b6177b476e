"""End to end through the UI's server: dagster-webserver on 127.0.0.1 launches the job over
GraphQL and it succeeds; with Debian's chromium present, the asset graph renders the names."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
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
    "raw_interactions", "prepared_interactions", "processed_interactions",
    "mostpop_model", "ease_model", "model_metrics", "gate_decision", "champion_model",
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
            pytest.skip("Debian's chromium is not installed: the render check needs it")
        profile = tmp_path / "chromium-profile"
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={profile}", "--virtual-time-budget=15000",
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}/asset-groups"
        subprocess.run(
            [chromium, *flags, f"--screenshot={tmp_path / 'asset-graph.png'}", url],
            timeout=120,
            capture_output=True,
        )
        dom = subprocess.run(
            [chromium, *flags, "--dump-dom", url], timeout=120, capture_output=True, text=True
        ).stdout
        for name in ("raw_interactions", "processed_interactions", "model_metrics"):
            assert name in dom, name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
