"""Models that know what they need (issue 17, part 2): content models and rating models are
skipped, with the reason, on data that lacks item content or ratings; cold start is reported."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from recsys import pipeline
from recsys.benchmark import BenchmarkConfig, SplitFiles, run_benchmark
from recsys.config import ModelsConfig, Params, PreprocessConfig, ServingConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess, save_processed
from recsys.errors import ConfigError
from recsys.models.base import Recommender
from recsys.models.registry import MODELS, model_class
from recsys.models.requirements import (
    COLD_USER_ANSWER,
    ITEM_CONTENT,
    RATINGS,
    has_item_content,
    has_ratings,
    skip_reason,
)
from recsys.promotion import best_candidate
from recsys.schema import EXPLICIT, IMPLICIT, ITEM_ID, RATING, USER_ID, Dataset
from tests.recsys.test_models_contract import synthetic_data


def without_side_tables(data: Processed, feedback: str = EXPLICIT) -> Processed:
    """``data``'s interactions preprocessed again with no items or users table."""
    dataset = Dataset(data.interactions.loc[:, [USER_ID, ITEM_ID, RATING, "timestamp"]])
    dataset = dataclasses.replace(dataset, feedback=feedback)
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="random_holdout", test_fraction=0.2, val_fraction=0.1, seed=1),
    )
    return preprocess(dataset, cfg)


@pytest.fixture(scope="module")
def bare() -> Processed:
    return without_side_tables(synthetic_data())


def test_item_content_is_detected_from_the_features(bare: Processed) -> None:
    assert has_item_content(synthetic_data().features)
    assert not has_item_content(bare.features)
    # One item with one genre is content; a token id of padding alone is not.
    genres = np.zeros((bare.vocab.n_items, 1), dtype=np.float32)
    genres[3, 0] = 1.0
    one = dataclasses.replace(bare.features, item_genres=genres, genre_names=("Drama",))
    assert has_item_content(one)


def test_ratings_are_explicit_varying_ratings(bare: Processed) -> None:
    assert has_ratings(bare)
    assert not has_ratings(dataclasses.replace(bare, feedback=IMPLICIT))
    train = bare.split.train.assign(**{RATING: 1.0})  # a click log read as rating 1
    constant = dataclasses.replace(bare, split=dataclasses.replace(bare.split, train=train))
    assert not has_ratings(constant)


@pytest.mark.parametrize(
    ("name", "requirement"),
    [("content", ITEM_CONTENT), ("hybrid", ITEM_CONTENT), ("autorec", RATINGS)],
)
def test_requirements_are_declared(name: str, requirement: str) -> None:
    assert requirement in model_class(name).requires


def test_skip_reason_names_what_is_missing(bare: Processed) -> None:
    implicit = dataclasses.replace(bare, feedback=IMPLICIT)
    content: Recommender = model_class("content")()
    autorec: Recommender = model_class("autorec")()
    ease: Recommender = model_class("ease")()
    reason = skip_reason(content, bare)
    assert reason is not None and "item content" in reason and "--items" in reason
    assert skip_reason(content, synthetic_data()) is None
    reason = skip_reason(autorec, implicit)
    assert reason is not None and "explicit ratings" in reason
    assert skip_reason(autorec, bare) is None
    assert skip_reason(ease, implicit) is None
    ensemble: Recommender = model_class("ensemble")(members=["ease", "hybrid"])
    assert ensemble.requires == frozenset({ITEM_CONTENT})
    assert skip_reason(ensemble, bare) is not None


def test_every_registered_model_documents_its_cold_user_answer() -> None:
    assert set(COLD_USER_ANSWER) == set(MODELS)


def write_split(root: Path, data: Processed) -> SplitFiles:
    """The split of ``data`` as benchmark CSV files (train, test)."""
    root.mkdir(parents=True, exist_ok=True)
    cols = [USER_ID, ITEM_ID, RATING, "timestamp"]
    data.split.train[cols].to_csv(root / "train.csv", index=False)
    data.split.test[cols].to_csv(root / "test.csv", index=False)
    return SplitFiles(root / "train.csv", root / "test.csv")


