"""The single ``Definitions`` of the project: ``dagster dev -m orchestration.definitions``.

The repository root (where ``dvc.yaml`` and ``params.yaml`` live) is this checkout, or
``$RECSYS_ROOT``; the candidate model families, one asset each, are the keys of ``models`` in
its ``params.yaml`` (the same list ``dvc.yaml`` iterates over).

Automation (the nightly schedule and the sensors) is off by default, so that starting
``dagster dev`` to look at the UI never starts a training run by itself; ``RECSYS_AUTOMATION=on``
in the environment of ``dagster dev`` switches it on (each can also be switched on in the UI,
which Dagster then remembers in ``DAGSTER_HOME``).
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
    check_update_bento,
)
from orchestration.defs.eval_assets import build_model_metrics, evaluate_stage
from orchestration.defs.jobs import training_job, update_job
from orchestration.defs.model_assets import build_model_assets, model_asset_name, train_stage
from orchestration.defs.promotion_assets import (
    GATE_CODE,
    PROMOTE_CODE,
    build_gate_decision,
    champion_model,
)
from orchestration.defs.resources import DvcProject
from orchestration.defs.schedules import build_nightly_training_schedule
from orchestration.defs.sensors import (
    build_failure_sensor,
    build_new_raw_data_sensor,
    build_service_health_sensor,
)
from orchestration.defs.served_assets import served_rankings, twostage_stage
from orchestration.defs.serving_assets import BENTO_CODE, bento_image, recommender_bento
from orchestration.defs.tuning_assets import TUNE_STAGE, tuned_settings
from orchestration.defs.update_assets import UPDATE_CODE, incremental_update
from recsys import candidates

REPO_ROOT = Path(__file__).resolve().parents[1]
AUTOMATION_ENV = "RECSYS_AUTOMATION"
_ON, _OFF = frozenset({"on", "1", "true", "yes"}), frozenset({"off", "0", "false", "no", ""})


def automation_enabled(value: str | None) -> bool:
    """``RECSYS_AUTOMATION``: ``on`` starts the schedule and sensors with the daemon; unset or
    ``off``: they stay stopped. Anything else is refused rather than guessed."""
    text = (value or "").strip().lower()
    if text not in _ON | _OFF:
        raise ValueError(f"{AUTOMATION_ENV}={value!r}: expected 'on' or 'off'")
    return text in _ON


ASSET_CHECKS = (
    check_raw_interactions,
    check_metric_gate,
    check_bento_deployable,
    check_update_bento,
)


def asset_code(families: Sequence[str]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Asset -> (its DVC stages, further code paths): what its ``code_version`` digests. A DVC
    asset's code is what ``dvc.yaml`` lists for its stages; the others name theirs."""
    return {
        "raw_interactions": ((), data_assets.RAW_CODE),
        "prepared_interactions": ((data_assets.PREPARE_STAGE,), ()),
        "processed_interactions": ((data_assets.PREPROCESS_STAGE,), ()),
        "tuned_settings": ((TUNE_STAGE,), ()),
        **{model_asset_name(f): ((train_stage(f),), ()) for f in families},
        "model_metrics": (tuple(evaluate_stage(f) for f in families), ()),
        "served_rankings": (tuple(twostage_stage(f) for f in families), ()),
        "gate_decision": ((), GATE_CODE),
        "champion_model": ((), PROMOTE_CODE),
        "recommender_bento": ((), BENTO_CODE),
        "bento_image": ((), BENTO_CODE),
        "incremental_update": ((), UPDATE_CODE),
    }


def with_code_versions(
    assets: Sequence[dg.AssetsDefinition], dvc: DvcProject, families: Sequence[str]
) -> list[dg.AssetsDefinition]:
    """``assets`` with the ``code_version`` of their code in the project at ``dvc.root``
    (``DvcProject.code_version``): Dagster marks an asset stale when its code changed."""
    code = asset_code(families)

    def versioned(spec: dg.AssetSpec) -> dg.AssetSpec:
        stages, paths = code[spec.key.to_user_string()]
        return spec.replace_attributes(code_version=dvc.code_version(stages, paths))

    return [a.map_asset_specs(versioned) for a in assets]


def build_assets(
    families: Sequence[str], dvc: DvcProject | None = None
) -> list[dg.AssetsDefinition]:
    """The asset graph for these candidate families (raw data to champion); with ``dvc``, each
    asset carries the code version of its code in that project."""
    assets = [
        data_assets.raw_interactions,
        data_assets.prepared_interactions,
        data_assets.processed_interactions,
        tuned_settings,
        *build_model_assets(families),
        build_model_metrics(families),
        served_rankings,
        build_gate_decision(families),
        champion_model,
        recommender_bento,
        bento_image,
        incremental_update,
    ]
    return assets if dvc is None else with_code_versions(assets, dvc, families)


def build_definitions(root: Path | str = REPO_ROOT, *, automation: bool = False) -> dg.Definitions:
    """All definitions for the DVC project at ``root`` (tests pass a temporary copy);
    ``automation``: the schedule and sensors run by default (else they start stopped)."""
    dvc = DvcProject(root=str(Path(root).resolve()))
    params = dvc.params()
    families = candidates.check_candidates(params.models, params.serving)
    return dg.Definitions(
        assets=build_assets(families, dvc),
        asset_checks=list(ASSET_CHECKS),
        jobs=[training_job, update_job],
        schedules=[build_nightly_training_schedule(automation)],
        sensors=[
            build_new_raw_data_sensor(automation),
            build_failure_sensor(dvc, automation),
            build_service_health_sensor(automation),
        ],
        resources={"dvc": dvc},
    )


defs = build_definitions(
    os.environ.get("RECSYS_ROOT") or REPO_ROOT,
    automation=automation_enabled(os.environ.get(AUTOMATION_ENV)),
)
