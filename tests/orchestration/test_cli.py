"""The ``dagster`` CLI as a new user types it (issue #16): asset selections parse (the ANTLR
runtime pinned in requirements.lock is the one dagster's selection parser was generated with),
``dagster asset materialize --select`` runs, and ``[tool.dagster]`` in pyproject.toml lets
workspace commands (``dagster dev``) find the code location without ``-m``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import REPO
from tests.orchestration.conftest import make_project

BIN = Path(sys.executable).parent
MODULE = ["-m", "orchestration.definitions"]


def dagster(
    *args: str, home: Path, root: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
    if root is not None:
        env["RECSYS_ROOT"] = str(root)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [str(BIN / "dagster"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_selection_parser_loads() -> None:
    # antlr4-python3-runtime 4.9 (hydra-core's pin) failed here with
    # "TypeError: ord() expected string of length 1, but int found".
    selection = dg.AssetSelection.from_string('key:"*_model" or group:data')
    assert isinstance(selection, dg.AssetSelection)
    assert str(selection) == 'key:"*_model" or group:"data"'


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("raw_interactions", {"raw_interactions"}),
        ("group:data", {"raw_interactions", "prepared_interactions", "processed_interactions"}),
        ("+processed_interactions", {"prepared_interactions", "processed_interactions"}),
    ],
)
def test_asset_list_select(tmp_path: Path, selection: str, expected: set[str]) -> None:
    result = dagster("asset", "list", *MODULE, "--select", selection, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(result.stdout.split()) == expected


@pytest.mark.slow  # ~30 s: the validation check runs Great Expectations in a subprocess
def test_asset_materialize_select(tmp_path: Path) -> None:
    """The cheapest asset (a fingerprint of the raw files) and its blocking validation check,
    on a tiny project, recorded in the instance of $DAGSTER_HOME."""
    project = make_project(tmp_path / "repo")
    home = tmp_path / "home"
    result = dagster(
        "asset", "materialize", *MODULE, "--select", "raw_interactions", home=home, root=project
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_interactions"))
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.metadata["files"].value == 1


def test_pyproject_names_the_code_location(tmp_path: Path) -> None:
    result = dagster("definitions", "validate", home=tmp_path / "home")  # no -m
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation successful for code location recsys" in result.stderr + result.stdout
