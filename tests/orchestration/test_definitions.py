"""The Dagster definitions load and hold the graph, checks, job, schedule and sensors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy

from orchestration.definitions import (
    AUTOMATION_ENV,
    asset_code,
    automation_enabled,
    build_definitions,
    defs,
)
from orchestration.defs import sensors
from orchestration.defs.resources import DvcProject
from recsys.config import load_params
from tests.conftest import REPO
from tests.orchestration.conftest import TINY_PARAMS


def test_repository_definitions_load() -> None:
    families = load_params(REPO / "params.yaml").models.candidates
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    expected = {
        "raw_interactions", "prepared_interactions", "processed_interactions",
        "tuned_settings", "model_metrics", "served_rankings", "gate_decision", "champion_model",
        "recommender_bento", "bento_image", "incremental_update",
        *(f"{f}_model" for f in families),
    }  # fmt: skip
    assert keys == expected
    job = defs.resolve_job_def("training_job")
    assert job.executor_def is dg.in_process_executor
    assert dg.AssetKey("incremental_update") not in job.asset_layer.selected_asset_keys
    update = defs.resolve_job_def("update_job")
    assert update.asset_layer.selected_asset_keys == {dg.AssetKey("incremental_update")}
    assert defs.resolve_schedule_def("nightly_training_schedule").cron_schedule == "0 2 * * *"
    assert {s.name for s in defs.get_repository_def().sensor_defs} == {
        "new_raw_data_sensor",
        "pipeline_failure_sensor",
        "service_health_sensor",
    }


def test_checks_block_and_dvc_steps_share_one_pool() -> None:
    graph = defs.resolve_asset_graph()
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert set(checks) == {
        "check_raw_interactions",
        "check_metric_gate",
        "check_bento_deployable",
        "check_update_bento",
    }
    assert all(spec.blocking for spec in checks.values())
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        runs_dvc = "dvc" in node.kinds and key.to_user_string() != "raw_interactions"
        assert (node.pools == {"dvc"}) == runs_dvc, key


def write_params(root: Path, models: dict[str, dict[str, object]]) -> None:
    """Every section the strict loader wants (the tiny project's), with these candidates."""
    (root / "params.yaml").write_text(yaml.safe_dump({**TINY_PARAMS, "models": models}))


def test_candidates_come_from_params(tmp_path: Path) -> None:
    write_params(tmp_path, {"mostpop": {}, "bpr": {"epochs": 1}})
    keys = {
        k.to_user_string()
        for k in build_definitions(tmp_path).resolve_asset_graph().get_all_asset_keys()
    }
    assert {"mostpop_model", "bpr_model"} <= keys and "ease_model" not in keys


def test_new_raw_file_sensor(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "README.md").write_text("not data")
    dvc = DvcProject(root=str(tmp_path))
    first = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=None), dvc=dvc)
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    quiet = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=first.cursor), dvc=dvc)
    assert isinstance(quiet, dg.SkipReason)
    (raw / "plays.csv").write_text("user_id,item_id\n1,2\n")
    landed = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=first.cursor), dvc=dvc)
    assert isinstance(landed, dg.SensorResult) and len(landed.run_requests or []) == 1
    assert "plays.csv" in json.loads(landed.cursor or "{}")["raw"]


