"""A second run of the main job on unchanged data leaves the git tree clean (issue #16, part 5).

A clone of this repository's HEAD with a small synthetic data set runs ``bin/pipeline``, the
result is committed (dvc.lock, data/registry.dvc, .gitignore entries), and ``bin/pipeline``
runs again: nothing tracked by git may change (no re-promotion, no rewritten registry, no
re-validated bento, no new hash in dvc.lock). About 3 minutes on 2 CPU cores, offline: the
BentoML store and the DVC remote live in the test's temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SMALL = {
    ("data", "synthetic", "n_interactions"): 5000,
    ("preprocess", "min_user_interactions"): 3,
    ("preprocess", "min_item_interactions"): 3,
    ("models", "neumf", "epochs"): 1,
    ("models", "twotower", "epochs"): 2,
    ("gate", "min_metrics"): {"ndcg@10": 0.0},
}
"""params.yaml changes that keep two runs within a few minutes; the floor at 0 lets the gate
promote (so the registry and the bento are written) whatever the small data scores."""
VENV_BIN = Path(sys.executable).parent


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@test", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def stamped_venv(repo: Path, root: Path) -> Path:
    """A virtualenv for ``RECSYS_VENV`` that the bootstrap finds up to date, so that
    ``bin/pipeline`` runs without installing (offline): its ``python`` and ``dvc`` run this
    test's interpreter and DVC, and its stamp is the one ``bin/_bootstrap.sh`` computes for
    the clone's pins and no extra."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "dvc"):
        target = sys.executable if name == "python" else str(VENV_BIN / "dvc")
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    pins = (repo / "pyproject.toml").read_bytes() + (repo / "requirements.lock").read_bytes()
    (root / ".recsys-installed").write_text(hashlib.sha256(pins).hexdigest()[:16] + "-base\n")
    return root


def run_pipeline(repo: Path, tmp: Path) -> str:
    env = {
        **os.environ,
        "RECSYS_VENV": str(tmp / "venv"),
        "RECSYS_DVC_REMOTE": str(tmp / "dvc-remote"),
        "BENTOML_HOME": str(tmp / "bentoml"),
        "DAGSTER_HOME": str(repo / ".dagster"),
        # The clone's code, not the checkout the virtualenv's editable install points at.
        "PYTHONPATH": str(repo),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RECSYS_ROOT", None)
    proc = subprocess.run(
        [str(repo / "bin" / "pipeline")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (
        f"bin/pipeline failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout


def test_second_run_leaves_the_tree_clean(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(repo)], check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for keys, value in SMALL.items():
        section = params
        for key in keys[:-1]:
            section = section[key]
        section[keys[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stamped_venv(repo, tmp_path / "venv")

    first = run_pipeline(repo, tmp_path)
    assert "gate decision: PROMOTE" in first, first[-3000:]
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "first run")

    second = run_pipeline(repo, tmp_path)
    assert "already is the champion" in second, second[-3000:]
    status = git(repo, "status", "--porcelain")
    assert status == "", f"the second run changed tracked files:\n{status}\n{git(repo, 'diff')}"
