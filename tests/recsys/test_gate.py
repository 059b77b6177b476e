"""The promotion gate: every fail-closed rule, first run, champion comparisons, cost, slices.

RELIABILITY.md items 12-16 (fail closed, first run, same split, slices) are pinned here on
hand-made per-user arrays, so each rule is checked in isolation and in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys import gate
from recsys.config import GateConfig, SliceGate, load_params
from recsys.errors import ConfigError, DataError
from recsys.gate import FIRST_RUN, GateDecision, ModelEvaluation, decide

N_USERS = 400
SPLIT = "f" * 64
CFG = GateConfig(
    primary_metric="ndcg@10",
    min_metrics={"ndcg@10": 0.10, "recall@10": 0.05},
    min_gain=0.01,
    n_bootstrap=500,
    max_latency_p99_ms=50.0,
    max_model_bytes=1_000_000,
)


def evaluation(
    ndcg: np.ndarray,
    *,
    tag: str = "recsys-x:v1",
    split: str = SPLIT,
    recall: float = 0.2,
    p99: float | None = 5.0,
    size: int | None = 10_000,
    slices: dict[str, dict[str, float]] | None = None,
) -> ModelEvaluation:
    ndcg = np.asarray(ndcg, dtype=np.float64)
    return ModelEvaluation(
        tag=tag,
        split_fingerprint=split,
        metrics={"ndcg@10": float(ndcg.mean()) if len(ndcg) else math.nan, "recall@10": recall},
        per_user={"ndcg@10": ndcg},
        user_ids=np.arange(len(ndcg), dtype=np.int64),
        slices=slices or {},
        latency_p50_ms=None if p99 is None else p99 / 2,
        latency_p99_ms=p99,
        model_bytes=size,
    )


def base_scores(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 0.4, N_USERS)


def failed_rules(decision: GateDecision) -> set[str]:
    return {r.rule for r in decision.failures}


# --- first run and absolute thresholds -----------------------------------------------------------
def test_first_run_applies_only_absolute_thresholds_and_says_so() -> None:
    decision = decide(evaluation(base_scores()), None, CFG)
    assert decision.promote and decision.passed
    assert not decision.champion_present and decision.champion is None
    assert any(r.message == FIRST_RUN and r.passed for r in decision.reasons)
    assert not {"margin", "significance", "split"} & {r.rule for r in decision.reasons}


def test_every_reason_carries_metric_value_and_threshold() -> None:
    decision = decide(evaluation(base_scores()), None, CFG)
    thresholds = {r.metric: r for r in decision.reasons if r.rule == "threshold"}
    assert set(thresholds) == {"ndcg@10", "recall@10"}
    ndcg = thresholds["ndcg@10"]
    assert ndcg.threshold == 0.10 and ndcg.value == pytest.approx(base_scores().mean())
    latency = next(r for r in decision.reasons if r.rule == "latency")
    assert (latency.value, latency.threshold) == (5.0, 50.0)


def test_below_an_absolute_threshold_is_rejected_even_without_a_champion() -> None:
    decision = decide(evaluation(base_scores(), recall=0.04), None, CFG)
    assert not decision.promote
    [fail] = decision.failures
    assert (fail.rule, fail.metric, fail.value, fail.threshold) == (
        "threshold",
        "recall@10",
        0.04,
        0.05,
    )


def test_absolute_thresholds_apply_against_a_champion_too() -> None:
    champion = evaluation(base_scores() * 0.2, tag="recsys-x:v0")
    challenger = evaluation(base_scores(), recall=0.01)  # far better ndcg, recall too low
    decision = decide(challenger, champion, CFG)
    assert not decision.promote and failed_rules(decision) == {"threshold"}


def test_lower_is_better_ceiling() -> None:
    cfg = dataclasses.replace(CFG, max_metrics={"rmse": 0.9})
    ev = evaluation(base_scores())
    ok = dataclasses.replace(ev, metrics={**ev.metrics, "rmse": 0.85})
    bad = dataclasses.replace(ev, metrics={**ev.metrics, "rmse": 0.95})
    assert decide(ok, None, cfg).promote
    assert failed_rules(decide(bad, None, cfg)) == {"threshold"}


# --- fail closed ---------------------------------------------------------------------------------
def test_no_thresholds_configured_is_rejected() -> None:
    cfg = dataclasses.replace(CFG, min_metrics={}, max_metrics={})
    decision = decide(evaluation(base_scores()), None, cfg)
    assert not decision.promote and failed_rules(decision) == {"config"}


def test_empty_test_set_is_rejected() -> None:
    decision = decide(evaluation(np.zeros(0)), None, CFG)
    assert not decision.promote
    assert "test_set" in failed_rules(decision)


@pytest.mark.parametrize("metric", ["ndcg@10", "recall@10"])
def test_nan_metric_is_rejected(metric: str) -> None:
    ev = evaluation(base_scores())
    ev = dataclasses.replace(ev, metrics={**ev.metrics, metric: math.nan})
    decision = decide(ev, None, CFG)
    assert not decision.promote
    assert any(r.metric == metric and not r.passed for r in decision.reasons)


def test_missing_metric_is_rejected() -> None:
    ev = evaluation(base_scores())
    ev = dataclasses.replace(ev, metrics={"ndcg@10": ev.metrics["ndcg@10"]})
    decision = decide(ev, None, CFG)
    assert not decision.promote
    [fail] = decision.failures
    assert fail.metric == "recall@10" and "missing" in fail.message


def test_missing_primary_metric_is_rejected_even_if_not_thresholded() -> None:
    cfg = dataclasses.replace(CFG, primary_metric="map@10")
    decision = decide(evaluation(base_scores()), None, cfg)
    assert not decision.promote and {"primary", "test_set"} <= failed_rules(decision)


# --- against a champion --------------------------------------------------------------------------
def test_clearly_better_challenger_is_promoted() -> None:
    champion = evaluation(base_scores(), tag="recsys-x:v0")
    challenger = evaluation(base_scores() + 0.05)
    decision = decide(challenger, champion, CFG)
    assert decision.promote, decision.report()
    assert decision.champion == "recsys-x:v0" and decision.champion_present
    margin = next(r for r in decision.reasons if r.rule == "margin")
    assert margin.value == pytest.approx(0.05) and margin.threshold == 0.01
    significance = next(r for r in decision.reasons if r.rule == "significance")
    assert significance.value is not None and significance.value > 0


def test_worse_challenger_is_rejected() -> None:
    champion = evaluation(base_scores() + 0.05, tag="recsys-x:v0")
    decision = decide(evaluation(base_scores()), champion, CFG)
    assert not decision.promote
    assert failed_rules(decision) == {"margin", "significance"}


def test_gain_above_margin_but_not_significant_is_rejected() -> None:
    """Mean gain 0.02 > margin 0.01, but per-user noise of ±0.5 makes it indistinguishable."""
    rng = np.random.default_rng(1)
    champion_scores = np.full(N_USERS, 0.5)
    noise = rng.choice([-0.5, 0.5], N_USERS)
    challenger_scores = champion_scores + noise - noise.mean() + 0.02
    decision = decide(
        evaluation(challenger_scores), evaluation(champion_scores, tag="recsys-x:v0"), CFG
    )
    assert not decision.promote
    assert failed_rules(decision) == {"significance"}
    margin = next(r for r in decision.reasons if r.rule == "margin")
    assert margin.passed and margin.value == pytest.approx(0.02)


def test_significant_but_below_margin_is_rejected() -> None:
    champion = evaluation(base_scores(), tag="recsys-x:v0")
    decision = decide(evaluation(base_scores() + 0.005), champion, CFG)
    assert failed_rules(decision) == {"margin"}


def test_identical_models_are_not_promoted_even_with_zero_margin() -> None:
    cfg = dataclasses.replace(CFG, min_gain=0.0)
    scores = base_scores()
    decision = decide(evaluation(scores), evaluation(scores, tag="recsys-x:v0"), cfg)
    assert failed_rules(decision) == {"significance"}


def test_different_split_fingerprints_are_rejected() -> None:
    champion = evaluation(base_scores(), tag="recsys-x:v0", split="a" * 64)
    decision = decide(evaluation(base_scores() + 0.1), champion, CFG)
    assert not decision.promote and failed_rules(decision) == {"split"}
    assert "different splits" in decision.failures[0].message


def test_different_users_are_rejected() -> None:
    champion = evaluation(base_scores(), tag="recsys-x:v0")
    champion = dataclasses.replace(champion, user_ids=champion.user_ids + 1)
    decision = decide(evaluation(base_scores() + 0.1), champion, CFG)
    assert failed_rules(decision) == {"split"}


def test_champion_without_per_user_values_is_rejected() -> None:
    champion = dataclasses.replace(evaluation(base_scores(), tag="recsys-x:v0"), per_user={})
    decision = decide(evaluation(base_scores() + 0.1), champion, CFG)
    assert failed_rules(decision) == {"split"}


# --- cost budget ---------------------------------------------------------------------------------
def test_latency_over_budget_is_rejected() -> None:
    decision = decide(evaluation(base_scores(), p99=51.0), None, CFG)
    [fail] = decision.failures
    assert (fail.rule, fail.value, fail.threshold) == ("latency", 51.0, 50.0)


def test_model_over_size_budget_is_rejected() -> None:
    decision = decide(evaluation(base_scores(), size=1_000_001), None, CFG)
    assert failed_rules(decision) == {"size"}


def test_unmeasured_cost_fails_closed_and_no_budget_means_no_rule() -> None:
    unmeasured = evaluation(base_scores(), p99=None, size=None)
    assert failed_rules(decide(unmeasured, None, CFG)) == {"latency", "size"}
    no_budget = dataclasses.replace(CFG, max_latency_p99_ms=None, max_model_bytes=None)
    assert decide(unmeasured, None, no_budget).promote


# --- slices --------------------------------------------------------------------------------------
SLICED = dataclasses.replace(
    CFG, slices={"cold_users": SliceGate(metric="ndcg@10", max_regression=0.02)}
)


@pytest.mark.parametrize(("challenger_cold", "promote"), [(0.19, True), (0.17, False)])
def test_slice_regression_beyond_its_threshold_is_rejected(
    challenger_cold: float, promote: bool
) -> None:
    champion = evaluation(
        base_scores(), tag="recsys-x:v0", slices={"cold_users": {"ndcg@10": 0.20}}
    )
    challenger = evaluation(
        base_scores() + 0.05, slices={"cold_users": {"ndcg@10": challenger_cold}}
    )
    decision = decide(challenger, champion, SLICED)
    assert decision.promote is promote
    slice_reason = next(r for r in decision.reasons if r.rule == "slice")
    assert slice_reason.value == pytest.approx(0.20 - challenger_cold)
    assert slice_reason.threshold == 0.02


def test_missing_slice_value_is_rejected() -> None:
    champion = evaluation(base_scores(), tag="recsys-x:v0", slices={"cold_users": {"ndcg@10": 0.2}})
    decision = decide(evaluation(base_scores() + 0.05), champion, SLICED)
    assert failed_rules(decision) == {"slice"}
    assert failed_rules(decide(evaluation(base_scores()), None, SLICED)) == {"slice"}


def test_slice_floor_applies_on_the_first_run() -> None:
    cfg = dataclasses.replace(CFG, slices={"tail_items": SliceGate(min_value=0.05)})
    low = evaluation(base_scores(), slices={"tail_items": {"ndcg@10": 0.04}})
    high = evaluation(base_scores(), slices={"tail_items": {"ndcg@10": 0.06}})
    assert failed_rules(decide(low, None, cfg)) == {"slice"}
    assert decide(high, None, cfg).promote


def test_slice_metrics_average_the_members_only() -> None:
    per_user = {"ndcg@10": np.array([1.0, 0.0, 0.5, 0.25])}
    ids = np.array([10, 11, 12, 13])
    assert gate.slice_metrics(per_user, ids, [10, 12]) == {"ndcg@10": 0.75}
    assert math.isnan(gate.slice_metrics(per_user, ids, [99])["ndcg@10"])


# --- properties ----------------------------------------------------------------------------------
scores_strategy = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=60).map(
    np.array
)


@settings(max_examples=60, deadline=None)
@given(scores=scores_strategy, min_gain=st.floats(0.0, 0.1))
def test_property_a_copy_of_the_champion_is_never_promoted(
    scores: np.ndarray, min_gain: float
) -> None:
    cfg = dataclasses.replace(CFG, min_metrics={"ndcg@10": 0.0}, min_gain=min_gain)
    decision = decide(evaluation(scores), evaluation(scores, tag="recsys-x:v0"), cfg)
    assert not decision.promote


@settings(max_examples=60, deadline=None)
@given(
    a=scores_strategy,
    shift=st.floats(-0.2, 0.2),
    nan_metric=st.sampled_from([None, "ndcg@10", "recall@10"]),
    p99=st.one_of(st.none(), st.floats(0.0, 100.0)),
)
def test_property_promote_iff_every_reason_passed(
    a: np.ndarray, shift: float, nan_metric: str | None, p99: float | None
) -> None:
    challenger = evaluation(a + shift, p99=p99)
    if nan_metric:
        challenger = dataclasses.replace(
            challenger, metrics={**challenger.metrics, nan_metric: math.nan}
        )
    decision = decide(challenger, evaluation(a, tag="recsys-x:v0"), CFG)
    assert decision.promote == all(r.passed for r in decision.reasons)
    if nan_metric or p99 is None or shift <= 0:
        assert not decision.promote
    # The record survives JSON unchanged.
    again = GateDecision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision


# --- serialization and inputs --------------------------------------------------------------------
def test_decision_serialises_every_reason() -> None:
    decision = decide(evaluation(base_scores(), p99=80.0), None, CFG)
    raw = json.loads(json.dumps(decision.to_dict()))
    assert raw["promote"] is False and raw["champion_present"] is False
    assert {r["rule"] for r in raw["reasons"]} >= {"config", "threshold", "latency", "champion"}
    assert all(
        {"metric", "value", "threshold", "passed", "message"} <= set(r) for r in raw["reasons"]
    )
    assert raw["config"]["primary_metric"] == "ndcg@10"
    assert "REJECT" in decision.report() and "[FAIL] latency" in decision.report()
    assert decision.as_metadata()["promote"] is False


def test_evaluation_roundtrip_and_malformed_input() -> None:
    ev = evaluation(base_scores(), slices={"cold": {"ndcg@10": 0.1}})
    again = ModelEvaluation.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert again.to_dict() == ev.to_dict()
    with pytest.raises(DataError, match="format"):
        ModelEvaluation.from_dict({"tag": "x"})
    with pytest.raises(DataError, match="tag"):
        ModelEvaluation.from_dict({**ev.to_dict(), "tag": ""})
    with pytest.raises(DataError, match="decision"):
        GateDecision.from_dict({"promote": True})


def test_reads_the_recsys_evaluate_metrics_file() -> None:
    """`recsys evaluate` names its split by per-table checksums and has no tag."""
    scores = base_scores()
    raw = {
        "format_version": 1,
        "model": "ease",
        "metrics": {"ndcg@10": float(scores.mean()), "recall@10": 0.2},
        "split": {"train": "a1", "val": "b2", "test": "c3"},
        "latency_ms": {"p50": 1.0, "p99": 2.0},
        "size_bytes": 1234,
        "per_user": {"user_ids": list(range(N_USERS)), "ndcg@10": scores.tolist()},
    }
    ev = ModelEvaluation.from_dict(raw, tag="recsys-ease:v1")
    assert (ev.tag, ev.latency_p99_ms, ev.model_bytes, ev.n_users) == (
        "recsys-ease:v1",
        2.0,
        1234,
        N_USERS,
    )
    other = ModelEvaluation.from_dict({**raw, "split": {**raw["split"], "test": "zz"}}, tag="t:1")
    assert ev.split_fingerprint != other.split_fingerprint
    assert ev.split_fingerprint == gate.checksums_fingerprint(dict(reversed(raw["split"].items())))
    with pytest.raises(DataError, match="tag"):
        ModelEvaluation.from_dict(raw)


def test_text_user_ids_survive_the_file_and_pair_the_bootstrap() -> None:
    """A log with text user ids: the metrics file keeps them as text, and the paired test
    matches champion and challenger by them (a different user set is still refused)."""
    names = np.array([f"user-{i:05d}-x" for i in range(N_USERS)], dtype=object)
    champion = dataclasses.replace(evaluation(base_scores(), tag="recsys-x:v0"), user_ids=names)
    raw = json.loads(json.dumps(champion.to_dict()))
    again = ModelEvaluation.from_dict(raw)
    assert again.user_ids.tolist() == names.tolist()
    challenger = dataclasses.replace(evaluation(base_scores() + 0.05), user_ids=names.copy())
    assert decide(challenger, again, CFG).promote
    shifted = dataclasses.replace(challenger, user_ids=np.roll(names, 1))
    assert not decide(shifted, again, CFG).promote


def test_split_fingerprint_changes_with_any_value() -> None:
    test = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    fp = gate.split_fingerprint(train=test.iloc[:1], test=test)
    assert fp == gate.split_fingerprint(test=test, train=test.iloc[:1])
    changed = test.assign(item_id=[3, 5])
    assert fp != gate.split_fingerprint(train=test.iloc[:1], test=changed)
    assert fp != gate.split_fingerprint(train=test.iloc[:0], test=test)


# --- configuration -------------------------------------------------------------------------------
def test_params_yaml_gate_section_loads() -> None:
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    assert params.gate.primary_metric == "ndcg@10"
    assert params.gate.min_metrics and params.gate.alpha == 0.05
    assert params.gate.n_bootstrap == 1000


def test_gate_config_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "gate": {
                    "min_metrics": {"ndcg@10": 0.2},
                    "slices": {"cold_users": {"metric": "ndcg@10", "max_regression": 0.01}},
                }
            }
        )
    )
    cfg = load_params(path, partial=True).gate
    assert cfg.min_metrics == {"ndcg@10": 0.2}
    assert cfg.slices == {"cold_users": SliceGate(metric="ndcg@10", max_regression=0.01)}
    for bad in (
        {"min_gian": 0.1},
        {"min_metrics": {"ndcg@10": "high"}},
        {"alpha": 1.5},
        {"slices": {"cold": {"metric": "ndcg@10", "max_drop": 0.1}}},
    ):
        path.write_text(yaml.safe_dump({"gate": bad}))
        with pytest.raises(ConfigError):
            load_params(path, partial=True)


# --- cost measurements ---------------------------------------------------------------------------
def test_measure_latency_and_dir_size(tmp_path: Path) -> None:
    from recsys.models.baselines import MostPopular
    from tests.recsys.test_models_contract import synthetic_data

    data = synthetic_data()
    model = MostPopular()
    model.fit(data)
    stats = gate.measure_latency(model, data.vocab.user_ids[:20], n_requests=30, warmup=2)
    assert stats.n_requests == 30 and 0 < stats.p50_ms <= stats.p99_ms
    model.save(tmp_path / "m")
    expected = sum(p.stat().st_size for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert gate.dir_size(tmp_path / "m") == expected > 0
    with pytest.raises(DataError):
        gate.dir_size(tmp_path / "missing")
    with pytest.raises(ValueError):
        gate.measure_latency(model, [], n_requests=3)


# --- the served two-stage ranking (issue 16) -----------------------------------------------------
def test_a_two_stage_ranking_may_lose_at_most_the_budget_to_its_ranker() -> None:
    """The gate measures what is served: a two-stage ranking whose NDCG@10 falls more than
    ``max_two_stage_loss`` below its ranker's full ranking is refused, with the numbers."""
    scores = base_scores()
    served = scores.mean()
    cfg = dataclasses.replace(CFG, max_two_stage_loss=0.01)
    close = dataclasses.replace(evaluation(scores), ranker_metrics={"ndcg@10": served + 0.009})
    assert decide(close, None, cfg).promote
    far = dataclasses.replace(evaluation(scores), ranker_metrics={"ndcg@10": served + 0.02})
    decision = decide(far, None, cfg)
    assert not decision.promote and failed_rules(decision) == {"two_stage"}
    (reason,) = decision.failures
    assert reason.threshold == pytest.approx(served + 0.01)
    assert "ranker alone" in reason.message
    assert decide(far, None, dataclasses.replace(cfg, max_two_stage_loss=None)).promote
    single = evaluation(scores)  # a single model has no two-stage rule
    assert "two_stage" not in {r.rule for r in decide(single, None, cfg).reasons}


def test_the_metrics_file_of_a_two_stage_model_carries_its_ranker() -> None:
    raw = {
        "format_version": 1,
        "metrics": {"ndcg@10": 0.2},
        "split": {"train": "a", "test": "b"},
        "per_user": {"user_ids": [1, 2], "ndcg@10": [0.1, 0.3]},
        "two_stage": {"ranker_metrics": {"ndcg@10": 0.25}, "recall@M": 0.99},
    }
    ev = ModelEvaluation.from_dict(raw, tag="recsys-twostage:v1")
    assert ev.ranker_metrics == {"ndcg@10": 0.25}
    again = ModelEvaluation.from_dict(ev.to_dict())
    assert again.ranker_metrics == {"ndcg@10": 0.25}
