"""OCI images of a bento, built and run on a machine without a container daemon or registry.

Two layers, each cached:

- **The base image** (``BaseImage``): Debian bootstrapped from the package archive by
  ``debootstrap`` (the release whose ``python3`` is the project's Python 3.11), copied into
  ``buildah from scratch`` and committed to local image storage under one stable name, the
  ``docker.base_image`` of bentofile.yaml. It carries a label with the fingerprint of its
  release and package list: ``ensure_base_image`` reuses an image whose label matches and
  rebuilds it only when the list changes. No registry is contacted.
- **The bento image** (``containerize``): ``bentoml containerize --backend buildah`` on top of
  it, with ``--layers`` so that a rebuild with unchanged inputs reuses every cached layer.
  The image is named after the bento (``localhost/recsys:<bento version>``) and labelled with
  its lineage (champion, data version, params hash, gate decision, git revision).

``running`` starts an image with ``buildah run`` (chroot isolation, the host's network: what
works without a daemon, root and no user namespaces) and stops it with SIGTERM. The image runs
as BentoML's non-root user (uid 1034) and serves ``/livez``, ``/readyz`` and ``/metrics`` on
its port.

Where the machine cannot build (no ``buildah`` or ``debootstrap``, or ``buildah info`` fails),
``unavailable`` says why; the callers report that reason instead of failing half-way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.config_ops import ContainerBaseConfig
from recsys.errors import RecsysError
from recsys.serving.bentoml_cli import (
    PROJECT_DIR,
    bentoml_command,
    bentoml_env,
    load_bento,
    tail_lines,
)
from recsys.serving.infra import process_cmdline, process_tree
from recsys.serving.model_store import git_revision, resolve_tag
from recsys.serving.paths import BASE_IMAGE

IMAGE_REPOSITORY = "localhost/recsys"
FINGERPRINT_LABEL = "org.recsys.base.fingerprint"
ENTRYPOINT = "/home/bentoml/bento/env/docker/entrypoint.sh"
"""BentoML's entrypoint inside the image: ``serve ARGS`` runs ``bentoml serve ARGS $BENTO_PATH``."""
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's CA bundle. The host's is mounted over it while building, so that pip and uv
trust what the host trusts (a proxy that re-signs TLS); the image keeps Debian's."""
TOOL_ENV = {"BUILDAH_ISOLATION": "chroot", "BUILDAH_FORMAT": "oci"}


class ContainerError(RecsysError):
    """An image could not be built or run; ``fix`` names the command that repairs it."""


