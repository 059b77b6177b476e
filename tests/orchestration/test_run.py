"""The headless run (``bin/pipeline``) tags each run with the tunables, DVC versions and code it
ran with (issue #16)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from orchestration.run import run_tags


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def test_run_tags_name_params_lock_and_commit(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("models:\n  ease: {}\n")
    tags = run_tags(tmp_path)
    sha = hashlib.sha256(b"models:\n  ease: {}\n").hexdigest()[:16]
    assert tags == {"recsys/params_sha256": sha, "recsys/dvc_lock_sha256": "none"}
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "params.yaml")
    git(tmp_path, "commit", "-qm", "x")
    commit = run_tags(tmp_path)["recsys/git_commit"]
    assert len(commit) == 12 and "+" not in commit
    (tmp_path / "params.yaml").write_text("models:\n  ease: {l2: 1.0}\n")
    changed = run_tags(tmp_path)
    assert changed["recsys/git_commit"] == commit + "+dirty"
    assert changed["recsys/params_sha256"] != sha
