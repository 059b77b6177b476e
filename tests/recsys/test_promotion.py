"""The promotion policy (recsys.promotion, issue 16 part 2): the challenger is the best served
ranking, registered once per content; the champion is re-evaluated on the same split; an
earlier rejection stands; the outcome is one validated JSON file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import pipeline, promotion
from recsys.config import (
    GateConfig,
    ModelsConfig,
    Params,
    PreprocessConfig,
    RetrievalConfig,
    ServingConfig,
    SyntheticConfig,
)
from recsys.data.preprocess import preprocess, save_processed
from recsys.data.synthetic import generate
from recsys.errors import DataError
from recsys.gate import decide
from recsys.models.base import Recommender
from recsys.models.twostage import TwoStage
from recsys.serving import store
from recsys.serving.store import Registry
from recsys.timings import NOT_MEASURED, read_timings

TWOTOWER = {"embedding_dim": 16, "epochs": 2, "batch_size": 128, "seed": 0, "eval_users": 50}
PARAMS = Params(
    models=ModelsConfig(families={"ease": {"l2": 50.0}, "twotower": TWOTOWER}),
    # The two-stage budget has its own test below: M=20 and a 2-epoch retriever lose to EASE.
    gate=GateConfig(
        min_metrics={"ndcg@10": 0.0},
        n_bootstrap=200,
        max_latency_p99_ms=None,
        max_two_stage_loss=None,
    ),
    serving=ServingConfig(rerank_top=20, retrieval=RetrievalConfig(kind="exact")),
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """processed/, models/<family>/, models/metrics/<family>.json and the served rankings
    models/twostage-<family>/ (``recsys compose``) under one directory, their timing records
    in timings/, a private store."""
    root = tmp_path_factory.mktemp("promotion")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENTOML_HOME", str(root / "bentoml"))
    data = generate(SyntheticConfig(n_interactions=3000, seed=3))
    save_processed(preprocess(data, PreprocessConfig(min_item_interactions=2)), root / "processed")
    models, timed = root / "models", {"timings_dir": root / "timings"}
    for family in PARAMS.models.candidates:
        pipeline.train_candidate(family, root / "processed", models / family, PARAMS, **timed)
        metrics = models / "metrics" / f"{family}.json"
        pipeline.evaluate_candidate(
            models / family, root / "processed", metrics, n_boot=100, **timed
        )
    for family in PARAMS.models.candidates:
        out = promotion.served_dir(models, family)
        pipeline.compose_candidate(
            models / family, models / "twotower", root / "processed", out, PARAMS
        )
        served = promotion.served_metrics_file(models, family)
        pipeline.evaluate_candidate(out, root / "processed", served, n_boot=100, **timed)
    yield root
    mp.undo()


def test_the_served_ranking_is_one_twostage_model_with_its_ranker_beside_it(
    project: Path,
) -> None:
    models = project / "models"
    served = Recommender.load(promotion.served_dir(models, "ease"))
    assert isinstance(served, TwoStage)
    assert [p.name for p in served.parts()] == ["ease", "twotower"]
    tower = Recommender.load(promotion.served_dir(models, "twotower"))
    assert isinstance(tower, TwoStage) and tower.parts()[0] is tower.parts()[1]
    report = json.loads(promotion.served_metrics_file(models, "ease").read_text())
    assert report["family"] == "twostage-ease"
    two = report["two_stage"]
    assert two["rerank_top"] == 20 and two["index"] == "exact" and two["recall@M"] == 1.0
    full = json.loads((models / "metrics" / "ease.json").read_text())["metrics"]["ndcg@10"]
    assert two["ranker_metrics"]["ndcg@10"] == pytest.approx(full)


def test_best_candidate_by_the_primary_metric() -> None:
    reports = {"a": {"metrics": {"m": 0.2}}, "b": {"metrics": {"m": 0.3}}, "c": {"metrics": {}}}
    assert promotion.best_candidate(reports, "m") == "b"
    assert promotion.best_candidate({"a": reports["a"], "z": {"metrics": {"m": 0.2}}}, "m") == "a"
    with pytest.raises(DataError, match="no candidate has a finite"):
        promotion.best_candidate({"c": reports["c"]}, "m")


def test_gate_then_rerun_registers_once_and_keeps_the_verdict(
    project: Path, tmp_path: Path
) -> None:
    """First run: no champion, the best served ranking is blessed. After promotion the same
    files are the champion: nothing to decide, and no second copy in the store."""
    registry = Registry(tmp_path / "registry")
    run = dict(data_version="v1", work_dir=tmp_path / "gate", timings_dir=project / "timings")
    first = promotion.gate_candidates(
        project / "models", project / "processed", PARAMS, registry, **run
    )
    assert first.promote and first.champion is None and first.decision_file
    assert set(first.registered) == {"ease", "twotower"}
    best = max(first.candidates, key=lambda f: first.candidates[f]["ndcg@10"])
    assert first.challenger == first.registered[best] and first.family == f"twostage-{best}"
    info = store.model_info(first.challenger)
    assert info["labels"]["data_version"] == "v1"
    assert info["labels"]["params_hash"] == promotion.served_params_hash(PARAMS, best)
    assert info["metadata"]["fit_seconds"] > 0  # the candidate's, from its timing record
    # The challenger's latency measured by the gate, the other's from its timing record.
    other = next(f for f in first.candidates if f != best)
    recorded = pipeline.candidate_timings(
        project / "models", f"twostage-{other}", run["timings_dir"]
    )
    assert first.candidates[other][promotion.P99_KEY] == recorded["p99_ms"] is not None
    assert first.candidates[best][promotion.P99_KEY] > 0
    registry.promote(first.challenger)

    again = promotion.gate_candidates(
        project / "models", project / "processed", PARAMS, registry, **run
    )
    assert again.already_champion and not again.promote
    assert again.registered == first.registered
    assert len(store.list_models(promotion.STORE_NAME)) == 2

    out = tmp_path / "outcome.json"
    out.write_text(json.dumps(again.to_dict()))
    assert promotion.GateOutcome.read(out) == again
    out.write_text(json.dumps({**again.to_dict(), "surprise": 1}))
    with pytest.raises(DataError, match="malformed gate outcome"):
        promotion.GateOutcome.read(out)


def test_the_gate_measures_or_reads_the_challengers_latency(project: Path, tmp_path: Path) -> None:
    """Metrics files hold no timings (DVC outputs, the same bytes for the same model): the
    gate measures the challenger's latency on its saved model, or reads the one recorded when
    its metrics file was written; without either a latency budget rejects it, saying why."""
    models, timings = project / "models", project / "timings"
    path = promotion.served_metrics_file(models, "ease")
    assert "latency_ms" not in json.loads(path.read_text())
    measured, source = promotion.gate_evaluation(
        path, tag="t:1", model_dir=promotion.served_dir(models, "ease")
    )
    assert measured.latency_p99_ms is not None and measured.latency_p99_ms > 0
    assert "measured now" in source
    recorded, source = promotion.gate_evaluation(path, tag="t:1", timings_dir=timings)
    record = read_timings(timings, "evaluate", "twostage-ease", path)
    assert record is not None and recorded.latency_p99_ms == record.value("latency_ms", "p99")
    assert "evaluate-twostage-ease.json" in source
    unmeasured, source = promotion.gate_evaluation(path, tag="t:1", timings_dir=tmp_path)
    assert unmeasured.latency_p99_ms is None and NOT_MEASURED in source
    budget = dataclasses.replace(PARAMS.gate, max_latency_p99_ms=1000.0)
    rejected = decide(unmeasured, None, budget)
    latency = next(r for r in rejected.reasons if r.rule == "latency")
    assert not rejected.promote and not latency.passed and "not measured" in latency.message
    assert next(r for r in decide(recorded, None, budget).reasons if r.rule == "latency").passed


def test_a_rejected_challenger_is_not_gated_again(project: Path, tmp_path: Path) -> None:
    """The weaker served ranking as champion, a gate that demands an impossible gain: the
    challenger is rejected once (the champion re-evaluated on the same split), and a second
    run reuses that verdict instead of deciding again."""
    registry = Registry(tmp_path / "registry")
    run = dict(data_version="v1", work_dir=tmp_path / "gate")
    first = promotion.gate_candidates(
        project / "models", project / "processed", PARAMS, registry, **run
    )
    worst = min(first.candidates, key=lambda f: first.candidates[f]["ndcg@10"])
    bless = promotion.gate_candidates(
        project / "models", project / "processed", PARAMS, registry, families=[worst], **run
    )
    registry.promote(bless.challenger)
    strict = Params(
        models=PARAMS.models,
        serving=PARAMS.serving,
        gate=dataclasses.replace(PARAMS.gate, min_gain=1.0),
    )
    rejected = promotion.gate_candidates(
        project / "models", project / "processed", strict, registry, **run
    )
    assert not rejected.promote and rejected.champion == bless.challenger
    assert (tmp_path / "gate" / "champion.json").is_file()
    assert "margin" in rejected.report
    again = promotion.gate_candidates(
        project / "models", project / "processed", strict, registry, **run
    )
    assert again.already_rejected and not again.promote and "rejected earlier" in again.report


def test_a_served_ranking_that_loses_too_much_to_its_ranker_is_refused(
    project: Path, tmp_path: Path
) -> None:
    """What the gate measures is what would be served: with M=20 of the catalogue and a
    retriever trained for two epochs, the served ranking scores below its ranker's full
    ranking, and a tight two-stage budget refuses it, saying by how much."""
    models = project / "models"
    reports = {
        f: json.loads(promotion.served_metrics_file(models, f).read_text())
        for f in PARAMS.models.candidates
    }
    losses = {
        f: r["two_stage"]["ranker_metrics"]["ndcg@10"] - r["metrics"]["ndcg@10"]
        for f, r in reports.items()
    }
    assert losses["twotower"] == pytest.approx(0.0, abs=1e-9)  # it retrieves for itself
    best = promotion.best_candidate(reports, "ndcg@10")
    tight = Params(
        models=PARAMS.models,
        serving=PARAMS.serving,
        gate=dataclasses.replace(PARAMS.gate, max_two_stage_loss=losses[best] / 2),
    )
    registry = Registry(tmp_path / "registry")
    outcome = promotion.gate_candidates(
        models, project / "processed", tight, registry, data_version="v1", work_dir=tmp_path
    )
    if losses[best] > 0:
        assert not outcome.promote and "two_stage" in outcome.report
        assert "ranker alone" in outcome.report
    else:
        assert outcome.promote


def test_a_skipped_candidate_is_passed_by_with_its_reason(project: Path, tmp_path: Path) -> None:
    """A candidate the data could not train (no item content here) holds only its reason: the
    gate registers the others, records why it passed it by, and refuses when none is left."""
    from recsys.skipped import write_skipped

    models = tmp_path / "models"
    models.mkdir()
    for family in PARAMS.models.candidates:
        for name in (f"twostage-{family}", family):
            (models / name).symlink_to(project / "models" / name)
    (models / "metrics").mkdir()
    for family in PARAMS.models.candidates:
        for name in (f"twostage-{family}.json", f"{family}.json"):
            (models / "metrics" / name).symlink_to(project / "models" / "metrics" / name)
    reason = "needs item content; the items table has no text, genre or feature column"
    summary = {"family": "content", "train": {"model": "content"}, "skipped": reason}
    write_skipped(promotion.served_dir(models, "content"), summary)
    registry = Registry(tmp_path / "registry")
    run = dict(data_version="v1", work_dir=tmp_path / "gate", timings_dir=project / "timings")
    families = [*PARAMS.models.candidates, "content"]
    outcome = promotion.gate_candidates(
        models, project / "processed", PARAMS, registry, families=families, **run
    )
    assert outcome.skipped == {"content": reason}
    assert set(outcome.registered) == set(PARAMS.models.candidates)
    assert "content" not in outcome.candidates
    with pytest.raises(DataError, match="every candidate was skipped") as err:
        promotion.gate_candidates(
            models, project / "processed", PARAMS, registry, families=["content"], **run
        )
    assert "needs item content" in str(err.value)