@dataclass(frozen=True)
class BaseImage(ContainerBaseConfig):
    """What the base image is made of (``params.yaml``: ``container.base``) and its name."""

    name: str = BASE_IMAGE

    @classmethod
    def from_config(cls, cfg: ContainerBaseConfig) -> BaseImage:
        return cls(**dataclasses.asdict(cfg))

    @property
    def fingerprint(self) -> str:
        """Release and package list (not the mirror: any mirror serves the same packages)."""
        text = json.dumps([self.release, sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    image_id: str
    size_bytes: int
    seconds: float
    reused: bool
    """True when nothing was built: the existing image was already current."""
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image_id": self.image_id,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 1),
            "reused": self.reused,
            "labels": self.labels,
        }


def tool(
    args: Sequence[str],
    *,
    what: str,
    fix: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 1800.0,
) -> str:
    """Run a container tool; its stdout, or a ``ContainerError`` with the tail of its output."""
    try:
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env={**os.environ, **TOOL_ENV, **(env or {})},
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ContainerError(f"{what}: '{args[0]}' is not installed", fix=fix) from exc
    except subprocess.TimeoutExpired as exc:
        raise ContainerError(f"{what}: no answer after {timeout_s:.0f} s", fix=fix) from exc
    if done.returncode != 0:
        output = tail_lines(done.stderr or done.stdout, 15)
        raise ContainerError(f"{what} failed (exit {done.returncode}):\n{output}", fix=fix)
    return done.stdout


INSTALL_TOOLS = "apt-get install -y --no-install-recommends buildah debootstrap (as root)"


def unavailable() -> str | None:
    """Why this machine cannot build and run images; None when it can."""
    missing = [t for t in ("buildah", "debootstrap") if shutil.which(t) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (fix: {INSTALL_TOOLS})"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root: debootstrap and buildah's chroot isolation need root here"
    try:
        tool(["buildah", "info"], what="buildah info", fix=INSTALL_TOOLS, timeout_s=60)
    except ContainerError as exc:
        return exc.what
    return None


def inspect(name: str) -> dict[str, Any] | None:
    """``buildah inspect`` of a local image; None when there is no image of that name."""
    try:
        out = tool(["buildah", "inspect", "--type", "image", name], what="buildah inspect", fix="")
    except ContainerError:
        return None
    info: dict[str, Any] = json.loads(out)
    return info


def image_labels(info: Mapping[str, Any]) -> dict[str, str]:
    return dict(info.get("OCIv1", {}).get("config", {}).get("Labels") or {})


def _built(name: str, seconds: float, reused: bool) -> BuiltImage:
    info = inspect(name)
    if info is None:
        raise ContainerError(f"image {name} is missing right after it was built", fix="")
    layers = json.loads(info.get("Manifest") or "{}").get("layers") or []
    return BuiltImage(
        name,
        str(info.get("FromImageID", "")),
        sum(int(layer.get("size", 0)) for layer in layers),
        seconds,
        reused,
        image_labels(info),
    )


def ensure_base_image(spec: BaseImage | None = None, *, rebuild: bool = False) -> BuiltImage:
    """The base image under ``spec.name``, bootstrapped from Debian packages unless an image
    of that name with the same fingerprint exists. Nothing is tagged with the name until the
    image is complete, so a failed bootstrap (no network, a misspelt package) leaves any
    previous image as it was."""
    spec = spec or BaseImage()
    start = time.monotonic()
    info = inspect(spec.name)
    if info and not rebuild and image_labels(info).get(FINGERPRINT_LABEL) == spec.fingerprint:
        return _built(spec.name, time.monotonic() - start, reused=True)
    fix_net = (
        f"check that {spec.mirror} is reachable from this machine (or set container.base.mirror "
        "in params.yaml to a mirror that is), then run `recsys bento containerize` again"
    )
    with tempfile.TemporaryDirectory(prefix="recsys-base-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        tool(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(spec.packages)}",
                spec.release,
                str(rootfs),
                spec.mirror,
            ],
            what=f"bootstrapping the base image (debootstrap {spec.release})",
            fix=fix_net,
        )
        fix = "see the output above; `buildah rm --all` clears working containers"
        ctr = tool(["buildah", "from", "scratch"], what="buildah from", fix=fix).strip()
        try:
            tool(["buildah", "copy", ctr, str(rootfs), "/"], what="buildah copy", fix=fix)
            config = ["buildah", "config"]
            for env in (
                "LANG=C.UTF-8",
                # BentoML's Dockerfile installs uv with Debian's pip into the system Python.
                "PIP_BREAK_SYSTEM_PACKAGES=1",
                f"SSL_CERT_FILE={CA_BUNDLE}",
                f"PIP_CERT={CA_BUNDLE}",
            ):
                config += ["--env", env]
            for key, value in {
                FINGERPRINT_LABEL: spec.fingerprint,
                "org.recsys.base.release": spec.release,
                "org.recsys.base.packages": " ".join(spec.packages),
                "org.opencontainers.image.title": "recsys base (Debian, python3.11)",
            }.items():
                config += ["--label", f"{key}={value}"]
            tool([*config, ctr], what="buildah config", fix=fix)
            tool(["buildah", "commit", "--rm", ctr, spec.name], what="buildah commit", fix=fix)
        except BaseException:
            with contextlib.suppress(ContainerError):
                tool(["buildah", "rm", ctr], what="buildah rm", fix="")
            raise
    return _built(spec.name, time.monotonic() - start, reused=False)


def image_name(bento_tag: str, repository: str = IMAGE_REPOSITORY) -> str:
    """``localhost/recsys:<bento version>``: the image carries the bento's tag."""
    _, _, version = bento_tag.partition(":")
    if not version or version == "latest":
        raise ContainerError(
            f"'{bento_tag}' does not name one bento version",
            fix="pass the full tag, e.g. recsys:abc123 (`bentoml list` shows them)",
        )
    return f"{repository}:{version}"


def lineage_labels(bento_labels: Mapping[str, str], bento_tag: str) -> dict[str, str]:
    """The image's labels: the bento's lineage labels under ``org.recsys.*`` and the OCI
    annotations for the bento tag and the git revision."""
    labels = {f"org.recsys.{key}": str(value) for key, value in bento_labels.items()}
    labels["org.recsys.bento"] = bento_tag
    labels["org.opencontainers.image.title"] = "recsys recommendation service"
    labels["org.opencontainers.image.version"] = bento_tag.partition(":")[2]
    labels["org.opencontainers.image.revision"] = git_revision(PROJECT_DIR)
    return labels


def containerize(
    bento_tag: str,
    bento_labels: Mapping[str, str],
    *,
    home: Path | str | None = None,
    base: BaseImage | None = None,
    repository: str = IMAGE_REPOSITORY,
    ca_bundle: str | None = CA_BUNDLE,
    no_cache: bool = False,
) -> tuple[BuiltImage, BuiltImage]:
    """Build the image of ``bento_tag`` (the base image first when it is missing or stale);
    returns (base, bento image). ``ca_bundle``: the host's CA bundle, mounted over Debian's
    while building (None: not mounted); ``no_cache``: rebuild every layer (a cold build)."""
    base_image = ensure_base_image(base)
    name = image_name(bento_tag, repository)
    labels = lineage_labels(bento_labels, bento_tag)
    cmd = [*bentoml_command(), "containerize", bento_tag, "--backend", "buildah", "-t", name]
    cmd += ["--opt", "layers"] + (["--opt", "no-cache"] if no_cache else [])
    for key, value in labels.items():
        cmd += ["--opt", f"label={key}={value}"]
    if ca_bundle and Path(ca_bundle).is_file():
        cmd += ["--opt", f"volume={ca_bundle}:{CA_BUNDLE}:ro"]
    start = time.monotonic()
    tool(
        cmd,
        what=f"containerizing bento {bento_tag}",
        fix=(
            "see the build output above: a missing model means the bento store lost it "
            "(`recsys bento build` again); a download error means the package registry is "
            "unreachable from the build"
        ),
        env=bentoml_env(home),
    )
    return base_image, _built(name, time.monotonic() - start, reused=False)


MODEL_ARGS = ("champion", "catalogue")
"""The bento arguments that name models in the store: ``bentoml containerize`` copies them
into the image."""


def containerize_bento(
    bento_tag: str,
    *,
    home: Path | str | None = None,
    base: BaseImage | None = None,
    no_cache: bool = False,
) -> tuple[BuiltImage, BuiltImage]:
    """``containerize`` a bento of the store after checking that it and its models are there
    (``ContainerError`` naming what is missing and the command that rebuilds it)."""
    bento = load_bento(bento_tag, home)  # DataError with a fix when it is not in the store
    tag = str(bento.tag)
    for arg in MODEL_ARGS:
        model = str(bento.info.args.get(arg) or "")
        try:
            resolve_tag(model, home=home)
        except RecsysError as exc:
            raise ContainerError(
                f"bento {tag} needs the {arg} model '{model}', which is not in the model store",
                where=str(home or "$BENTOML_HOME"),
                fix="rebuild the bento around models that exist: run the pipeline, or "
                "`recsys bento build` (then `recsys bento validate`)",
            ) from exc
    return containerize(tag, dict(bento.info.labels), home=home, base=base, no_cache=no_cache)


@contextlib.contextmanager
def running(image: str, port: int, *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The image serving on 127.0.0.1:``port`` (``buildah run``, chroot isolation, the host's
    network); SIGTERM, then the working container removed, on exit."""
    fix = "`recsys bento containerize` builds the image; `buildah images` lists them"
    ctr = tool(["buildah", "from", image], what=f"buildah from {image}", fix=fix).strip()
    try:
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [
                    "buildah",
                    "run",
                    "--network",
                    "host",
                    ctr,
                    "--",
                    ENTRYPOINT,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env={**os.environ, **TOOL_ENV},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield proc
            finally:
                stop_container(proc)
    finally:
        with contextlib.suppress(ContainerError):
            tool(["buildah", "rm", ctr], what="buildah rm", fix="")


def container_processes(pid: int) -> list[int]:
    """The processes of a ``running`` container (below ``buildah run`` ``pid``, but buildah's)."""
    return [p for p in process_tree(pid) if not process_cmdline(p).startswith("buildah")]


def stop_container(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> int | None:
    """Stop a ``running`` container as a runtime stops PID 1: SIGTERM to the server inside,
    which stops its workers; SIGKILL to whatever is left after ``grace_s``. Chroot isolation
    has no PID namespace, so a process that outlived ``buildah run`` would stay orphaned: the
    container's processes are found below ``proc`` and each is waited for. Returns the exit
    status of ``buildah run`` (None when it had to be killed)."""
    inner = container_processes(proc.pid)
    for pid in inner[:1] or [proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(process_cmdline(p) for p in inner) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in inner:
        if process_cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return None
