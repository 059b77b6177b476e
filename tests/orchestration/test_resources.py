"""``DvcProject.run`` streams a stage's output into the step log line by line as it arrives,
with unbuffered Python, and drops TensorFlow's CUDA probing noise on machines without an NVIDIA
driver (issue #16)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.defs import resources
from orchestration.defs.resources import DvcProject

SCRIPT = """
import sys, time
print("epoch 1/2: loss 0.5")          # no flush: PYTHONUNBUFFERED must make it arrive now
time.sleep(2)
print("I0000 00:00:1.2 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.", file=sys.stderr)
print("E0000 00:00:1.3 1 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)", file=sys.stderr)
print("E0000 something else failed", file=sys.stderr)
print("epoch 2/2: loss 0.4")
"""  # noqa: E501


def test_lines_reach_the_log_while_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    monkeypatch.setattr(resources, "has_nvidia_gpu", lambda: False)
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    result = DvcProject(root=str(tmp_path)).run(
        [sys.executable, "-c", SCRIPT], log=lambda line: seen.append((time.monotonic(), line))
    )
    end = time.monotonic()
    assert result.returncode == 0
    lines = [line for _, line in seen]
    assert lines == ["epoch 1/2: loss 0.5", "E0000 something else failed", "epoch 2/2: loss 0.4"]
    assert seen[0][0] - start < end - start - 1.5  # logged well before the command ended
    assert "epoch 2/2" in result.stdout and "cudart_stub" not in result.stdout


def test_noise_is_kept_where_there_is_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "has_nvidia_gpu", lambda: True)
    seen: list[str] = []
    DvcProject(root=str(tmp_path)).run([sys.executable, "-c", SCRIPT], log=seen.append)
    assert any("failed call to cuInit" in line for line in seen)


def test_a_streamed_command_still_times_out(tmp_path: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        DvcProject(root=str(tmp_path)).run(
            [sys.executable, "-c", "import time; time.sleep(30)"], timeout=1, log=print
        )


def test_a_stage_whose_input_was_never_built_names_the_asset_to_run_first(
    tmp_path: Path,
) -> None:
    """A fresh project where only the data assets ran: training one model alone fails with
    what to materialize first, not DVC's bare "[Errno 2] No such file or directory"."""
    import dagster as dg

    from tests.orchestration.conftest import make_project

    root = make_project(tmp_path / "project")
    dvc = DvcProject(root=str(root))
    dvc.repro("prepare", "preprocess")
    with pytest.raises(dg.Failure) as info:
        dvc.repro("train@ease")
    message = info.value.description or ""
    assert "models/tuning does not exist yet" in message, message
    assert "materialize tuned_settings first" in message
    assert not (root / "models" / "ease").exists()


@pytest.mark.parametrize(
    ("missing", "producer"),
    [
        ("data/processed", "materialize processed_interactions first"),
        ("models/ease", "materialize ease_model first"),
        ("somewhere/else", "materialize what writes it first"),
    ],
)
def test_the_missing_input_hint_names_its_producer(missing: str, producer: str) -> None:
    hint = resources.missing_input_hint([missing, "data/prepared"]) or ""
    assert hint.startswith(f"its input {missing} does not exist yet; {producer}")
    assert resources.missing_input_hint([]) is None


def test_missing_inputs_skip_what_an_earlier_stage_of_the_run_writes(tmp_path: Path) -> None:
    """``dvc repro prepare preprocess`` on a fresh project: preprocess's input is written by
    prepare in the same run, so nothing is missing; preprocess alone misses it."""
    from tests.orchestration.conftest import make_project

    dvc = DvcProject(root=str(make_project(tmp_path / "project")))
    assert dvc.missing_inputs(["prepare", "preprocess"]) == []
    assert dvc.missing_inputs(["preprocess"]) == ["data/prepared"]
    assert dvc.missing_inputs(["twostage@ease"])[:2] == ["models/ease", "models/bpr"]
