"""Sensors only (they need the daemon: ``dagster dev`` starts it). Off by default:
``RECSYS_AUTOMATION=on`` (orchestration/definitions.py) starts them with the daemon."""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.jobs import training_job, update_job
from orchestration.defs.resources import DvcProject

IGNORED = frozenset({"README.md", ".gitignore"})
"""Files in data/raw that are not data."""
ACCEPTED_BATCHES = "batches"
"""data/raw/batches: batches ``recsys update`` accepted; not a trigger (a full run reads them)."""
BATCH_SUFFIXES = frozenset({"csv", "tsv", "parquet", "dat", "data"})
UPDATE_OUTCOME = Path("reports") / "update" / "latest.json"
FAILURES_DIR = Path("reports") / "failures"


def raw_files(raw_dir: Path) -> dict[str, list[float]]:
    """Relative path -> [size, mtime] of every data file under ``raw_dir``."""
    if not raw_dir.is_dir():
        return {}
    out = {}
    for f in sorted(raw_dir.rglob("*")):
        relative = f.relative_to(raw_dir).as_posix()
        if relative.startswith(f"{ACCEPTED_BATCHES}/"):
            continue
        if f.is_file() and f.name not in IGNORED and not f.name.startswith("."):
            st = f.stat()
            out[relative] = [st.st_size, st.st_mtime]
    return out


def _status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def _training_sensor(name: str, every_s: int, running: bool, fn: Any) -> dg.SensorDefinition:
    """A sensor that starts ``training_job``, evaluated every ``every_s`` seconds."""
    return dg.sensor(
        name=name,
        job=training_job,
        minimum_interval_seconds=every_s,
        default_status=_status(running),
    )(fn)


def build_new_raw_data_sensor(running: bool = False) -> dg.SensorDefinition:
    return dg.sensor(
        name="new_raw_data_sensor",
        jobs=[training_job, update_job],
        minimum_interval_seconds=30,
        default_status=_status(running),
    )(_new_raw_data)


def _new_raw_data(
    context: dg.SensorEvaluationContext, dvc: DvcProject
) -> dg.SensorResult | dg.SkipReason:
    """Start a run for new data:

    - a data file lands in (or changes in) data/raw: the full ``training_job``;
    - a batch lands in ``update.incoming`` (``<name>.csv``/``.tsv``/``.parquet``, with
      optional ``<name>.items.*`` / ``<name>.users.*`` side rows): ``update_job`` on it, one
      run per batch in name order (``recsys update`` decides between an update and a full
      retrain, and keeps the batch in data/raw/batches either way);
    - the last update said a full retrain is due (reports/update/latest.json): ``training_job``.

    The first evaluation only records what is there; the cursor keeps the file listings and
    the time of the last update outcome handled."""
    raw = raw_files(dvc.path / "data" / "raw")
    where = incoming_dir(dvc)
    incoming = raw_files(dvc.path / where)
    outcome_file = dvc.path / UPDATE_OUTCOME
    outcome_at = outcome_file.stat().st_mtime if outcome_file.is_file() else 0.0
    state = {"raw": raw, "incoming": incoming, "outcome_at": outcome_at}
    cursor = json.dumps(state, sort_keys=True)
    if context.cursor is None:
        return dg.SensorResult(skip_reason="baseline recorded", cursor=cursor)
    previous = json.loads(context.cursor)
    if "raw" not in previous:  # a cursor of an earlier version: the raw listing alone
        previous = {"raw": previous, "incoming": {}, "outcome_at": outcome_at}
    key = hashlib.sha256(cursor.encode()).hexdigest()[:16]
    requests = []
    changed = sorted(k for k, v in raw.items() if previous["raw"].get(k) != v)
    if changed:
        tags = {"recsys/new-raw-files": ",".join(changed)[:200]}
        requests.append(dg.RunRequest(run_key=f"raw-{key}", job_name=training_job.name, tags=tags))
    for batch in new_batches(incoming, previous.get("incoming", {})):
        config = {role: f"{where}/{name}" if name else "" for role, name in batch.items()}
        requests.append(
            dg.RunRequest(
                run_key=f"batch-{key}-{batch['batch']}",
                job_name=update_job.name,
                run_config={"ops": {"incremental_update": {"config": config}}},
                tags={"recsys/batch": batch["batch"]},
            )
        )
    if outcome_at > float(previous.get("outcome_at") or 0.0) and not changed:
        outcome = json.loads(outcome_file.read_text())
        if outcome.get("mode") == "full":
            reasons = "; ".join(outcome.get("reasons") or [])
            tags = {"recsys/trigger": "update: full retrain due", "recsys/reasons": reasons[:200]}
            requests.append(
                dg.RunRequest(run_key=f"full-{key}", job_name=training_job.name, tags=tags)
            )
    if not requests:
        if cursor == context.cursor:
            return dg.SkipReason("no new raw data file or batch")
        return dg.SensorResult(skip_reason="no new raw data file or batch", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def incoming_dir(dvc: DvcProject) -> str:
    """``update.incoming`` of the project's params (the default without a params file)."""
    from recsys.config_ops import UpdateConfig

    if not (dvc.path / dvc.params_file).is_file():
        return UpdateConfig().incoming
    return dvc.params().update.incoming


def new_batches(current: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, str]]:
    """The batches of ``update.incoming`` that are new or changed since ``previous``: each an
    interaction file and its side files (``<name>.items.*``, ``<name>.users.*``), relative."""
    out = []
    for name in sorted(current):
        stem, _, suffix = name.rpartition(".")
        if suffix not in BATCH_SUFFIXES or stem.endswith((".items", ".users")):
            continue
        if previous.get(name) == current[name]:
            continue
        side = {
            role: next((n for n in current if n.startswith(f"{stem}.{role}.")), "")
            for role in ("items", "users")
        }
        out.append({"batch": name, **side})
    return out


