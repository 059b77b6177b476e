"""Every model settings file under bench/ (hand-chosen or written by ``recsys tune``) names
registered models with fields their configs accept: a benchmark run never stops on a typo
after minutes of fitting the models before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.benchmark.config import load_model_params
from recsys.models.registry import model_class

BENCH = Path(__file__).resolve().parents[1] / "bench"
FILES = sorted(BENCH.glob("*.yaml"))


def test_there_are_settings_files() -> None:
    assert {p.name for p in FILES} >= {"ml100k-u1.yaml", "ml100k-u1-tuned.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_model_in_a_settings_file_builds(path: Path) -> None:
    for name, fields in load_model_params(path).items():
        model = model_class(name)(**fields)
        assert model.name == name, path.name
