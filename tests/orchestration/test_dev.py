"""``dagster dev`` as the README starts it (from the repository root, no ``-m``: pyproject.toml's
``[tool.dagster]``) serves the UI, and SIGTERM stops it with every process it started: the
webserver, the daemon and the code servers (issue #16)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # ~20 s: four Python processes start on 127.0.0.1

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
EXIT_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[str]:
    ps = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "-g", str(pgid)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.strip() for line in ps.stdout.splitlines() if line.strip()]


def test_dagster_dev_exits_on_sigterm_with_its_children(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: every child is found and cleaned up
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster dev did not serve in time"
                time.sleep(1)
        expected = ("dagster_webserver", "dagster._daemon", "-m orchestration.definitions")
        while not all(any(e in c for c in group_members(proc.pid)) for e in expected):
            assert time.monotonic() < deadline, [c[:120] for c in group_members(proc.pid)]
            time.sleep(1)

        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=EXIT_TIMEOUT_S)
        while group_members(proc.pid) and time.monotonic() - start < EXIT_TIMEOUT_S:
            time.sleep(0.5)
        assert group_members(proc.pid) == [], "children left behind after SIGTERM"
        assert time.monotonic() - start < EXIT_TIMEOUT_S
        assert "Dagster services shut down" in (tmp_path / "dev.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
