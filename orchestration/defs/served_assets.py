"""The served ranking of every candidate (DVC stages ``twostage@<family>``, ``recsys compose``):
the retriever's M candidates ranked by the candidate, saved as one model and scored on the
test split beside the candidate's own full ranking. The gate chooses among these."""

from typing import Any

import dagster as dg

from orchestration.defs.config import StageConfig
from orchestration.defs.data_assets import stage_metadata
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject
from recsys import candidates, promotion
from recsys.data import io


def twostage_stage(family: str) -> str:
    return f"twostage@{family}"


@dg.asset(
    group_name="evaluation",
    kinds={"dvc", "json"},
    deps=["model_metrics"],
    pool=DVC_POOL,
    owners=OWNERS,
)
def served_rankings(
    context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
) -> dg.MaterializeResult:
    """Each candidate as the service would answer with it (DVC stages twostage@FAMILY):
    models/twostage-FAMILY, metrics in models/metrics/twostage-FAMILY.json with the candidate's
    full-ranking NDCG@10 and the ANN's recall@M beside the served NDCG@10."""
    params = dvc.params()
    families = candidates.check_candidates(params.models, params.serving)
    stages = [twostage_stage(f) for f in families]
    run = dvc.repro(*stages, force=config.force, set_params=config.set_params)
    context.log.info(run.output)
    metric = params.gate.primary_metric
    metadata: dict[str, Any] = {
        **stage_metadata(run),
        "data version": dvc.data_version(*stages).value,
    }
    for f in families:
        report = io.read_json(promotion.served_metrics_file(dvc.path / "models", f))
        if report.get("skipped"):
            metadata[f"{f}: skipped"] = str(report["skipped"])
            continue
        two = report["two_stage"]
        metadata[f"{f}: {metric} served"] = float(report["metrics"][metric])
        metadata[f"{f}: {metric} ranking every item"] = float(two["ranker_metrics"][metric])
        metadata[f"{f}: recall@M"] = float(two["recall@M"])
    return dg.MaterializeResult(data_version=dvc.data_version(*stages), metadata=metadata)
