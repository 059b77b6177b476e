"""Schedules only. Off by default: ``RECSYS_AUTOMATION=on`` (orchestration/definitions.py)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.jobs import training_job


def build_nightly_training_schedule(running: bool = False) -> dg.ScheduleDefinition:
    """The nightly retraining; ``running``: on as soon as a daemon (``dagster dev``) runs,
    otherwise it waits to be switched on in the UI (the choice is then kept in DAGSTER_HOME)."""
    return dg.ScheduleDefinition(
        name="nightly_training_schedule",
        job=training_job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if running
        else dg.DefaultScheduleStatus.STOPPED,
        description="Retrain nightly at 02:00 UTC; unchanged data and params make it a no-op "
        "(DVC skips every stage) apart from validation.",
    )


nightly_training_schedule = build_nightly_training_schedule()
