"""The single ``Definitions`` of the project: ``dagster dev -m orchestration.definitions``.

The repository root (where ``dvc.yaml`` and ``params.yaml`` live) is this checkout, or
``$RECSYS_ROOT``; the candidate model families, one asset each, are the keys of ``models`` in
its ``params.yaml`` (the same list ``dvc.yaml`` iterates over).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from orchestration.defs import data_assets
from orchestration.defs.checks import (
    check_bento_deployable,
    check_metric_gate,
    check_raw_interactions,
)
from orchestration.defs.eval_assets import build_model_metrics
from orchestration.defs.jobs import training_job
from orchestration.defs.model_assets import build_model_assets
from orchestration.defs.promotion_assets import build_gate_decision, champion_model
from orchestration.defs.resources import DvcProject
from orchestration.defs.schedules import nightly_training_schedule
from orchestration.defs.sensors import build_failure_sensor, new_raw_data_sensor
from orchestration.defs.serving_assets import recommender_bento
from recsys import pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]


ASSET_CHECKS = (check_raw_interactions, check_metric_gate, check_bento_deployable)


def build_assets(families: Sequence[str]) -> list[dg.AssetsDefinition]:
    """The asset graph for these candidate families (raw data to champion)."""
    return [
        data_assets.raw_interactions,
        data_assets.prepared_interactions,
        data_assets.processed_interactions,
        *build_model_assets(families),
        build_model_metrics(families),
        build_gate_decision(families),
        champion_model,
        recommender_bento,
    ]


def build_definitions(root: Path | str = REPO_ROOT) -> dg.Definitions:
    """All definitions for the DVC project at ``root`` (tests pass a temporary copy)."""
    dvc = DvcProject(root=str(Path(root).resolve()))
    families = pipeline.check_candidates(dvc.params().models)
    return dg.Definitions(
        assets=build_assets(families),
        asset_checks=list(ASSET_CHECKS),
        jobs=[training_job],
        schedules=[nightly_training_schedule],
        sensors=[new_raw_data_sensor, build_failure_sensor(dvc)],
        resources={"dvc": dvc},
    )


defs = build_definitions(os.environ.get("RECSYS_ROOT") or REPO_ROOT)
