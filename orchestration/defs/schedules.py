"""Schedules only."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.jobs import training_job

nightly_training_schedule = dg.ScheduleDefinition(
    name="nightly_training_schedule",
    job=training_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,  # runs while `dagster dev` (the daemon) does
    description="Retrain nightly at 02:00 UTC; unchanged data and params make it a no-op "
    "(DVC skips every stage) apart from validation.",
)
