"""The training loop reports each epoch on stderr as it ends (issue #16: a run under DVC or
Dagster showed nothing until the stage finished)."""

from __future__ import annotations

import re

import pytest

from recsys.train import TrainSettings, fit_model
from tests.recsys.test_train import CPU, Scripted, tiny_epochs, tiny_model


def test_one_flushed_line_per_epoch(capfd: pytest.CaptureFixture[str]) -> None:
    val = Scripted([0.1, 0.3, 0.2, 0.25, 0.9])
    settings = TrainSettings(epochs=10, batch_size=64, seed=0, patience=2)
    fit_model(tiny_model(), tiny_epochs(), settings, plan=CPU, validation=val)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == [f"epoch {e}/10" for e in range(1, 5)]
    assert re.fullmatch(
        r"epoch 2/10: loss [0-9.e+-]+, val_score 0\.3 \(best 0\.3 at 2\), [0-9.]+ s", lines[1]
    )
    assert lines[-1].endswith("(early stop)") and "(best 0.3 at 2)" in lines[-1]


def test_verbose_runs_leave_progress_to_keras(capfd: pytest.CaptureFixture[str]) -> None:
    settings = TrainSettings(epochs=2, batch_size=64, seed=0, verbose=2)
    fit_model(tiny_model(), tiny_epochs(), settings, plan=CPU)
    assert not [line for line in capfd.readouterr().err.splitlines() if line.startswith("epoch ")]
