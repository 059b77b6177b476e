"""Issue 19 §4: watching the service. The alert rules pass `promtool check rules` and their
unit tests (`promtool test rules`); a real Prometheus (Debian's package) scrapes a served
bento on 127.0.0.1, evaluates the rules against it and answers every dashboard query.

Needs Debian's `prometheus` package (promtool and the server; .ci/run installs it): skipped,
with that reason, where it is missing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import yaml

from orchestration.defs import sensors
from orchestration.defs.resources import DvcProject
from recsys.config_ops import MonitoringConfig
from recsys.serving import health, infra
from recsys.serving.engine import popularity_quantiles
from tests.conftest import REPO
from tests.recsys.test_models_contract import synthetic_data

RULES_DIR = REPO / "recsys" / "serving" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("prometheus") is None,
    reason="Debian's prometheus package is not installed (apt-get install prometheus)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[str]:
    dashboard = json.loads((RULES_DIR / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_popularity_quantiles_rank_items_by_training_interactions() -> None:
    q = popularity_quantiles(np.array([5.0, 1.0, 3.0, 0.0, 3.0]))
    assert q.tolist() == [0.0, 0.75, 0.25, 1.0, 0.5]  # ties keep their order


@needs_promtool
def test_the_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_fires_in_a_unit_test_and_has_a_runbook_entry() -> None:
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    operations = (REPO / "docs" / "operations.md").read_text()
    for name in alert_names():
        assert name in fired, f"{name} never fires in alerts_test.yml"
        assert f"`{name}`" in operations, f"docs/operations.md has no entry for {name}"


def prometheus_get(base: str, path: str, **params: str) -> Any:
    status, body = infra.http("GET", f"{base}{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    assert body["status"] == "success", body
    return body["data"]


@contextlib.contextmanager
def running_prometheus(target: str, rules: Path, work: Path) -> Iterator[str]:
    """Prometheus on 127.0.0.1 scraping ``target`` (host:port) every second with ``rules``."""
    port = infra.free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "recsys", "static_configs": [{"targets": [target]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = work / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while infra.http("GET", f"{base}/-/ready")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def prometheus(server: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the served bento, with the project's rules."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    with running_prometheus(server.split("//")[1], ALERTS, tmp_path) as base:
        yield base


def wait_for(base: str, query: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        result: list[dict[str, Any]] = prometheus_get(base, "/api/v1/query", query=query)["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.mark.slow
@needs_promtool
def test_prometheus_scrapes_the_service_metrics_and_evaluates_the_rules(
    server: str, prometheus: str
) -> None:
    users = synthetic_data().vocab.user_ids[:20].tolist()
    for user in users:
        assert infra.http("POST", f"{server}/recommend", {"user_id": user, "k": 10})[0] == 200
    assert infra.http("POST", f"{server}/recommend", {"user_id": 10**9, "k": 10})[0] == 200
    served = wait_for(prometheus, "recsys_served_item_popularity_quantile_count > 0")
    assert served and float(served[0]["value"][1]) >= 10 * len(users)
    mean = wait_for(
        prometheus,
        "recsys_served_item_popularity_quantile_sum / recsys_served_item_popularity_quantile_count",
    )
    assert 0.0 <= float(mean[0]["value"][1]) <= 1.0
    references = wait_for(prometheus, "recsys_item_popularity_reference")
    assert {r["metric"]["reference"] for r in references} == {"training", "expected"}
    assert all(0.0 <= float(r["value"][1]) <= 1.0 for r in references)
    fallbacks = wait_for(prometheus, 'recsys_fallbacks_total{fallback="popularity"} > 0')
    assert fallbacks, "the unknown user's popularity answer was not counted"
    requests = wait_for(prometheus, 'bentoml_service_request_total{endpoint="/recommend"} > 0')
    assert sum(float(r["value"][1]) for r in requests) >= len(users) + 1
    groups = prometheus_get(prometheus, "/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
    for name in alert_names():
        assert loaded.get(name) in ("ok", "unknown"), (name, loaded.get(name))
    for query in dashboard_queries():
        prometheus_get(prometheus, "/api/v1/query", query=query)  # parses and evaluates


# --- closing the loop: the service-health decision and its sensor ------------------------------
def project(tmp_path: Path, **monitoring: Any) -> DvcProject:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["monitoring"] = monitoring
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return DvcProject(root=str(tmp_path))


def test_stale_champion_alerts_retrain_and_operational_ones_do_not() -> None:
    config = MonitoringConfig(cooldown_s=3600)
    quiet = health.decide([], config, now=1e6)
    assert not quiet.retrain and "healthy" in quiet.reason
    ops = health.decide(["RecsysErrorRateHigh"], config, now=1e6)
    assert not ops.retrain and "RecsysErrorRateHigh" in ops.reason and "rollback" in ops.reason
    stale = health.decide(["RecsysErrorRateHigh", "RecsysUnknownUsersHigh"], config, now=1e6)
    assert stale.retrain and "RecsysUnknownUsersHigh" in stale.reason
    assert stale.firing == ("RecsysErrorRateHigh", "RecsysUnknownUsersHigh")
    cooling = health.decide(["RecsysUnknownUsersHigh"], config, now=1e6, last_run_at=1e6 - 600)
    assert not cooling.retrain and "3000 s" in cooling.reason
    later = health.decide(["RecsysUnknownUsersHigh"], config, now=1e6, last_run_at=1e6 - 4000)
    assert later.retrain


def test_the_sensor_says_when_it_has_nothing_to_read(tmp_path: Path) -> None:
    unset = sensors.service_health_sensor(dg.build_sensor_context(), dvc=project(tmp_path))
    assert isinstance(unset, dg.SkipReason)
    assert "monitoring.prometheus_url" in str(unset.skip_message)
    down = project(tmp_path, prometheus_url="http://127.0.0.1:9")
    result = sensors.service_health_sensor(dg.build_sensor_context(), dvc=down)
    assert isinstance(result, dg.SkipReason)
    assert "no query result from Prometheus at http://127.0.0.1:9" in str(result.skip_message)


@pytest.mark.slow
@needs_promtool
def test_the_sensor_retrains_when_the_service_sees_unknown_users(
    server: str, tmp_path: Path
) -> None:
    """The project's rules, with RecsysUnknownUsersHigh made to fire at once on any unknown
    user (threshold 0, no `for:`): the sensor reads the firing alert from a real Prometheus
    and starts a run; evaluated again with its cursor, it waits out the cool-down."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "RecsysUnknownUsersHigh":
                rule["expr"] = rule["expr"].replace("> 0.1", "> 0")
                rule.pop("for")
    fast = tmp_path / "alerts.yml"
    fast.write_text(yaml.safe_dump(rules))
    with running_prometheus(server.split("//")[1], fast, tmp_path) as base:
        dvc = project(tmp_path, prometheus_url=base, cooldown_s=3600)
        before = sensors.service_health_sensor(dg.build_sensor_context(), dvc=dvc)
        assert isinstance(before, dg.SkipReason), "retraining before any unknown user"
        deadline = time.monotonic() + 60
        while "RecsysUnknownUsersHigh" not in health.firing_alerts(base):
            infra.http("POST", f"{server}/recommend", {"user_id": 10**9 + 7, "k": 5})
            assert time.monotonic() < deadline, "the alert never fired"
            time.sleep(0.5)
        started = sensors.service_health_sensor(dg.build_sensor_context(), dvc=dvc)
        assert isinstance(started, dg.SensorResult) and len(started.run_requests or []) == 1
        (run,) = started.run_requests or []
        assert run.tags["recsys/trigger"] == "service-health"
        assert "RecsysUnknownUsersHigh" in run.tags["recsys/alerts"]
        again = sensors.service_health_sensor(
            dg.build_sensor_context(cursor=started.cursor), dvc=dvc
        )
        assert isinstance(again, dg.SkipReason) and "cooldown_s" in str(again.skip_message)
