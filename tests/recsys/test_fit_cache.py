"""Fits shared within one run (recsys.models.fit_cache): reuse is exact and only exact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from recsys.benchmark import BenchmarkConfig, run_benchmark
from recsys.data.preprocess import Processed
from recsys.models.fit_cache import fitted, shared_fits
from tests.recsys.test_model_requirements import write_split
from tests.recsys.test_models_contract import synthetic_data


def test_the_same_model_on_the_same_rows_is_fitted_once_inside_the_block() -> None:
    data: Processed = synthetic_data()
    outside = [fitted("ease", {"l2": 50.0}, data, data.split) for _ in range(2)]
    assert outside[0][0] is not outside[1][0] and not outside[1][1]
    with shared_fits():
        first, reused = fitted("ease", {"l2": 50.0}, data, data.split)
        again, reused_again = fitted("ease", {"l2": 50.0}, data, data.split)
        assert not reused and reused_again and again is first
        other, reused = fitted("ease", {"l2": 60.0}, data, data.split)  # other settings
        assert not reused and other is not first
        fewer = dataclasses.replace(data.split, train=data.split.train.iloc[:-1])
        _, reused = fitted("ease", {"l2": 50.0}, data, fewer)  # other rows
        assert not reused
    _, reused = fitted("ease", {"l2": 50.0}, data, data.split)  # the block is gone
    assert not reused


def test_benchmark_reuses_members_and_ranks_as_a_fresh_fit(tmp_path: Path) -> None:
    """Every model in one run: the ensemble's members come from the models fitted before it,
    and its recommendations are those of an ensemble fitted alone (no reuse)."""
    files = write_split(tmp_path / "split", synthetic_data())
    ensemble = {"members": ["ease", "itemknn"], "params": {"ease": {"l2": 50.0}}}
    params = {"ease": {"l2": 50.0}, "ensemble": ensemble}
    together = run_benchmark(
        BenchmarkConfig(splits=(files,), models=("ease", "itemknn", "ensemble"),
                        model_params=params, n_boot=10),
        tmp_path / "together",
    )  # fmt: skip
    alone = run_benchmark(
        BenchmarkConfig(splits=(files,), models=("ensemble",), model_params=params, n_boot=10),
        tmp_path / "alone",
    )
    members = together.models["ensemble"].folds[0].train.extra["members"]
    assert {m: members[m]["reused"] for m in members} == {"ease": True, "itemknn": True}
    assert not any(
        m["reused"] for m in alone.models["ensemble"].folds[0].train.extra["members"].values()
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "together" / "ensemble" / "recommendations.csv"),
        pd.read_csv(tmp_path / "alone" / "ensemble" / "recommendations.csv"),
    )
    saved = json.loads((tmp_path / "together" / "ensemble" / "metrics.json").read_text())
    assert (
        saved["metrics"]
        == json.loads((tmp_path / "alone" / "ensemble" / "metrics.json").read_text())["metrics"]
    )
