"""``dvc repro`` runs the CLI stages, reproduces the prepared data bit for bit, and the local
remote round-trips through ``dvc push`` / ``dvc pull`` without a network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def outs_md5(project: Path) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throw-away copy of this repository's DVC project with a small synthetic data set."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, proj / name)
    shutil.copytree(REPO / "recsys", proj / "recsys", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data" / "raw", proj / "data" / "raw")
    shutil.copytree(
        REPO / ".dvc", proj / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local")
    )
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"]["synthetic"]["n_interactions"] = 3000
    params["preprocess"]["min_user_interactions"] = 3
    params["preprocess"]["min_item_interactions"] = 3
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], proj)
    run(["dvc", "remote", "add", "--local", "--default", "local", str(tmp_path / "remote")], proj)
    return proj


# The data stages; the model stages (train@*, evaluate@*) run in tests/orchestration/, and
# tests/recsys/test_pipeline.py checks that their outputs are bit for bit too.
DATA = "preprocess"


def test_repro_is_bit_for_bit_and_push_pull_round_trips(project: Path) -> None:
    run(["dvc", "repro", DATA], project)
    first = outs_md5(project)
    assert set(first) == {"data/prepared", "data/processed"}
    prepared = {p.name: p.read_bytes() for p in (project / "data/prepared").iterdir()}

    run(["dvc", "repro", "--force", DATA], project)
    assert outs_md5(project) == first
    assert {p.name: p.read_bytes() for p in (project / "data/prepared").iterdir()} == prepared

    # unchanged inputs: nothing reruns
    again = run(["dvc", "repro", DATA], project)
    assert "Running stage" not in again
    assert "up to date" in run(["dvc", "status", DATA], project)

    run(["dvc", "push"], project)
    shutil.rmtree(project / "data" / "prepared")
    shutil.rmtree(project / "data" / "processed")
    shutil.rmtree(project / ".dvc" / "cache")
    run(["dvc", "pull", "--with-deps", DATA], project)
    assert {p.name: p.read_bytes() for p in (project / "data/prepared").iterdir()} == prepared
    assert "up to date" in run(["dvc", "status", DATA], project)


def test_changed_params_rerun_only_downstream(project: Path) -> None:
    run(["dvc", "repro", DATA], project)
    prepared_md5 = outs_md5(project)["data/prepared"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["preprocess"]["split"]["method"] = "random_holdout"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = run(["dvc", "repro", DATA], project)
    assert "Running stage 'preprocess'" in out and "Running stage 'prepare'" not in out
    assert outs_md5(project)["data/prepared"] == prepared_md5


def test_new_raw_file_reruns_prepare(project: Path) -> None:
    run(["dvc", "repro", DATA], project)
    (project / "data" / "raw" / "plays.csv").write_text("user,item\n1,2\n")
    assert "Running stage 'prepare'" in run(["dvc", "repro", DATA], project)