new_raw_data_sensor = build_new_raw_data_sensor()


def build_service_health_sensor(running: bool = False) -> dg.SensorDefinition:
    return _training_sensor("service_health_sensor", 300, running, _service_health)


def _service_health(
    context: dg.SensorEvaluationContext, dvc: DvcProject
) -> dg.SensorResult | dg.SkipReason:
    """Start the pipeline when the running service's Prometheus fires an alert that new
    training answers (unknown users, fallbacks, served-popularity drift; ``monitoring`` in
    params.yaml), at most once per ``monitoring.cooldown_s``. The decision and the alerts
    that made it are the tick's skip reason or the run's tags (recsys.serving.health).

    The cursor is when this sensor last started a run (epoch seconds)."""
    from recsys.serving import health

    config = dvc.params().monitoring
    if not config.prometheus_url:
        return dg.SkipReason(
            "monitoring.prometheus_url is not set in params.yaml: no service metrics to read"
        )
    try:
        firing = health.firing_alerts(config.prometheus_url)
    except health.PrometheusError as exc:
        return dg.SkipReason(f"{exc.what} ({exc.fix})")
    now = time.time()
    last = float(context.cursor) if context.cursor else None
    decision = health.decide(firing, config, now=now, last_run_at=last)
    context.log.info(decision.reason)
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    tags = {"recsys/trigger": "service-health", "recsys/alerts": ",".join(decision.firing)}
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"service-health-{now:.0f}", tags=tags)],
        cursor=f"{now:.0f}",
    )


service_health_sensor = build_service_health_sensor()


def root_cause(error: Any) -> str:
    """The innermost cause of a Dagster error (its ``SerializableErrorInfo`` chain): what the
    step itself raised, e.g. ``ValueError: disk full``, not Dagster's "Error occurred while
    executing op" around it."""
    while error.cause is not None:
        error = error.cause
    return str(error.message or error.cls_name or "").strip()


def build_failure_sensor(dvc: DvcProject, running: bool = False) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="pipeline_failure_sensor",
        monitored_jobs=[training_job],
        default_status=_status(running),
    )
    def pipeline_failure_sensor(context: dg.RunFailureSensorContext) -> None:
        """Record each failed pipeline run in ``reports/failures/<run id>.json`` (and the log):
        which step failed and why, so a failed nightly run is visible without the UI."""
        from recsys.data import io

        run = context.dagster_run
        failures = [
            (e.step_key, e.step_failure_data.error) for e in context.get_step_failure_events()
        ]
        steps = [
            {"step": step, "error": root_cause(error), "raised_as": (error.message or "").strip()}
            for step, error in failures
            if error is not None
        ]
        record = {
            "run_id": run.run_id,
            "job": run.job_name,
            "message": context.failure_event.message,
            "failed_steps": steps,
            "tags": dict(run.tags),
        }
        io.write_json(record, dvc.path / FAILURES_DIR / f"{run.run_id}.json")
        context.log.error(f"pipeline run {run.run_id} failed: {context.failure_event.message}")

    return pipeline_failure_sensor
