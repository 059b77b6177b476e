"""``source bin/_bootstrap.sh`` leaves the caller's shell options and cwd as they were, puts the
virtualenv on PATH, and still fails strictly inside bin/test and bin/pipeline (issue #16).

Runs on a copy of the script in a temporary root with a stand-in virtualenv (its ``python`` is
this interpreter, its ``dvc`` records its arguments and can be told to fail), so the test never
installs anything nor touches this checkout's ``.dvc/config.local``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FAKE_DVC = """#!/usr/bin/env bash
echo "$@" >>"$(dirname "$0")/dvc.calls"
exit "${FAKE_DVC_EXIT:-0}"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A checkout with the bootstrap script and an up-to-date (stamped) virtualenv."""
    root = tmp_path / "repo"
    (root / "bin").mkdir(parents=True)
    shutil.copy(REPO / "bin" / "_bootstrap.sh", root / "bin" / "_bootstrap.sh")
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "dvc").write_text(FAKE_DVC)
    (venv_bin / "dvc").chmod(0o755)
    pins = (root / "pyproject.toml").read_bytes() + (root / "requirements.lock").read_bytes()
    (root / ".venv" / ".recsys-installed").write_text(
        hashlib.sha256(pins).hexdigest()[:16] + "-dev\n"
    )
    subprocess.run(["git", "init", "--quiet", str(root)], check=True)
    return root


def bash(script: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HOME": str(root.parent / "home"),
        "RECSYS_DVC_REMOTE": str(root.parent / "remote"),
        **env,
    }
    environ.pop("RECSYS_VENV", None)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=root.parent,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SOURCE_AND_COMPARE = """
set -o >"$TMP/before"; echo "$-" >>"$TMP/before"; shopt >>"$TMP/before"; pwd >>"$TMP/before"
source repo/bin/_bootstrap.sh dev; status=$?
set -o >"$TMP/after"; echo "$-" >>"$TMP/after"; shopt >>"$TMP/after"; pwd >>"$TMP/after"
echo "status=$status"
echo "PATH=$PATH"
echo "still here"
"""


def test_sourcing_keeps_the_callers_shell_options(root: Path) -> None:
    tmp = root.parent
    result = bash(SOURCE_AND_COMPARE, root, TMP=str(tmp))
    assert result.returncode == 0, result.stderr
    assert "status=0" in result.stdout
    assert (tmp / "before").read_text() == (tmp / "after").read_text()
    # The options really were lax before: `set -euo pipefail` did not leak.
    assert "errexit        \toff" in (tmp / "after").read_text()
    assert "pipefail       \toff" in (tmp / "after").read_text()
    path = next(line for line in result.stdout.splitlines() if line.startswith("PATH="))
    assert path.removeprefix("PATH=").split(":")[0] == str(root / ".venv" / "bin")
    # The strict body did its work: the local DVC remote was configured.
    calls = (root / ".venv" / "bin" / "dvc.calls").read_text()
    assert f"remote add --local --default --force local {tmp / 'remote'}" in calls


def test_a_failure_returns_non_zero_without_closing_the_shell(root: Path) -> None:
    tmp = root.parent
    result = bash(SOURCE_AND_COMPARE, root, TMP=str(tmp), FAKE_DVC_EXIT="3")
    assert result.returncode == 0, result.stderr
    assert "status=1" in result.stdout and "still here" in result.stdout
    assert (tmp / "before").read_text() == (tmp / "after").read_text()
    path = next(line for line in result.stdout.splitlines() if line.startswith("PATH="))
    assert str(root / ".venv" / "bin") not in path
    assert "bootstrap: failed" in result.stderr


def test_strict_callers_stop_at_a_failure(root: Path) -> None:
    # What bin/test and bin/pipeline do: strict, then source; a failure must stop them.
    script = 'set -euo pipefail\nsource repo/bin/_bootstrap.sh dev\necho "went on"\n'
    failed = bash(script, root, FAKE_DVC_EXIT="3")
    assert failed.returncode != 0 and "went on" not in failed.stdout
    ok = bash(script + 'case "$-" in *e*) echo strict;; esac\n', root)
    assert ok.returncode == 0 and "went on" in ok.stdout and "strict" in ok.stdout


@pytest.mark.parametrize("script", ["test", "pipeline"])
def test_bin_scripts_are_strict(script: str) -> None:
    head = (REPO / "bin" / script).read_text().splitlines()
    assert "set -euo pipefail" in head[:12]
    assert head.index("set -euo pipefail") < next(
        i for i, line in enumerate(head) if "_bootstrap.sh" in line
    )


FAKE_PIP_PYTHON = """#!/usr/bin/env bash
# Records each `python -m pip install ...` and the constraints file it was given.
echo "$@" >>"$(dirname "$0")/pip.calls"
prev=""
for arg in "$@"; do
    [ "$prev" = "-c" ] && cp "$arg" "$(dirname "$0")/constraints.seen"
    prev="$arg"
done
"""


def test_overrides_are_installed_after_the_resolver_pass(root: Path) -> None:
    # A stale stamp makes the bootstrap install: the lock's "# override" pins (antlr for
    # dagster's selection parser) must stay out of the resolver's constraints and then be
    # installed with --no-deps, in that order.
    venv_bin = root / ".venv" / "bin"
    (venv_bin / "python").unlink()
    (venv_bin / "python").write_text(FAKE_PIP_PYTHON)
    (venv_bin / "python").chmod(0o755)
    (root / ".venv" / ".recsys-installed").write_text("stale\n")
    result = bash("source repo/bin/_bootstrap.sh dev", root)
    assert result.returncode == 0, result.stderr
    calls = (venv_bin / "pip.calls").read_text().splitlines()
    assert len(calls) == 2
    assert calls[0].startswith("-m pip install") and f"-e {root}[dev]" in calls[0]
    assert calls[1].startswith("-m pip install") and "--no-deps" in calls[1]
    lock = (root / "requirements.lock").read_text().splitlines()
    overrides = [line.split()[0] for line in lock if "# override" in line and "==" in line]
    assert "antlr4-python3-runtime==4.13.2" in overrides
    assert calls[1].split()[-len(overrides) :] == overrides
    seen = [
        line
        for line in (venv_bin / "constraints.seen").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = [line for line in lock if line and not line.startswith("#")]
    assert sorted(seen) == sorted(p for p in pins if p.split()[0] not in overrides)
    assert (root / ".venv" / ".recsys-installed").read_text().endswith("-dev\n")
