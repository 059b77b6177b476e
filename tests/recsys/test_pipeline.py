"""The train/evaluate stages (recsys.pipeline) and the ``models`` section of params.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys import candidates, pipeline
from recsys.config import (
    ModelsConfig,
    Params,
    PreprocessConfig,
    ServingConfig,
    SyntheticConfig,
    load_params,
)
from recsys.data import io
from recsys.data.preprocess import preprocess, save_processed
from recsys.data.synthetic import generate
from recsys.errors import ConfigError
from recsys.gate import ModelEvaluation, checksums_fingerprint
from recsys.models.base import Recommender
from recsys.timings import NOT_MEASURED, TIMING_KEYS, read_timings


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "processed"
    data = generate(SyntheticConfig(n_interactions=3000, seed=3))
    save_processed(preprocess(data, PreprocessConfig(min_item_interactions=2)), out)
    return out


def test_models_section_lists_candidates_in_order(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("models:\n  ease: {l2: 50.0}\n  mostpop:\n")
    models = load_params(path, partial=True).models
    assert models.candidates == ("ease", "mostpop")
    assert models.settings("ease") == {"l2": 50.0} and models.settings("mostpop") == {}
    assert Params().models.candidates == ("ease", "neumf", "twotower")


@pytest.mark.parametrize("text", ["models: [ease]\n", "models: {}\n", "models:\n  ease: 3\n"])
def test_malformed_models_section_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="models"):
        load_params(path, partial=True)


def test_unknown_family_or_setting_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model famil"):
        candidates.check_candidates(ModelsConfig(families={"nope": {}}))
    with pytest.raises(ConfigError, match="not a candidate"):
        candidates.build_candidate("bpr", ModelsConfig(families={"ease": {}}))
    with pytest.raises((ConfigError, TypeError)):
        candidates.build_candidate("ease", ModelsConfig(families={"ease": {"l3": 1.0}}))


def test_train_then_evaluate_writes_what_the_gate_reads(
    processed_dir: Path, tmp_path: Path
) -> None:
    params = Params(models=ModelsConfig(families={"ease": {"l2": 50.0}}))
    models, timings = tmp_path / "models", tmp_path / "timings"
    model_dir, metrics_file = models / "ease", pipeline.metrics_file(models, "ease")
    summary = pipeline.train_candidate(
        "ease", processed_dir, model_dir, params, timings_dir=timings
    )
    assert Recommender.load(model_dir).name == "ease"
    assert io.read_json(model_dir / pipeline.TRAIN_SUMMARY)["size_bytes"] == summary.size_bytes > 0
    report = pipeline.evaluate_candidate(
        model_dir, processed_dir, metrics_file, n_boot=50, latency_requests=20, timings_dir=timings
    )
    assert io.read_json(metrics_file) == report
    n = report["n_users"]
    assert len(report["per_user"]["user_ids"]) == n and len(report["per_user"]["ndcg@10"]) == n
    assert np.isclose(np.mean(report["per_user"]["ndcg@10"]), report["metrics"]["ndcg@10"])
    lo, hi = report["ci"]["ndcg@10"]
    assert lo <= report["metrics"]["ndcg@10"] <= hi
    assert report["split"] == summary.split  # evaluated on the split it was trained on
    evaluation = ModelEvaluation.from_dict(report, str(metrics_file), tag="recsys-ease:v1")
    assert evaluation.split_fingerprint == checksums_fingerprint(report["split"])
    assert evaluation.latency_p99_ms is None  # a DVC output: the gate measures latency itself
    timed = read_timings(timings, "evaluate", "ease", metrics_file)
    assert timed is not None and timed.value("latency_ms", "n_requests") == 20
    assert timed.value("latency_ms", "p99") >= timed.value("latency_ms", "p50") > 0
    costs = pipeline.candidate_timings(models, "ease", timings)
    assert costs["p99_ms"] == timed.value("latency_ms", "p99") and costs["fit_seconds"] >= 0
    assert pipeline.candidate_timings(models, "ease", tmp_path / "elsewhere") == {
        "fit_seconds": None,
        "p99_ms": None,
    }
    table = pipeline.metrics_table([report], timings={"ease": {"fit_seconds": 0.5}})
    assert "| 0.5 |" in table and f"—: {NOT_MEASURED}" in table  # the p99 column


def test_tuned_settings_replace_params_only_when_tuning_is_enabled(
    processed_dir: Path, tmp_path: Path
) -> None:
    """`recsys tune`'s params file wins over params.yaml with tuning.enabled (and the train
    record says so); off, it is ignored; on without it, a clear error before any fit."""
    from recsys.config import TuningConfig

    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("models:\n  ease: {l2: 7.0}\n")
    models = ModelsConfig(families={"ease": {"l2": 50.0}, "mostpop": {}})
    off = Params(models=models)
    on = Params(models=models, tuning=TuningConfig(enabled=True))
    assert candidates.candidate_settings("ease", off, tuned) == ({"l2": 50.0}, "params.yaml")
    assert candidates.candidate_settings("ease", on, tuned) == ({"l2": 7.0}, "tuned")
    settings, source = candidates.candidate_settings("mostpop", on, tuned)
    assert settings == {} and source.startswith("params.yaml (not in")
    with pytest.raises(ConfigError, match="no tuned settings"):
        candidates.candidate_settings("ease", on, tmp_path / "missing.yaml")
    summary = pipeline.train_candidate(
        "ease", processed_dir, tmp_path / "ease", on, tuned_file=tuned
    )
    assert summary.settings_from == "tuned" and summary.config["l2"] == 7.0
    assert io.read_json(tmp_path / "ease" / pipeline.TRAIN_SUMMARY)["settings_from"] == "tuned"


TWO_RUNS = Params(
    models=ModelsConfig(
        families={
            "ease": {"l2": 50.0},
            "twotower": {"embedding_dim": 8, "epochs": 2, "batch_size": 128, "eval_users": 50},
        }
    ),
    serving=ServingConfig(retriever="twotower", rerank_top=20),
)
"""A closed-form model and a Keras one (epoch and validation timings), the latter retrieving
for the served rankings of both."""
MEASURED_ONLY = {"hardware", "load_average", "latency_ms", "recommend_seconds"} | TIMING_KEYS


def run_model_stages(processed_dir: Path, root: Path) -> tuple[Path, Path]:
    """What the stages train@, evaluate@ and twostage@ of every family run (the functions the
    CLI commands call), into ``root/models``; their timing records into ``root/timings``."""
    models, timings = root / "models", root / "timings"
    families = TWO_RUNS.models.candidates
    scored = {}
    for family in families:
        pipeline.train_candidate(
            family, processed_dir, models / family, TWO_RUNS, timings_dir=timings
        )
        scored[family] = models / family
    for family in families:
        served = models / f"{pipeline.TWO_STAGE_PREFIX}{family}"
        pipeline.compose_candidate(
            models / family, models / "twotower", processed_dir, served, TWO_RUNS
        )
        scored[served.name] = served
    for name, model_dir in scored.items():
        out = pipeline.metrics_file(models, name)
        pipeline.evaluate_candidate(
            model_dir, processed_dir, out, n_boot=50, latency_requests=20, timings_dir=timings
        )
    return models, timings


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys_anywhere(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_anywhere(v) for v in value))
    return set()


def test_two_runs_write_the_same_bytes_and_keep_their_timings_aside(
    processed_dir: Path, tmp_path: Path
) -> None:
    """Issue 16, part 5: the DVC outputs of train, evaluate and compose are a function of code,
    params and data (a rerun leaves dvc.lock unchanged); what a run measured is in its timing
    records."""
    first, first_timings = run_model_stages(processed_dir, tmp_path / "a")
    second, _ = run_model_stages(processed_dir, tmp_path / "b")
    files = {
        p.relative_to(first).as_posix(): p.read_bytes() for p in first.rglob("*") if p.is_file()
    }
    again = {
        p.relative_to(second).as_posix(): p.read_bytes() for p in second.rglob("*") if p.is_file()
    }
    assert files.keys() == again.keys()
    assert {"twostage-ease/recommender.json", "metrics/twostage-ease.json"} <= files.keys()
    differ = sorted(name for name in files if files[name] != again[name])
    assert not differ, f"differ between two runs: {differ}"
    for name, content in files.items():
        if name.endswith(".json"):
            assert not keys_anywhere(json.loads(content)) & MEASURED_ONLY, name

    for family in TWO_RUNS.models.candidates:
        fit = read_timings(first_timings, "train", family, first / family)
        assert fit is not None and fit.value("fit_seconds") > 0
        assert fit.hardware["nproc"] >= 1 and "load_average" in fit.hardware
        costs = pipeline.candidate_timings(first, family, first_timings)
        assert costs["fit_seconds"] == fit.value("fit_seconds") and costs["p99_ms"] > 0
    tower = read_timings(first_timings, "train", "twotower", first / "twotower")
    assert tower is not None and len(tower.value("extra", "epoch_train_seconds")) == 2
    assert tower.value("samples_per_second") > 0 and tower.value("extra", "eval_seconds") >= 0
    served = pipeline.metrics_file(first, "twostage-ease")
    scored = read_timings(first_timings, "evaluate", "twostage-ease", served)
    assert scored is not None and scored.value("recommend_seconds") >= 0
    assert scored.value("latency_ms", "p99") >= scored.value("latency_ms", "p50") > 0
    # A record names the bytes it measured: it says nothing about any other file.
    other = served.parent / "ease.json"
    assert read_timings(first_timings, "evaluate", "twostage-ease", other) is None


def test_failed_training_leaves_the_previous_model(processed_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "mostpop"
    params = Params(models=ModelsConfig(families={"mostpop": {}}))
    pipeline.train_candidate("mostpop", processed_dir, model_dir, params)
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(Exception):  # noqa: B017 - any failure: the directory must survive
        pipeline.train_candidate("mostpop", tmp_path / "missing", model_dir, params)
    assert sorted(p.name for p in model_dir.iterdir()) == before
