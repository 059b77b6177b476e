"""Bento packaging and infra validation: the last steps of the pipeline, also CLI commands.

::

    catalogue = save_catalogue(processed_dir, data_version="...")         # item genres
    tag = build_bento(champion_tag, catalogue, registry=...)              # `bentoml build`
    report = validate_bento(tag, registry=Registry("data/registry"))      # serve, probe, stop
    report.deployable                                                     # True only if all passed

``build_bento`` runs ``bentoml build`` (no Docker needed) in a subprocess over the repository's
``bentofile.yaml``, passing the two model tags, the serving settings and the lineage as bento
arguments (``--arg-file``), so the bento carries the exact model versions and BentoML hands the
same arguments back when it serves the bento. A subprocess, because the service module reads its
arguments once, at import: a second build in the same process would reuse the first's tags.

``validate_bento`` (RELIABILITY.md item 20) serves the built bento with ``bentoml serve`` on
127.0.0.1 and a free port, waits for ``/readyz``, sends one request per endpoint and checks the
answers (status, shape, provenance, a 422 for an unknown item, a 400 for a bad ``k``), then
stops the server. Only a passing report is recorded as deployable: the label is kept in the
registry (``<registry>/bentos/<name>/<version>.json`` and ``<registry>/deployable.json``,
written atomically), since a built bento's labels cannot be changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from recsys.config import ServingConfig
from recsys.data import io
from recsys.data.preprocess import Processed, load_processed
from recsys.errors import DataError, RecsysError
from recsys.serving import store
from recsys.serving.engine import Catalogue

CATALOGUE_NAME: Final = "recsys-catalogue"
BENTOFILE: Final = "bentofile.yaml"
PROJECT_DIR: Final = Path(__file__).resolve().parents[2]
"""The repository root: ``bentofile.yaml`` and the ``recsys`` package (the build context)."""
BENTOS_DIR: Final = "bentos"
DEPLOYABLE_FILE: Final = "deployable.json"
BUILD_TIMEOUT_S: Final = 600


class BentoBuildError(RecsysError):
    """``bentoml build`` failed."""


class ValidationError(RecsysError):
    """The bento did not pass infra validation (raised only when asked to)."""

    exit_code = 1


# --- models the service needs besides the two Recommenders ---------------------------------------
def save_catalogue(
    data: Processed | Path | str,
    *,
    data_version: str = "unknown",
    home: Path | str | None = None,
) -> str:
    """Store the item catalogue (ids, genres with names) of a processed data set as a BentoML
    model ``recsys-catalogue``; returns its tag. ``data``: a ``Processed`` or its directory."""
    import bentoml

    processed = data if isinstance(data, Processed) else load_processed(Path(data))
    catalogue = Catalogue.from_processed(processed)
    with bentoml.models.create(
        CATALOGUE_NAME,
        labels={"data_version": data_version},
        metadata={"n_items": len(catalogue.item_ids), "genres": list(catalogue.genre_names)},
        _model_store=store.model_store(home),
    ) as ref:
        catalogue.save(Path(ref.path))
    return str(ref.tag)


# --- build -------------------------------------------------------------------------------------
def lineage(
    champion_tag: str, *, registry: Path | str | None = None, home: Path | str | None = None
) -> dict[str, str]:
    """What blessed ``champion_tag``: the data version and params hash it was registered
    with, and its recorded gate decision (``<registry>/decisions/...``, relative to the
    registry; "ungated" when the registry holds none: a bento built by hand, outside the
    pipeline, says so in every answer)."""
    labels = store.model_info(champion_tag, home=home)["labels"]
    decision = "ungated"
    if registry is not None:
        path = store.Registry(registry, home=home).decision_path(champion_tag)
        if path.is_file():
            decision = str(path.relative_to(Path(registry)))
    return {
        "data_version": str(labels.get("data_version", "unknown")),
        "params_hash": str(labels.get("params_hash", "unknown")),
        "gate_decision": decision,
    }


def bento_arguments(
    champion_tag: str,
    catalogue_tag: str,
    serving: ServingConfig | None = None,
    *,
    registry: Path | str | None = None,
    home: Path | str | None = None,
) -> dict[str, Any]:
    """The service's arguments (``service.BentoArgs``) with every tag resolved to its version."""
    champion = store.resolve_tag(champion_tag, home=home)
    return {
        "champion": champion,
        "catalogue": store.resolve_tag(catalogue_tag, home=home),
        "serving": (serving or ServingConfig()).to_dict(),
        "lineage": lineage(champion, registry=registry, home=home),
    }


