"""Closing the loop from the running service back to the pipeline: which of the service's
alerts (``recsys/serving/prometheus/alerts.yml``) are firing in a team's Prometheus, and
whether that calls for new training.

``firing_alerts`` asks Prometheus's HTTP API for the ``Recsys*`` alerts in state firing (so
the thresholds and the ``for:`` durations live in one place, the rules file); ``decide`` turns
them into a decision that the Dagster ``service_health_sensor`` acts on and shows:

- an alert of ``MonitoringConfig.retrain_on`` (unknown users, fallbacks, served-popularity
  drift: the champion is stale against the traffic) starts a run, unless one was started
  less than ``cooldown_s`` ago;
- the operational alerts (latency, 5xx, shed load) start nothing: new training does not fix
  them, and the decision says so (their runbook: docs/operations.md);
- nothing firing: healthy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from recsys.config_ops import MonitoringConfig
from recsys.errors import RecsysError

FIRING_QUERY = 'ALERTS{alertstate="firing", alertname=~"Recsys.*"}'


class PrometheusError(RecsysError):
    """Prometheus did not answer, or answered something other than a query result."""


def firing_alerts(url: str, timeout_s: float = 10.0) -> list[str]:
    """The names of the ``Recsys*`` alerts firing now in the Prometheus at ``url``, sorted."""
    query = urllib.parse.urlencode({"query": FIRING_QUERY})
    endpoint = f"{url.rstrip('/')}/api/v1/query?{query}"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout_s) as answer:
            body = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PrometheusError(
            f"no query result from Prometheus at {url}: {exc}",
            fix="check monitoring.prometheus_url in params.yaml and that Prometheus runs",
        ) from exc
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus at {url} answered {str(body)[:300]}")
    return sorted({str(r["metric"]["alertname"]) for r in body["data"]["result"]})


@dataclass(frozen=True)
class HealthDecision:
    retrain: bool
    reason: str
    firing: tuple[str, ...]


def decide(
    firing: list[str],
    config: MonitoringConfig,
    *,
    now: float,
    last_run_at: float | None = None,
) -> HealthDecision:
    """Retrain or not, and why (module docstring); ``last_run_at``: when this decision last
    started a run (epoch seconds)."""
    stale = [name for name in firing if name in config.retrain_on]
    other = [name for name in firing if name not in config.retrain_on]
    if not firing:
        return HealthDecision(False, "service healthy: no Recsys alert firing", ())
    ops = (
        f"not fixed by training: {', '.join(other)} (runbook: docs/operations.md, Watching the "
        "service; `recsys rollback` if a new champion caused it)"
        if other
        else ""
    )
    if not stale:
        return HealthDecision(False, f"no retraining: {ops}", tuple(firing))
    ops = f"; {ops}" if ops else ""
    if last_run_at is not None and now - last_run_at < config.cooldown_s:
        wait = config.cooldown_s - (now - last_run_at)
        return HealthDecision(
            False,
            f"{', '.join(stale)} firing, but a run started {now - last_run_at:.0f} s ago: "
            f"the next in {wait:.0f} s (monitoring.cooldown_s){ops}",
            tuple(firing),
        )
    return HealthDecision(True, f"retraining: {', '.join(stale)} firing{ops}", tuple(firing))
