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
