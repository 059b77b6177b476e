"""Infra validation of a built bento (RELIABILITY.md item 20).

``validate_bento`` serves the built bento with ``bentoml serve`` on 127.0.0.1 and a free port,
waits for ``/readyz``, sends one request per endpoint and checks the answers (status, shape,
provenance, a 422 for an unknown item, a 400 for a bad ``k``), then stops the server. Only a
passing report is recorded as deployable: the label is kept in the registry
(``<registry>/bentos/<name>/<version>.json`` and ``<registry>/deployable.json``, written
atomically), since a built bento's labels cannot be changed.

``serving``, ``wait_ready``, ``http`` and the process helpers also serve the tests that run a
real server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data import io
from recsys.errors import DataError, Refused
from recsys.schema import INT_IDS, id_kind
from recsys.serving.bentoml_cli import (
    PROJECT_DIR,
    bento_model_path,
    bentoml_command,
    bentoml_env,
    load_bento,
    tail_lines,
)
from recsys.serving.paths import BENTOS_DIR, DEPLOYABLE_FILE


class ValidationError(Refused):
    """The bento did not pass infra validation (raised only when asked to)."""


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_bento`` saw; ``deployable`` only when every check passed."""

    bento_tag: str
    checks: tuple[Check, ...]
    """In the order they ran; validation stops at the first probe that cannot run."""
    started_at: str
    """UTC, ISO 8601."""
    ready_seconds: float | None
    """From starting the server to the first 200 of ``/readyz``; None if never ready."""
    log_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deployable(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["deployable"] = self.deployable
        return out

    def summary(self) -> str:
        lines = [f"bento {self.bento_tag}: {'DEPLOYABLE' if self.deployable else 'NOT deployable'}"]
        lines += [
            f"  [{'ok' if c.passed else 'FAIL'}] {c.name}{': ' + c.detail if c.detail else ''}"
            for c in self.checks
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Check:
    """One probe of the running bento."""

    name: str
    """``ready``, ``livez``, ``metrics`` or the endpoint a sample request went to."""
    passed: bool
    detail: str = ""
    """What was seen: a status code, a time, or the problem."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(
    target: str,
    *,
    home: Path | str | None = None,
    port: int | None = None,
    args: Mapping[str, Any] | None = None,
    cwd: Path | str | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``bentoml serve TARGET`` on 127.0.0.1 (a bento tag, or an import path with ``args``);
    yields (base URL, process, log file) and stops the whole process group on exit."""
    port = port or free_port()
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "serve.log"
        cmd = [*bentoml_command(), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
        if args:
            arg_file = log.with_suffix(".args.yaml")
            io.write_text(json.dumps(dict(args)), arg_file)
            cmd += ["--arg-file", str(arg_file)]
        fh = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(
            cmd,
            cwd=cwd or PROJECT_DIR,
            env=bentoml_env(home),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its workers
        )
        try:
            yield f"http://127.0.0.1:{port}", proc, log
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def process_tree(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), parents before children: a served
    bento's arbiter and worker processes."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            out.append(child)
            todo.append(child)
    return out


def process_cmdline(pid: int) -> str:
    """The command line of ``pid`` ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def service_workers(server_pid: int) -> list[int]:
    """The worker processes of a ``bentoml serve`` process (they run the service class,
    ``_bentoml_impl.worker.service``; the CLI process and its arbiter stay up)."""
    return [p for p in process_tree(server_pid) if "_bentoml_impl.worker" in process_cmdline(p)]


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0, interval_s: float = 0.5
) -> float | None:
    """Seconds until ``GET /readyz`` answers 200; None on timeout or if the server exited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            return None
        status, _ = http("GET", f"{url}/readyz", timeout_s=2.0)
        if status == 200:
            return time.monotonic() - start
        time.sleep(interval_s)
    return None


def http(
    method: str, url: str, body: Any = None, *, timeout_s: float = 10.0, raw: bytes | None = None
) -> tuple[int, Any]:
    """(status, parsed JSON or text); status 0 when the connection failed."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, None
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("utf-8", "replace")


def recommend_bodies(
    bento_tag: str, *, home: Path | str | None = None, n: int = 500, k: int = 10, seed: int = 0
) -> list[bytes]:
    """``POST /recommend`` bodies for up to ``n`` known users of the bento's champion, drawn
    without replacement: the load of the container benchmark and of ``recsys bento
    manifests``."""
    from recsys.models.base import Recommender

    bento = load_bento(bento_tag, home)
    champion = Recommender.load(bento_model_path(bento, str(bento.info.args["champion"]), home))
    users = champion.vocab.user_ids if champion.vocab is not None else np.zeros(1, np.int64)
    picked = np.random.default_rng(seed).choice(users, size=min(len(users), n), replace=False)
    return [json.dumps({"user_id": u, "k": k}).encode() for u in picked.tolist()]


def sample_requests(
    bento_tag: str, *, home: Path | str | None = None
) -> list[tuple[str, str, Any, Callable[[int, Any], str | None]]]:
    """(name, route, body, check) per endpoint, with ids taken from the bento's own models.

    ``check(status, json) -> None`` when the answer is right, else what is wrong.
    """
    from recsys.models.base import Recommender

    bento = load_bento(bento_tag, home)
    champion_tag = str(bento.info.args["champion"])
    champion = Recommender.load(bento_model_path(bento, champion_tag, home))
    users = champion.vocab.user_ids if champion.vocab is not None else np.zeros(1, np.int64)
    user, item = users[:1].tolist()[0], champion.train_item_ids[:1].tolist()[0]
    # An id past the largest of its kind is unknown: +1 for integers, a longer text for strings.
    unknown_user = 2**62 if id_kind(users) == INT_IDS else f"{users.max()}~"
    unknown_item = (
        int(champion.item_ids.max()) + 1
        if id_kind(champion.item_ids) == INT_IDS
        else f"{champion.item_ids.max()}~"
    )

    def answer(min_items: int, fallback: str | None = "any") -> Callable[[int, Any], str | None]:
        def check(status: int, body: Any) -> str | None:
            if status != 200:
                return f"status {status}: {str(body)[:200]}"
            if not isinstance(body, dict) or body.get("model_tag") != champion_tag:
                return f"model_tag is not {champion_tag}: {str(body)[:200]}"
            if len(body.get("items", [])) < min_items:
                return f"{len(body.get('items', []))} items < {min_items}"
            if fallback != "any" and body.get("fallback") != fallback:
                return f"fallback {body.get('fallback')!r} != {fallback!r}"
            return None

        return check

    def refused(status_wanted: int, field_name: str) -> Callable[[int, Any], str | None]:
        def check(status: int, body: Any) -> str | None:
            if status != status_wanted or field_name not in json.dumps(body):
                return f"wanted {status_wanted} naming '{field_name}', got {status}: {body}"
            return None

        return check

    return [
        ("recommend", "/recommend", {"user_id": user, "k": 5}, answer(1, None)),
        ("unknown user", "/recommend", {"user_id": unknown_user, "k": 5}, answer(1, "popularity")),
        ("recommend_recent", "/recommend_recent", {"item_ids": [item], "k": 5}, answer(1)),
        ("similar_items", "/similar_items", {"item_id": item, "k": 5}, answer(1)),
        ("score", "/score", {"user_id": user, "item_ids": [item]}, answer(1, None)),
        ("explain", "/explain", {"user_id": user, "k": 3}, answer(1, None)),
        ("unknown item -> 422", "/score", {"user_id": user, "item_ids": [unknown_item]},
         refused(422, "item_ids")),
        ("k out of range -> 400", "/recommend", {"user_id": user, "k": 0}, refused(400, "k")),
    ]  # fmt: skip


def validate_bento(
    bento_tag: str,
    *,
    home: Path | str | None = None,
    registry: Path | str | None = None,
    timeout_s: float = 180.0,
    raise_on_failure: bool = False,
) -> ValidationReport:
    """Serve ``bento_tag`` on 127.0.0.1, wait for ``/readyz``, probe every endpoint and
    ``/metrics``, stop it; record the report (and the deployable mark if it passed) under
    ``registry`` when given."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    checks: list[Check] = []
    ready: float | None = None
    log_tail = ""
    with tempfile.TemporaryDirectory(prefix="recsys-validate-") as tmp:
        log = Path(tmp) / "serve.log"
        with serving(bento_tag, home=home, log=log) as (url, proc, _):
            ready = wait_ready(url, proc, timeout_s)
            checks.append(
                Check("ready", ready is not None, f"{ready:.1f} s" if ready else "never ready")
            )
            if ready is not None:
                status, _ = http("GET", f"{url}/livez")
                checks.append(Check("livez", status == 200, f"status {status}"))
                for name, route, body, check in sample_requests(bento_tag, home=home):
                    status, payload = http("POST", url + route, body)
                    problem = check(status, payload)
                    checks.append(Check(name, problem is None, problem or f"status {status}"))
                status, text = http("GET", f"{url}/metrics")
                ok = status == 200 and "recsys_fallbacks_total" in str(text)
                checks.append(Check("metrics", ok, f"status {status}"))
        log_tail = tail_lines(log.read_text(errors="replace")) if log.exists() else ""
    report = ValidationReport(bento_tag, tuple(checks), started, ready, log_tail)
    if registry is not None:
        record_validation(report, registry)
    if raise_on_failure and not report.deployable:
        raise ValidationError(report.summary(), fix="see the log tail in the report")
    return report


def record_validation(report: ValidationReport, registry: Path | str) -> Path:
    """Keep the report under ``<registry>/bentos/``; a deployable one also becomes
    ``<registry>/deployable.json`` (the bento to deploy), written atomically."""
    name, _, version = report.bento_tag.partition(":")
    if not name or not version or "/" in report.bento_tag or ".." in report.bento_tag:
        raise DataError(f"'{report.bento_tag}' is not a concrete bento tag name:version")
    root = Path(registry)
    path = root / BENTOS_DIR / name / f"{version}.json"
    io.write_json(report.to_dict(), path)
    if report.deployable:
        io.write_json(
            {"bento_tag": report.bento_tag, "validated_at": report.started_at, "report": str(path)},
            root / DEPLOYABLE_FILE,
        )
    return path


def deployable(registry: Path | str) -> str | None:
    """The last bento that passed infra validation, or None."""
    path = Path(registry) / DEPLOYABLE_FILE
    return str(io.read_json(path)["bento_tag"]) if path.is_file() else None
