"""The pipeline's promotion policy: which served ranking is the challenger, how it enters the
model store, and what the gate decided about it. Orchestration only wires this in.

::

    outcome = gate_candidates(Path("models"), Path("data/processed"), params,
                              Registry("data/registry"), data_version="<dvc hash>")
    outcome.promote          # True: `recsys promote outcome.challenger` may install it

Rules (each unit-tested in tests/recsys/test_promotion.py):

- the candidates are the served rankings ``models/twostage-<family>`` (``recsys compose``),
  one per family of ``models:``; the challenger is the one with the best primary metric
  *as served* (ties: the first listed);
- each is registered in the BentoML store (``recsys-twostage``) once per content: a second run
  over the same files (same fingerprint, same split) reuses the tag;
- the champion is re-evaluated on the same processed split before the gate compares them, and
  the challenger's single-request latency (the gate's latency budget) is measured then, on
  the same machine: the metrics files hold no timings (they are DVC outputs, the same bytes
  for the same model; ``recsys.timings``);
- a challenger already rejected against the same champion is not gated again (the recorded
  verdict stands); the champion itself is not gated against itself.

The outcome is one typed, validated JSON file (``GateOutcome``), which the Dagster assets and
the blocking check read; nothing parses command output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from recsys.config import Params
from recsys.data import io
from recsys.data.records import Record
from recsys.errors import DataError
from recsys.fingerprint import tree_digest
from recsys.gate import ModelEvaluation, checksums_fingerprint, decide
from recsys.pipeline import (
    TWO_STAGE_PREFIX,
    candidate_timings,
    evaluate_candidate,
    metrics_file,
    recommend_latency_ms,
)
from recsys.skipped import skipped_reason
from recsys.timings import NOT_MEASURED, read_timings, timings_path

STORE_NAME: Final = "recsys-twostage"
MODEL_FINGERPRINT: Final = "content_sha256"
"""Metadata key of a registered model: ``model_fingerprint`` of the directory it came from."""
OUTCOME_FORMAT: Final = 1
P99_KEY: Final = "p99 ms"
"""A candidate's p99 latency in ``GateOutcome.candidates``: the challenger's measured by the
gate, the others' from their timing records (None: not measured in this run)."""


def served_dir(models_dir: Path, family: str) -> Path:
    return Path(models_dir) / f"{TWO_STAGE_PREFIX}{family}"


def served_metrics_file(models_dir: Path, family: str) -> Path:
    return metrics_file(models_dir, f"{TWO_STAGE_PREFIX}{family}")


def best_candidate(reports: Mapping[str, Mapping[str, Any]], metric: str) -> str:
    """The family with the highest finite ``metric`` (ties: the first listed)."""

    def value(family: str) -> float:
        v = reports[family].get("metrics", {}).get(metric)
        return float(v) if v is not None and math.isfinite(float(v)) else -math.inf

    if not reports:
        raise DataError("no candidates to choose from", fix="list models under 'models:'")
    best = max(reports, key=value)
    if value(best) == -math.inf:
        raise DataError(
            f"no candidate has a finite '{metric}': nothing to gate",
            fix="check the metrics files under models/metrics/",
        )
    return best


def model_fingerprint(model_dir: Path) -> str:
    """The content of a saved model: every file under ``model_dir`` (relative names)."""
    return tree_digest([Path(model_dir)])


def register_candidate(
    model_dir: Path,
    report: Mapping[str, Any],
    *,
    params_hash: str,
    data_version: str,
    home: Path | str | None = None,
    fit_seconds: float | None = None,
) -> str:
    """The store tag of the served ranking in ``model_dir``: saved the first time these files
    (their fingerprint) evaluated on this split are seen, reused afterwards. ``fit_seconds``
    (its candidate's fit, from the timing record; None: not measured) joins its metadata."""
    from recsys.serving import store

    fingerprint = model_fingerprint(model_dir)
    split = checksums_fingerprint(report["split"])
    for info in store.list_models(STORE_NAME, home=home):
        meta = info["metadata"]
        if meta.get(MODEL_FINGERPRINT) == fingerprint and meta.get(store.SPLIT_KEY) == split:
            return str(info["tag"])
    labels = store.ModelLabels(
        data_version=data_version,
        git_revision=store.git_revision(Path(model_dir).parent),
        params_hash=params_hash,
        metrics={k: float(report["metrics"][k]) for k in ("ndcg@10", "recall@10")},
    )
    return store.save_model(
        model_dir,
        STORE_NAME,
        labels,
        split_fingerprint=split,
        metadata={
            MODEL_FINGERPRINT: fingerprint,
            "family": report.get("family"),
            # BentoML metadata holds no None: an unmeasured fit is left out
            **({} if fit_seconds is None else {"fit_seconds": fit_seconds}),
        },
        home=home,
    )