def test_new_batches_start_updates_and_a_due_full_retrain_starts_training(tmp_path: Path) -> None:
    """A batch in data/incoming (with its side rows) starts update_job on it; the batches an
    update keeps in data/raw/batches start nothing; an update that says a full retrain is
    due starts training_job."""
    incoming, kept = tmp_path / "data" / "incoming", tmp_path / "data" / "raw" / "batches"
    incoming.mkdir(parents=True)
    kept.mkdir(parents=True)
    dvc = DvcProject(root=str(tmp_path))
    first = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=None), dvc=dvc)
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    (incoming / "b1.csv").write_text("user_id,item_id,rating,timestamp\n1,2,5,1\n")
    (incoming / "b1.items.csv").write_text("item_id,title\n2,x\n")
    (kept / "20261208T000000Z-u0.parquet").write_bytes(b"kept")
    landed = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=first.cursor), dvc=dvc)
    assert isinstance(landed, dg.SensorResult)
    (request,) = landed.run_requests or []
    assert request.job_name == "update_job"
    config = request.run_config["ops"]["incremental_update"]["config"]
    assert config == {"batch": "data/incoming/b1.csv", "items": "data/incoming/b1.items.csv",
                      "users": ""}  # fmt: skip
    again = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=landed.cursor), dvc=dvc)
    assert isinstance(again, dg.SkipReason)
    outcome = tmp_path / sensors.UPDATE_OUTCOME
    outcome.parent.mkdir(parents=True)
    outcome.write_text(json.dumps({"mode": "full", "reasons": ["the champion is 170.0 h old"]}))
    due = sensors.new_raw_data_sensor(dg.build_sensor_context(cursor=landed.cursor), dvc=dvc)
    assert isinstance(due, dg.SensorResult)
    (full,) = due.run_requests or []
    assert full.job_name == "training_job" and "170.0 h" in full.tags["recsys/reasons"]


def automation_statuses(defs: dg.Definitions) -> dict[str, str]:
    repo = defs.get_repository_def()
    out = {s.name: s.default_status.value for s in repo.schedule_defs}
    return out | {s.name: s.default_status.value for s in repo.sensor_defs}


AUTOMATION = (
    "nightly_training_schedule",
    "new_raw_data_sensor",
    "pipeline_failure_sensor",
    "service_health_sensor",
)


def test_automation_is_off_by_default(tmp_path: Path) -> None:
    # Issue #16: starting `dagster dev` to look around must not start training runs.
    write_params(tmp_path, {"mostpop": {}, "bpr": {}})
    assert automation_statuses(build_definitions(tmp_path)) == dict.fromkeys(AUTOMATION, "STOPPED")
    if not os.environ.get(AUTOMATION_ENV):
        assert automation_statuses(defs) == dict.fromkeys(AUTOMATION, "STOPPED")
    on = build_definitions(tmp_path, automation=True)
    assert automation_statuses(on) == dict.fromkeys(AUTOMATION, "RUNNING")


def test_automation_env_switch() -> None:
    assert automation_enabled("on") and automation_enabled(" ON ") and automation_enabled("1")
    assert not automation_enabled(None) and not automation_enabled("off")
    with pytest.raises(ValueError, match="RECSYS_AUTOMATION"):
        automation_enabled("sometimes")


@pytest.mark.parametrize(("value", "status"), [("on", "RUNNING"), ("off", "STOPPED")])
def test_automation_env_reaches_the_loaded_definitions(value: str, status: str) -> None:
    code = (
        "from orchestration.definitions import defs\n"
        "print(defs.resolve_schedule_def('nightly_training_schedule').default_status.value)\n"
        "print(*sorted({s.default_status.value for s in defs.get_repository_def().sensor_defs}))\n"
    )
    env = {**os.environ, AUTOMATION_ENV: value}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [status, status]


CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def test_descriptions_survive_markdown() -> None:
    """The UI renders descriptions as Markdown, which drops anything that looks like an HTML
    tag: ``models/metrics/<family>.json`` showed as ``models/metrics/.json`` (issue #16).
    Placeholders belong in code spans."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    described = {
        **{k.to_user_string(): graph.get(k).description for k in graph.get_all_asset_keys()},
        **{k.name: graph.get_check_spec(k).description for k in graph.asset_check_keys},
        **{j.name: j.description for j in repo.get_all_jobs()},
        **{s.name: s.description for s in [*repo.schedule_defs, *repo.sensor_defs]},
    }
    assert "model_metrics" in described and "pipeline_failure_sensor" in described
    eaten = {
        name: HTML_TAG.findall(CODE_SPAN.sub("", text))
        for name, text in described.items()
        if text and HTML_TAG.search(CODE_SPAN.sub("", text))
    }
    assert eaten == {}
    assert "``models/metrics/<family>.json``" in (described["model_metrics"] or "")


# --- asset metadata: code versions, owners, freshness (issue #16, part 5) --------------------
def test_every_asset_has_a_code_version_and_owners() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version and len(node.code_version) == 16, key
        assert node.owners == ["team:recsys"], key


def test_champion_and_bento_are_fresher_than_a_missed_night() -> None:
    graph = defs.resolve_asset_graph()
    day = timedelta(days=1)  # the nightly schedule's period
    assert defs.resolve_schedule_def("nightly_training_schedule").cron_schedule == "0 2 * * *"
    for name in ("champion_model", "recommender_bento"):
        policy = graph.get(dg.AssetKey(name)).freshness_policy
        assert isinstance(policy, TimeWindowFreshnessPolicy), name
        assert day < policy.warn_window.to_timedelta() < policy.fail_window.to_timedelta() < 2 * day


def test_stage_code_is_what_dvc_resolves() -> None:
    """``DvcProject.stage_code`` reads dvc.yaml itself (no DVC start-up when the definitions
    load); it must name the code dependencies DVC itself resolves for every stage."""
    from dvc.repo import Repo

    dvc = DvcProject(root=str(REPO))
    with Repo(str(REPO)) as repo:
        resolved = {
            s.addressing: sorted(d.def_path for d in s.deps if d.def_path.startswith("recsys/"))
            for s in repo.index.stages
            if s.addressing != "data/registry.dvc"
        }
    assert resolved and {stage: sorted(dvc.stage_code(stage)) for stage in resolved} == resolved


def test_named_code_paths_exist() -> None:
    """A code path that matches nothing silently drops out of the version (the old validation
    key listed two modules that no longer existed)."""
    families = load_params(REPO / "params.yaml").models.candidates
    for asset, (stages, paths) in asset_code(families).items():
        assert stages or paths, asset
        for pattern in paths:
            assert list(REPO.glob(pattern)), (asset, pattern)
        for stage in stages:
            assert DvcProject(root=str(REPO)).stage_code(stage), (asset, stage)


def code_versions(root: Path) -> dict[str, str]:
    graph = build_definitions(root).resolve_asset_graph()
    return {k.to_user_string(): str(graph.get(k).code_version) for k in graph.get_all_asset_keys()}


def test_code_version_changes_with_the_code_of_its_stage(tmp_path: Path) -> None:
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    caches = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "recsys", tmp_path / "recsys", ignore=caches)
    write_params(tmp_path, {"mostpop": {}, "bpr": {}})
    before = code_versions(tmp_path)
    assert code_versions(tmp_path) == before
    (tmp_path / "recsys" / "data" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "recsys" / "data" / "__pycache__" / "io.cpython-311.pyc").write_bytes(b"\0")
    assert code_versions(tmp_path) == before  # byte-code caches are not code

    with (tmp_path / "recsys" / "data" / "validation_suites.py").open("a") as fh:
        fh.write("\n# changed\n")
    after = code_versions(tmp_path)
    # validation runs in prepare and in `recsys update` (the update asset, no DVC stage)
    assert {k for k in before if after[k] != before[k]} == {
        "prepared_interactions",
        "incremental_update",
    }

    before = after
    with (tmp_path / "recsys" / "models" / "base.py").open("a") as fh:
        fh.write("\n# changed\n")
    after = code_versions(tmp_path)
    # the training stages, the stages composing served rankings, tuning and the update
    # depend on recsys/models
    assert {k for k in before if after[k] != before[k]} == {
        "mostpop_model", "bpr_model", "served_rankings", "tuned_settings", "incremental_update",
    }  # fmt: skip
