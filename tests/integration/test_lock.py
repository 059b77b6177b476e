"""The committed dvc.lock records the committed code and parameters (issue 16, part 5).

A dvc.lock that disagrees with the code makes a fresh clone's first `bin/pipeline` re-run every
stage and leave dvc.lock modified. Whoever changes a stage's code or parameters runs the main
job and commits dvc.lock with the change; this test fails otherwise, naming the stages and
what changed. Data dependencies and outputs are not compared: a fresh clone has no data yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

BIN = Path(sys.executable).parent
CODE_DEPS = ("recsys/", "params.yaml", "dvc.yaml")


def stale_stages(status: dict[str, Any]) -> dict[str, list[str]]:
    """Stage -> what in its code, parameters or command differs from dvc.lock."""
    stale: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed", ...
                stale.setdefault(stage, []).append(entry)
                continue
            for dep, state in entry.get("changed deps", {}).items():
                if dep.startswith(CODE_DEPS):
                    stale.setdefault(stage, []).append(f"{dep}: {state}")
    return stale


def test_stale_stages_are_named() -> None:
    status = {
        "train@ease": [
            {"changed deps": {"data/processed": "deleted", "recsys/models": "modified"}},
            {"changed outs": {"models/ease": "not in cache"}},
        ],
        "prepare": [{"changed deps": {"params.yaml": {"data.source": "modified"}}}],
        "twostage@ease": ["changed command"],
        "preprocess": [{"changed deps": {"data/prepared": "deleted"}}],
    }
    assert stale_stages(status) == {
        "train@ease": ["recsys/models: modified"],
        "prepare": ["params.yaml: {'data.source': 'modified'}"],
        "twostage@ease": ["changed command"],
    }


def test_dvc_lock_matches_the_committed_code() -> None:
    proc = subprocess.run(
        [str(BIN / "dvc"), "status", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    stale = stale_stages(json.loads(proc.stdout or "{}"))
    assert not stale, (
        "dvc.lock does not record the current code/parameters of these stages: "
        f"{json.dumps(stale, indent=1)}\nrun bin/pipeline and commit dvc.lock with the change"
    )