def test_benchmark_skips_a_content_model_without_items(bare: Processed, tmp_path: Path) -> None:
    """Issue 17: without --items the content model was trained on nothing; now it is skipped
    with the reason in results.json and results.md, and the cold test users and items are
    counted."""
    files = write_split(tmp_path / "split", bare)
    cfg = BenchmarkConfig(splits=(files,), models=("mostpop", "content"), n_boot=10)
    report = run_benchmark(cfg, tmp_path / "out")
    assert list(report.models) == ["mostpop"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "item content" in results["skipped"]["content"]
    assert not (tmp_path / "out" / "content").exists()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Skipped: content: content needs item content" in md
    cold = results["cold_start"]["test"]
    test, train = bare.split.test, bare.split.train
    assert cold["test_users"] == test[USER_ID].nunique()
    assert cold["cold_users"] == len(set(test[USER_ID]) - set(train[USER_ID]))
    assert cold["cold_items"] == len(set(test[ITEM_ID]) - set(train[ITEM_ID]))
    assert "Cold start:" in md
    assert results["models"]["mostpop"]["cold_users"] == COLD_USER_ANSWER["mostpop"]


def test_benchmark_with_nothing_runnable_is_a_config_error(bare: Processed, tmp_path: Path) -> None:
    files = write_split(tmp_path / "split", bare)
    cfg = BenchmarkConfig(splits=(files,), models=("content",), n_boot=10)
    with pytest.raises(ConfigError, match="no model can run on this data"):
        run_benchmark(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_constant_ratings_skip_autorec_in_the_benchmark(bare: Processed, tmp_path: Path) -> None:
    clicks = dataclasses.replace(
        bare,
        split=dataclasses.replace(
            bare.split,
            train=bare.split.train.assign(**{RATING: 1.0}),
            test=bare.split.test.assign(**{RATING: 1.0}),
        ),
    )
    files = write_split(tmp_path / "split", clicks)
    cfg = BenchmarkConfig(
        splits=(files,), protocol="rating", models=("autorec", "mostpop"), n_boot=10
    )
    report = run_benchmark(cfg, tmp_path / "out")
    assert "explicit ratings" in report.skipped["autorec"]
    assert isinstance(report.to_dict()["cold_start"]["test"]["answered_by"], dict)
    assert list(report.models) == ["mostpop"]


def test_rating_models_are_not_ranked_under_a_ranking_protocol(
    bare: Processed, tmp_path: Path
) -> None:
    """AutoRec and biased MF predict ratings: under topk (and in the pipeline) they are skipped
    with the reason, under the rating protocol they run."""
    for name in ("autorec", "biased_mf"):
        model: Recommender = model_class(name)()
        reason = skip_reason(model, bare, "topk")
        assert reason is not None and "--protocol rating" in reason
        assert skip_reason(model, bare, "rating") is None
    assert skip_reason(model_class("ease")(), bare, "rating") is None
    files = write_split(tmp_path / "split", bare)
    cfg = BenchmarkConfig(splits=(files,), models=("biased_mf", "mostpop"), n_boot=10)
    report = run_benchmark(cfg, tmp_path / "out")
    assert "predicts ratings" in report.skipped["biased_mf"]
    assert list(report.models) == ["mostpop"]


def test_pipeline_skips_a_candidate_that_cannot_run(bare: Processed, tmp_path: Path) -> None:
    """The train stage of a content candidate on content-less data records the reason instead
    of a model; evaluate and compose pass it on; the metrics table and the choice of the best
    candidate leave it out; a trained candidate beside it is unaffected."""
    processed = tmp_path / "processed"
    save_processed(bare, processed)
    params = Params(
        models=ModelsConfig(families={"content": {"epochs": 1}, "ease": {"l2": 50.0}}),
        serving=ServingConfig(retriever="ease"),
    )
    models = tmp_path / "models"
    summary = pipeline.train_candidate("content", processed, models / "content", params)
    assert summary.skipped is not None and "item content" in summary.skipped
    assert sorted(p.name for p in (models / "content").iterdir()) == [pipeline.TRAIN_SUMMARY]
    assert pipeline.skipped_reason(models / "content") == summary.skipped
    ease = pipeline.train_candidate("ease", processed, models / "ease", params)
    assert ease.skipped is None and pipeline.skipped_reason(models / "ease") is None
    reports = [
        pipeline.evaluate_candidate(
            models / f, processed, pipeline.metrics_file(models, f), n_boot=10
        )
        for f in ("content", "ease")
    ]
    assert reports[0]["skipped"] == summary.skipped and reports[0]["metrics"] == {}
    assert reports[1]["metrics"]["ndcg@10"] > 0
    table = pipeline.metrics_table(reports)
    assert f"| content | skipped: {summary.skipped} |" in table
    served = pipeline.compose_candidate(
        models / "content", models / "ease", processed, models / "twostage-content", params
    )
    assert served.family == "twostage-content" and served.skipped == summary.skipped
    assert pipeline.skipped_reason(models / "twostage-content") == summary.skipped
    assert best_candidate({"content": reports[0], "ease": reports[1]}, "ndcg@10") == "ease"
