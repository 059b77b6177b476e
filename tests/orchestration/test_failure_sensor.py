"""The failure sensor writes which step of a failed run failed, and why, to
reports/failures/<run id>.json (a failed nightly run is visible without the UI)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from orchestration.defs.resources import DvcProject
from orchestration.defs.sensors import FAILURES_DIR, build_failure_sensor


@dg.op
def prepare() -> int:
    return 1


@dg.op
def train(rows: int) -> None:
    raise ValueError(f"disk full after {rows} row(s)")


@dg.job
def failing_job() -> None:
    train(prepare())


def test_a_failed_run_is_recorded_with_its_failed_step(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="pipeline_failure_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    sensor = build_failure_sensor(DvcProject(root=str(tmp_path)))
    sensor(context)
    record = json.loads((tmp_path / FAILURES_DIR / f"{result.run_id}.json").read_text())
    assert record["run_id"] == result.run_id and record["job"] == "failing_job"
    assert [s["step"] for s in record["failed_steps"]] == ["train"]
    step = record["failed_steps"][0]
    assert step["error"] == "ValueError: disk full after 1 row(s)"  # what the step raised
    assert 'executing op "train"' in step["raised_as"]  # Dagster's wrapper around it
