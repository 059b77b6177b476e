"""Launchpad overrides (``StageConfig.set_params``) go through params.yaml, strictly checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.defs.resources import DvcProject
from recsys.config import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> DvcProject:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return DvcProject(root=str(tmp_path))


def test_an_override_is_written_into_params_yaml_keeping_comments(project: DvcProject) -> None:
    path = project.path / "params.yaml"
    comments = [line for line in path.read_text().splitlines() if line.lstrip().startswith("#")]
    overrides = ["preprocess.split.test_fraction=0.15", "validation.sample_rows=3"]
    applied = project.set_params(overrides)
    assert applied == {"preprocess.split.test_fraction": 0.15, "validation.sample_rows": 3}
    params = load_params(path)
    assert params.preprocess.split.test_fraction == 0.15
    assert params.validation.sample_rows == 3
    after = path.read_text().splitlines()
    assert all(line in after for line in comments)  # the file is edited, not re-dumped


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("preprocess.split.no_such_key=1", "no_such_key"),
        ("preprocess.split.test_fraction=lots", "test_fraction"),
        ("nosection.key=1", "nosection"),
        ("just-a-word", "KEY=VALUE"),
    ],
)
def test_a_bad_override_fails_and_leaves_params_yaml_unchanged(
    project: DvcProject, override: str, message: str
) -> None:
    path = project.path / "params.yaml"
    before = path.read_bytes()
    with pytest.raises(dg.Failure, match=message):
        project.set_params(["validation.sample_rows=3", override])
    assert path.read_bytes() == before
    assert yaml.safe_load(before) == yaml.safe_load(path.read_text())
