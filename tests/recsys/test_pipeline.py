"""The train/evaluate stages (recsys.pipeline) and the ``models`` section of params.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys import pipeline
from recsys.config import ModelsConfig, Params, PreprocessConfig, SyntheticConfig, load_params
from recsys.data import io
from recsys.data.preprocess import preprocess, save_processed
from recsys.data.synthetic import generate
from recsys.errors import ConfigError
from recsys.gate import ModelEvaluation, checksums_fingerprint
from recsys.models.base import Recommender


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
        pipeline.check_candidates(ModelsConfig(families={"nope": {}}))
    with pytest.raises(ConfigError, match="not a candidate"):
        pipeline.build_candidate("bpr", ModelsConfig(families={"ease": {}}))
    with pytest.raises((ConfigError, TypeError)):
        pipeline.build_candidate("ease", ModelsConfig(families={"ease": {"l3": 1.0}}))


def test_train_then_evaluate_writes_what_the_gate_reads(
    processed_dir: Path, tmp_path: Path
) -> None:
    params = Params(models=ModelsConfig(families={"ease": {"l2": 50.0}}))
    model_dir, metrics_file = tmp_path / "models" / "ease", tmp_path / "metrics" / "ease.json"
    summary = pipeline.train_candidate("ease", processed_dir, model_dir, params)
    assert Recommender.load(model_dir).name == "ease"
    assert io.read_json(model_dir / pipeline.TRAIN_SUMMARY)["size_bytes"] == summary.size_bytes > 0
    report = pipeline.evaluate_candidate(
        model_dir, processed_dir, metrics_file, n_boot=50, latency_requests=20
    )
    assert io.read_json(metrics_file) == report
    n = report["n_users"]
    assert len(report["per_user"]["user_ids"]) == n and len(report["per_user"]["ndcg@10"]) == n
    assert np.isclose(np.mean(report["per_user"]["ndcg@10"]), report["metrics"]["ndcg@10"])
    lo, hi = report["ci"]["ndcg@10"]
    assert lo <= report["metrics"]["ndcg@10"] <= hi
    assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"] > 0
    assert report["split"] == summary.split  # evaluated on the split it was trained on
    evaluation = ModelEvaluation.from_dict(report, str(metrics_file), tag="recsys-ease:v1")
    assert evaluation.split_fingerprint == checksums_fingerprint(report["split"])
    assert evaluation.latency_p99_ms == report["latency_ms"]["p99"]


def test_failed_training_leaves_the_previous_model(processed_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "mostpop"
    params = Params(models=ModelsConfig(families={"mostpop": {}}))
    pipeline.train_candidate("mostpop", processed_dir, model_dir, params)
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(Exception):  # noqa: B017 - any failure: the directory must survive
        pipeline.train_candidate("mostpop", tmp_path / "missing", model_dir, params)
    assert sorted(p.name for p in model_dir.iterdir()) == before
