"""Gate decision and champion: registering candidates, gating the best one, promoting it.

``gate_decision`` registers every evaluated candidate in the BentoML model store (once per
trained artifact), picks the best on the gate's primary metric, re-evaluates the current
champion on the *same* processed split, and runs ``recsys gate``. ``check_metric_gate``
(blocking, checks.py) fails when the gate did not bless it, so ``champion_model`` never runs after a
rejection; ``champion_model`` runs ``recsys promote``, which re-reads the recorded decision
itself (a run that skipped the gate cannot promote), then versions the registry with DVC.
"""

import math
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.eval_assets import METRICS_DIR, evaluate_stage, read_metrics
from orchestration.defs.plots import bar_chart, markdown_image
from orchestration.defs.resources import DVC_POOL, DvcProject

GATE_DIR = Path("reports") / "gate"
HANDOFF_FILE = "latest.json"
"""What ``gate_decision`` hands ``champion_model`` (tag, verdict, decision file)."""
REGISTRY_DIR = Path("data") / "registry"
STORE_PREFIX = "recsys-"
DVC_MD5 = "dvc_md5"
"""Metadata key of a registered model: the DVC hash of ``models/<family>`` it was copied from."""


def best_candidate(reports: dict[str, dict[str, Any]], metric: str) -> str:
    """The family with the highest finite ``metric`` (ties: the first listed)."""

    def value(family: str) -> float:
        v = reports[family].get("metrics", {}).get(metric)
        return float(v) if v is not None and math.isfinite(float(v)) else -math.inf

    best = max(reports, key=value)
    if value(best) == -math.inf:
        raise dg.Failure(f"no candidate has a finite '{metric}': nothing to gate")
    return best


def register_candidate(dvc: DvcProject, family: str, report: dict[str, Any]) -> str:
    """The store tag of ``models/<family>``: saved with ``bentoml.models.create`` the first
    time this trained artifact (its DVC hash) is seen, reused afterwards."""
    from recsys import gate
    from recsys.serving import store

    md5 = dvc.out_hashes(f"train@{family}").get(f"models/{family}", "")
    name = f"{STORE_PREFIX}{family}"
    split = gate.checksums_fingerprint(report["split"])
    for model in _stored(name):
        meta = model.info.metadata
        if meta.get(DVC_MD5) == md5 and meta.get(store.SPLIT_KEY) == split:
            return str(model.tag)
    params = dvc.params()
    labels = store.ModelLabels(
        data_version=dvc.out_hashes("preprocess").get("data/processed", ""),
        git_revision=store.git_revision(dvc.path),
        params_hash=store.params_hash(params.models.settings(family)),
        metrics={k: float(report["metrics"][k]) for k in ("ndcg@10", "recall@10")},
    )
    return store.save_model(
        dvc.path / "models" / family,
        name,
        labels,
        split_fingerprint=split,
        metadata={DVC_MD5: md5, "family": family, "fit_seconds": report.get("fit_seconds")},
    )


def _stored(name: str) -> list[Any]:
    """Models named ``name`` in the store (BentoML raises NotFound for none)."""
    from bentoml.exceptions import NotFound

    from recsys.serving import store

    try:
        return list(store.model_store().list(name))
    except NotFound:
        return []


