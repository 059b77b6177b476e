"""Evaluation of every candidate on the same processed test split, then gate and champion.

``model_metrics`` runs the DVC stages ``evaluate@<family>`` (one metrics file per candidate,
``models/metrics/<family>.json``: metrics, bootstrap CIs, per-user values, size); fit seconds
and latency come from the stages' untracked timing records (``reports/timings/``,
``recsys.timings``), when this run measured them.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from orchestration.defs.config import StageConfig
from orchestration.defs.data_assets import stage_metadata
from orchestration.defs.model_assets import MODELS_DIR, model_asset_name
from orchestration.defs.plots import bar_chart, image_metadata
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject
from recsys import pipeline
from recsys.timings import TIMINGS_DIR

METRICS_DIR = "models/metrics"
PRIMARY_METRIC = "ndcg@10"


def evaluate_stage(family: str) -> str:
    return f"evaluate@{family}"


def read_metrics(dvc: DvcProject, families: Sequence[str]) -> dict[str, dict[str, Any]]:
    from recsys.data import io

    return {f: io.read_json(dvc.path / METRICS_DIR / f"{f}.json") for f in families}


def build_model_metrics(families: Sequence[str]) -> dg.AssetsDefinition:
    stages = [evaluate_stage(f) for f in families]

    @dg.asset(
        group_name="evaluation",
        kinds={"dvc", "json"},
        deps=[model_asset_name(f) for f in families],
        pool=DVC_POOL,
        owners=OWNERS,
    )
    def model_metrics(
        context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
    ) -> dg.MaterializeResult:
        """Every candidate scored on the same processed test split (DVC stages
        ``evaluate@<family>``): ``models/metrics/<family>.json`` with metrics, 95 % bootstrap CIs,
        per-user values for the gate's paired test and size; fit time and p99 latency from the
        run's timing records (reports/timings/)."""
        run = dvc.repro(
            *stages, force=config.force, set_params=config.set_params, log=context.log.info
        )
        reports = read_metrics(dvc, families)
        timings = {
            f: pipeline.candidate_timings(dvc.path / MODELS_DIR, f, dvc.path / TIMINGS_DIR)
            for f in families
        }
        scored = {f: r for f, r in reports.items() if not r.get("skipped")}
        chart = {
            f: (r["metrics"][PRIMARY_METRIC], *r["ci"][PRIMARY_METRIC]) for f, r in scored.items()
        }
        metadata: dict[str, Any] = {
            **stage_metadata(run),
            "candidates": ", ".join(families),
            "metrics": dg.MetadataValue.md(
                pipeline.metrics_table(list(reports.values()), PRIMARY_METRIC, timings)
            ),
            f"{PRIMARY_METRIC} by candidate": image_metadata(
                context,
                bar_chart(chart, f"{PRIMARY_METRIC} (95 % CI)", ylabel=PRIMARY_METRIC),
                "model-metrics",
                "candidates",
            ),
            "test users": int(next(iter(scored.values()), {}).get("n_users", 0)),
            "data version": dvc.data_version(*stages).value,
        }
        for f, r in reports.items():
            if r.get("skipped"):
                metadata[f"{f}: skipped"] = str(r["skipped"])
            else:
                metadata[f"{f}: {PRIMARY_METRIC}"] = float(r["metrics"][PRIMARY_METRIC])
        return dg.MaterializeResult(data_version=dvc.data_version(*stages), metadata=metadata)

    return model_metrics