def build_bento(
    champion_tag: str,
    catalogue_tag: str,
    *,
    serving: ServingConfig | None = None,
    registry: Path | str | None = None,
    labels: Mapping[str, str] | None = None,
    version: str | None = None,
    home: Path | str | None = None,
    project_dir: Path | str = PROJECT_DIR,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> str:
    """``bentoml build`` of the service around these models; returns the bento tag.

    Args:
      champion_tag: the gated two-stage model (e.g. ``Registry.champion().tag``).
      catalogue_tag: from ``save_catalogue``.
      serving: service settings (workers, batching, limits) baked into the bento.
      registry: where the champion's gate decision is recorded (its lineage).
      labels: extra bento labels; the model tags and the lineage are always added.
    """
    args = bento_arguments(champion_tag, catalogue_tag, serving, registry=registry, home=home)
    all_labels = {
        "champion": args["champion"],
        "catalogue": args["catalogue"],
        **args["lineage"],
        **(labels or {}),
    }
    project = Path(project_dir)
    io.require_file(project / BENTOFILE, "bentofile")
    with tempfile.TemporaryDirectory(prefix="recsys-bento-") as tmp:
        arg_file = Path(tmp) / "args.yaml"
        # JSON is YAML: no dependency on a YAML writer for one small file
        io.write_text(json.dumps(args, indent=2), arg_file)
        cmd = [*_bentoml(), "build", "-f", str(project / BENTOFILE), "--arg-file", str(arg_file)]
        cmd += ["--output", "tag"]
        for key, value in sorted(all_labels.items()):
            cmd += ["--label", f"{_label_key(key)}={_label_value(value)}"]
        if version:
            cmd += ["--version", version]
        cmd.append(str(project))
        proc = subprocess.run(
            cmd,
            cwd=project,
            env=_env(home),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    tags = [ln for ln in proc.stdout.splitlines() if ln.startswith("__tag__:")]
    if proc.returncode != 0 or not tags:
        raise BentoBuildError(
            f"bentoml build failed (exit {proc.returncode})",
            where=str(project / BENTOFILE),
            fix=_tail(proc.stdout + proc.stderr),
        )
    return tags[-1].removeprefix("__tag__:").strip()


@dataclass(frozen=True)
class BentoResult:
    """What ``build_champion_bento`` did (``recsys bento build --out FILE`` writes it)."""

    bento: str
    champion: str
    catalogue: str
    lineage: dict[str, str]
    reused: bool = False
    """True when an earlier build of the same champion was kept (``--reuse``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, path: Path) -> BentoResult:
        raw = io.read_json(io.require_file(Path(path), "bento build result"))
        try:
            return cls(**raw)
        except TypeError as exc:
            raise DataError(f"malformed bento build result: {exc}", where=str(path)) from exc


def bento_exists(tag: str, *, home: Path | str | None = None) -> bool:
    """The bento ``name:version`` is in the local bento store (``$BENTOML_HOME/bentos``)."""
    name, _, version = tag.partition(":")
    bentos = store.bentoml_home(home) / "bentos"
    return bool(name and version) and (bentos / name / version).is_dir()


def build_champion_bento(
    *,
    registry: Path | str,
    serving: ServingConfig | None = None,
    champion: str | None = None,
    catalogue: str | None = None,
    processed: Path | str | None = None,
    version: str | None = None,
    previous: BentoResult | None = None,
    home: Path | str | None = None,
) -> BentoResult:
    """The bento of the registry's champion (or ``champion``), a two-stage model: stores the
    catalogue from ``processed`` unless ``catalogue`` names a stored one, then builds.
    ``previous``: an earlier result, kept as it is when it packaged the same champion and its
    bento is still in the store (a pipeline re-run without a new champion builds nothing)."""
    from recsys.models.twostage import TwoStage

    if champion is None:
        record = store.Registry(registry, home=home).champion()
        if record is None:
            raise DataError(
                "there is no champion yet",
                where=str(registry),
                fix="run the pipeline (bin/pipeline) or `recsys promote TAG`; or pass --champion",
            )
        champion = record.tag
    champion = store.resolve_tag(champion, home=home)
    if (
        previous is not None
        and previous.champion == champion
        and bento_exists(previous.bento, home=home)
    ):
        return dataclasses.replace(previous, reused=True)
    kind = store.model_info(champion, home=home)["metadata"].get("recsys_model")
    if kind != TwoStage.name:
        raise DataError(
            f"{champion} is a '{kind}' model, not a two-stage ranking: the service serves what "
            "the gate measured, a retriever and a ranker in one model",
            fix="run the pipeline (it gates and promotes a `twostage` model), or "
            "`recsys compose` one and gate it",
        )
    if catalogue is None:
        if processed is None:
            raise DataError("pass a stored catalogue tag or the processed data directory")
        catalogue = save_catalogue(
            processed, data_version=lineage(champion, home=home)["data_version"], home=home
        )
    tag = build_bento(
        champion, catalogue, serving=serving, registry=registry, version=version, home=home
    )
    return BentoResult(
        tag,
        champion,
        store.resolve_tag(catalogue, home=home),
        lineage(champion, registry=registry, home=home),
    )


# --- infra validation --------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_bento`` saw; ``deployable`` only when every check passed."""

    bento_tag: str
    checks: tuple[Check, ...]
    started_at: str
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
        cmd = [*_bentoml(), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
        if args:
            arg_file = log.with_suffix(".args.yaml")
            io.write_text(json.dumps(dict(args)), arg_file)
            cmd += ["--arg-file", str(arg_file)]
        fh = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(
            cmd,
            cwd=cwd or PROJECT_DIR,
            env=_env(home),
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


def sample_requests(
    bento_tag: str, *, home: Path | str | None = None
) -> list[tuple[str, str, Any, Callable[[int, Any], str | None]]]:
    """(name, route, body, check) per endpoint, with ids taken from the bento's own models.

    ``check(status, json) -> None`` when the answer is right, else what is wrong.
    """
    from recsys.models.base import Recommender

    bento = _bento(bento_tag, home)
    champion_tag = str(bento.info.args["champion"])
    champion = Recommender.load(_bento_model_path(bento, champion_tag, home))
    user = int(champion.vocab.user_ids[0]) if champion.vocab is not None else 0
    item = int(champion.train_item_ids[0])
    unknown_item = int(champion.item_ids.max()) + 1

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
        ("unknown user", "/recommend", {"user_id": 2**62, "k": 5}, answer(1, "popularity")),
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
        log_tail = _tail(log.read_text(errors="replace")) if log.exists() else ""
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


# --- helpers ----------------------------------------------------------------------------------
def _bentoml() -> list[str]:
    """The ``bentoml`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "bentoml"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bentoml"]


def _env(home: Path | str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(store.bentoml_home(home))
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return env


def _bento(tag: str, home: Path | str | None) -> Any:
    import bentoml
    from bentoml._internal.bento import BentoStore  # pinned bentoml 1.4.40
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.get(tag, _bento_store=BentoStore(str(store.bentoml_home(home) / "bentos")))
    except BentoMLException as exc:
        raise DataError(
            f"bento '{tag}' is not in the bento store", fix="run `recsys bento build`"
        ) from exc


def _bento_model_path(bento: Any, model_tag: str, home: Path | str | None) -> Path:
    """A model of the bento: inside it when exported/imported (``models/``), else in the store
    (BentoML 1.4 bentos refer to the local model store until exported or containerized)."""
    name, _, version = model_tag.partition(":")
    inside = Path(bento.path) / "models" / name / version
    if (inside / "recommender.json").is_file():
        return inside
    return store.model_path(model_tag, home=home)


def _label_key(key: str) -> str:
    return key.replace("@", "_at_")


def _label_value(value: str) -> str:
    # BentoML label values: <= 63 chars of [A-Za-z0-9_.-]; tags contain ':'
    return str(value).replace(":", "_")[:63]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