def build_gate_decision(families: list[str] | tuple[str, ...]) -> dg.AssetsDefinition:
    @dg.asset(group_name="promotion", kinds={"bentoml"}, deps=["model_metrics"])
    def gate_decision(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
        """The promotion gate on the best candidate against the current champion, both on the
        same test split (recsys gate: absolute floors, min gain with a paired bootstrap,
        latency and size budgets). Every candidate is registered in the BentoML model store."""
        from recsys.data import io
        from recsys.serving import store

        params = dvc.params()
        metric = params.gate.primary_metric
        reports = read_metrics(dvc, families)
        tags = {f: register_candidate(dvc, f, reports[f]) for f in families}
        family = best_candidate(reports, metric)
        tag = tags[family]
        registry = store.Registry(dvc.path / REGISTRY_DIR)
        champion = registry.champion()
        gate_dir = dvc.path / GATE_DIR
        handoff: dict[str, Any] = {
            "challenger": tag,
            "family": family,
            "champion": None if champion is None else champion.tag,
            "already_champion": champion is not None and champion.tag == tag,
            "already_rejected": False,
            "promote": False,
            "decision_file": None,
        }
        chart = {f"{family} (challenger)": _bar(reports[family], metric)}
        earlier = earlier_rejection(registry, tag, handoff["champion"])
        if handoff["already_champion"]:
            report = f"gate: {tag} already is the champion; nothing to decide"
        elif earlier is not None:
            # No new model since the last run: the recorded verdict stands (the champion stays).
            handoff["already_rejected"] = True
            report = f"gate: no new challenger; {tag} was rejected earlier:\n{earlier}"
        else:
            args = [
                "recsys", "gate", "--params", dvc.params_file,
                "--challenger", f"{METRICS_DIR}/{family}.json", "--challenger-tag", tag,
                "--out", str(GATE_DIR / "decision.json"), "--registry", str(REGISTRY_DIR),
            ]  # fmt: skip
            if champion is not None:
                champion_json = champion_metrics(dvc, champion.tag)
                args += ["--champion", str(champion_json), "--champion-tag", champion.tag]
                chart[f"{champion.tag} (champion)"] = _bar(io.read_json(champion_json), metric)
            result = dvc.run(args)
            report = (result.stdout + result.stderr).strip()
            if result.returncode not in (0, 1):
                raise dg.Failure(f"recsys gate failed (exit {result.returncode}):\n{report}")
            handoff["promote"] = result.returncode == 0
            handoff["decision_file"] = str(GATE_DIR / "decision.json")
        handoff["report"] = report
        io.write_json(handoff, gate_dir / HANDOFF_FILE)
        context.log.info(report)
        return dg.MaterializeResult(
            metadata={
                "challenger": tag,
                "champion": handoff["champion"] or "none (first run)",
                "promote": bool(handoff["promote"]),
                "already champion": bool(handoff["already_champion"]),
                "already rejected": bool(handoff["already_rejected"]),
                "decision": dg.MetadataValue.md(f"```\n{report}\n```"),
                "registered": dg.MetadataValue.json(tags),
                "candidate vs champion": dg.MetadataValue.md(
                    markdown_image(bar_chart(chart, f"{metric} (95 % CI)"), "gate")
                ),
            }
        )

    return gate_decision


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


def champion_metrics(dvc: DvcProject, tag: str) -> Path:
    """Re-evaluate the champion on the current processed split (``recsys evaluate``), so the
    gate never compares numbers from two different splits."""
    from recsys.serving import store

    out = GATE_DIR / "champion.json"
    result = dvc.run(
        [
            "recsys", "evaluate", "--model", str(store.model_path(tag)),
            "--in", "data/processed", "--out", str(out),
        ]
    )  # fmt: skip
    if result.returncode != 0:
        raise dg.Failure(f"re-evaluating champion {tag} failed:\n{result.stderr[-4000:]}")
    return dvc.path / out


def _bar(report: dict[str, Any], metric: str) -> tuple[float, float, float]:
    value = float(report["metrics"][metric])
    lo, hi = report.get("ci", {}).get(metric, (value, value))
    return value, float(lo), float(hi)


def read_handoff(dvc: DvcProject) -> dict[str, Any]:
    from recsys.data import io

    path = dvc.path / GATE_DIR / HANDOFF_FILE
    if not path.is_file():
        raise dg.Failure(f"no gate decision at {path}: materialize gate_decision first")
    data: dict[str, Any] = io.read_json(path)
    return data


@dg.asset(group_name="promotion", kinds={"bentoml", "dvc"}, deps=["gate_decision"], pool=DVC_POOL)
def champion_model(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
    """The champion pointer (data/registry/champion.json, with history for rollback): the gated
    challenger is promoted through ``recsys promote``, which re-checks the recorded decision.
    The registry directory is versioned with DVC (data/registry.dvc)."""
    from recsys.serving import store

    handoff = read_handoff(dvc)
    tag = handoff["challenger"]
    if handoff["promote"]:
        result = dvc.run(["recsys", "promote", tag, "--registry", str(REGISTRY_DIR)])
        output = (result.stdout + result.stderr).strip()
        context.log.info(output)
        if result.returncode != 0:
            raise dg.Failure(f"promotion of {tag} refused or failed:\n{output}")
        added = dvc.run(["dvc", "add", "--quiet", str(REGISTRY_DIR)])
        if added.returncode != 0:
            raise dg.Failure(f"dvc add {REGISTRY_DIR} failed:\n{added.stderr[-4000:]}")
    current = store.Registry(dvc.path / REGISTRY_DIR).champion()
    described = dvc.run(["recsys", "champion", "--registry", str(REGISTRY_DIR)])
    version = dvc.fingerprint([dvc.path / REGISTRY_DIR / "champion.json"], None)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "champion": current.tag if current else "none",
            "changed": bool(handoff["promote"]),
            "registry": dg.MetadataValue.md(f"```\n{described.stdout.strip()}\n```"),
            "evaluated by": evaluate_stage(handoff["family"]),
        },
    )