def earlier_rejection(registry: Any, tag: str, champion: str | None) -> str | None:
    """The recorded report when ``tag`` was already rejected against this same champion."""
    path = registry.decision_path(tag)
    if champion is None or not path.is_file():
        return None
    decision = registry.read_decision(tag)
    if decision.promote or decision.champion != champion:
        return None
    report: str = decision.report()
    return report


@dataclass(frozen=True)
class GateOutcome(Record):
    """What ``gate_candidates`` decided (``reports/gate/latest.json``)."""

    challenger: str
    """Store tag of the best served ranking."""
    family: str
    """Its family, ``twostage-<candidate>``."""
    champion: str | None
    promote: bool
    already_champion: bool
    already_rejected: bool
    decision_file: str | None
    """The recorded ``GateDecision`` (None when no new decision was taken)."""
    report: str
    registered: dict[str, str] = field(default_factory=dict)
    """Candidate family -> store tag of its served ranking."""
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Candidate family -> primary metric served and ranking every item, recall@M, CI, p99
    latency (``P99_KEY``)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Candidate family -> why it was not trained (its data lacks what it needs)."""
    format_version: int = OUTCOME_FORMAT

    RECORD_WHAT = "gate outcome"
    RECORD_FIX = "re-run the gate (recsys gate-candidates)"
    RECORD_VERSION = OUTCOME_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gate_candidates(
    models_dir: Path,
    processed_dir: Path,
    params: Params,
    registry: Any,
    *,
    data_version: str,
    work_dir: Path,
    families: Sequence[str] | None = None,
    timings_dir: Path | None = None,
    context: Mapping[str, Any] | None = None,
) -> GateOutcome:
    """Register every served ranking, gate the best one against the champion (re-evaluated on
    the same split, the challenger's latency measured now), record the decision in
    ``registry``; see the module docstring.

    Args:
      registry: a ``recsys.serving.store.Registry`` (champion pointer, decisions).
      data_version: the processed data's version (its DVC hash), a label of the models.
      work_dir: where the champion's evaluation and the decision are written.
      timings_dir: the pipeline's timing records (``recsys.timings``): the fit seconds of
        each candidate and the p99 latency of those not measured here, where recorded.
      context: recorded with the decision (``GateDecision.context``; ``recsys update``'s).
    """
    from recsys.serving import store

    families = list(families or params.models.candidates)
    skipped = {
        f: reason
        for f in families
        if (reason := skipped_reason(served_dir(models_dir, f))) is not None
    }
    families = [f for f in families if f not in skipped]
    if not families:
        reasons = "; ".join(f"{f}: {why}" for f, why in skipped.items())
        raise DataError(
            f"every candidate was skipped, nothing to gate ({reasons})",
            fix="list under 'models:' a candidate that the data can train (e.g. ease)",
        )
    metric = params.gate.primary_metric
    reports = {f: _read_report(served_metrics_file(models_dir, f)) for f in families}
    tags = {
        f: register_candidate(
            served_dir(models_dir, f),
            reports[f],
            params_hash=served_params_hash(params, f),
            data_version=data_version,
            home=registry.home,
            fit_seconds=candidate_timings(models_dir, f, timings_dir)["fit_seconds"],
        )
        for f in families
    }
    best = best_candidate(reports, metric)
    tag, champion = tags[best], registry.champion()
    champion_tag = None if champion is None else champion.tag
    summary = {
        f: _candidate_summary(
            reports[f],
            metric,
            candidate_timings(models_dir, f"{TWO_STAGE_PREFIX}{f}", timings_dir)["p99_ms"],
        )
        for f in families
    }
    base = GateOutcome(
        challenger=tag,
        family=f"{TWO_STAGE_PREFIX}{best}",
        champion=champion_tag,
        promote=False,
        already_champion=False,
        already_rejected=False,
        decision_file=None,
        report="",
        registered=tags,
        candidates=summary,
        skipped=skipped,
    )
    if champion_tag == tag:
        report = f"gate: {tag} already is the champion; nothing to decide"
        return dataclasses.replace(base, already_champion=True, report=report)
    earlier = earlier_rejection(registry, tag, champion_tag)
    if earlier is not None:
        report = f"gate: no new challenger; {tag} was rejected earlier:\n{earlier}"
        return dataclasses.replace(base, already_rejected=True, report=report)
    challenger = with_latency(
        ModelEvaluation.from_dict(reports[best], f"{TWO_STAGE_PREFIX}{best}", tag=tag),
        served_dir(models_dir, best),
    )
    measured = {**summary, best: {**summary[best], P99_KEY: challenger.latency_p99_ms}}
    champion_eval = None
    if champion_tag is not None:
        path = Path(work_dir) / "champion.json"
        champion_dir = store.model_path(champion_tag, home=registry.home)
        raw = evaluate_candidate(champion_dir, processed_dir, path)
        champion_eval = ModelEvaluation.from_dict(raw, str(path), tag=champion_tag)
    decision = dataclasses.replace(
        decide(challenger, champion_eval, params.gate), context=dict(context or {})
    )
    decision_file = Path(work_dir) / "decision.json"
    io.write_json(decision.to_dict(), decision_file)
    registry.record_decision(decision)
    return dataclasses.replace(
        base,
        promote=decision.promote,
        decision_file=str(decision_file),
        report=decision.report(),
        candidates=measured,
    )


def with_latency(evaluation: ModelEvaluation, model_dir: Path, *, seed: int = 0) -> ModelEvaluation:
    """``evaluation`` with the p50/p99 single-request latency of the model saved in
    ``model_dir``, measured now on the evaluation's users (``recommend_latency_ms``): what the
    gate's latency budget reads, measured where and when the gate runs."""
    from recsys.models.base import Recommender

    if not evaluation.n_users:  # the gate rejects an empty test set itself
        return evaluation
    latency = recommend_latency_ms(Recommender.load(model_dir), evaluation.user_ids, seed=seed)
    return dataclasses.replace(
        evaluation, latency_p50_ms=latency["p50"], latency_p99_ms=latency["p99"]
    )


def gate_evaluation(
    path: Path,
    *,
    tag: str | None = None,
    model_dir: Path | None = None,
    timings_dir: Path | None = None,
) -> tuple[ModelEvaluation, str]:
    """The challenger's evaluation in ``path`` (a ``recsys evaluate`` metrics file or
    ``ModelEvaluation.to_dict()``) with a latency for the gate's budget, and where it came
    from: measured now on the saved model in ``model_dir`` when given; else the one ``path``
    holds; else the one its timing record holds (``recsys evaluate`` measured it writing these
    very bytes); else none, which the budget rejects as not measured."""
    raw = io.read_json(path)
    evaluation = ModelEvaluation.from_dict(raw, str(path), tag=tag)
    if model_dir is not None:
        return with_latency(evaluation, model_dir), f"latency measured now on {model_dir}"
    if evaluation.latency_p99_ms is not None:
        return evaluation, f"latency from {path}"
    family = raw.get("family")
    if timings_dir is not None and isinstance(family, str):
        record = read_timings(timings_dir, "evaluate", family, path)
        p99 = None if record is None else record.value("latency_ms", "p99")
        if record is not None and p99 is not None:
            p50 = record.value("latency_ms", "p50")
            evaluation = dataclasses.replace(
                evaluation,
                latency_p50_ms=None if p50 is None else float(p50),
                latency_p99_ms=float(p99),
            )
            where = timings_path(timings_dir, "evaluate", family)
            return evaluation, f"latency from {where} (measured {record.measured_at})"
    return evaluation, f"latency {NOT_MEASURED} (measure it: --challenger-model DIR)"


def served_params_hash(params: Params, family: str) -> str:
    """The settings a served ranking was built with: its ranker's, its retriever's, M and the
    index (``models.<family>``, ``models.<retriever>``, ``serving``'s first-stage keys)."""
    from recsys.serving.store import params_hash

    serving = params.serving
    retriever = serving.retriever
    return params_hash(
        {
            "ranker": {family: params.models.settings(family)},
            "retriever": {retriever: params.models.families.get(retriever, {})},
            "rerank_top": serving.rerank_top,
            "retrieval": dataclasses.asdict(serving.retrieval),
        }
    )


def _read_report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = io.read_json(
        io.require_file(path, "served ranking's metrics (run `recsys compose` / dvc repro)")
    )
    return report


def _candidate_summary(
    report: Mapping[str, Any], metric: str, p99_ms: float | None
) -> dict[str, Any]:
    two = report.get("two_stage") or {}
    return {
        metric: float(report["metrics"][metric]),
        "ci": list(report.get("ci", {}).get(metric, [])),
        f"{metric} ranking every item": (two.get("ranker_metrics") or {}).get(metric),
        "recall@M": two.get("recall@M"),
        P99_KEY: p99_ms,
    }
