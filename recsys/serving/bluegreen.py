"""Zero-downtime switches between bentos: HAProxy (Debian's ``haproxy``) in front, two server
slots behind it, one command to flip.

The backend has two slots: ``blue``, an ordinary server, and ``green``, a ``backup`` server,
which HAProxy sends nothing while an ordinary server is up. So one runtime-API command moves
all new requests at once, never mixing the two:

- green takes over when blue is put in maintenance (``set server bentos/blue state maint``);
- blue takes over again as soon as it is made ready (``... state ready``).

``switch(host, port)`` points the idle slot at a bento that already answers ``/readyz``,
flips, then waits until the old slot has no request in flight (requests it had accepted
finish there) and returns the old slot's address, whose server the caller then stops. A
client sees every answer from the old bento until the flip and from the new one after it:
no error, and a model tag that changes exactly once (tests/serving/test_bluegreen.py).

``supervise`` (``recsys serve --front PORT``) keeps the registry's deployable bento served
behind the front: it polls the registry and, when a promotion (or a rollback, once the old
champion's bento is deployable again) names another bento, starts it, waits for ``/readyz``,
switches and stops the old one. A bento that fails to start is logged and the old one keeps
serving.

On Kubernetes a rolling update with readiness probes does the same (``recsys bento
manifests``); this is for a team that runs bentos on its own hosts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from recsys.errors import RecsysError
from recsys.serving import infra, serve
from recsys.serving.store import Registry

BACKEND = "bentos"
SLOTS = ("blue", "green")
CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    option http-server-close

frontend recsys
    bind {host}:{port}
    default_backend {backend}

backend {backend}
    server blue {blue}
    server green 127.0.0.1:1 backup disabled
"""


class SwitchError(RecsysError):
    """HAProxy is missing, did not start, or refused a runtime command."""


class BlueGreen:
    """HAProxy on ``host:port`` in front of the bento at ``blue`` (host:port); ``running``
    starts it."""

    def __init__(self, work: Path, *, port: int, host: str = "127.0.0.1") -> None:
        self.work = Path(work)
        self.host, self.port = host, port
        self.socket = self.work / "haproxy.sock"
        self.active = "blue"
        self.addresses: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @contextlib.contextmanager
    def running(self, blue: str) -> Iterator[BlueGreen]:
        """HAProxy serving ``blue`` until the block ends."""
        if shutil.which("haproxy") is None:
            raise SwitchError(
                "haproxy is not installed",
                fix="apt-get install -y --no-install-recommends haproxy (as root)",
            )
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "haproxy.cfg"
        config.write_text(
            CONFIG.format(
                socket=self.socket, host=self.host, port=self.port, backend=BACKEND, blue=blue
            )
        )
        self.addresses = {"blue": blue}
        log = self.work / "haproxy.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 20
            while not self.socket.exists() or infra.http("GET", f"{self.url}/livez")[0] != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SwitchError(
                        "haproxy did not start", where=str(log), fix=log.read_text()[-2000:]
                    )
                time.sleep(0.1)
            yield self
        finally:
            proc.terminate()
            proc.wait(10)

    def command(self, line: str, *, check: bool = True) -> str:
        """One runtime-API command over the admin socket; its answer (``check``: an answer
        that reports a failure raises ``SwitchError``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(self.socket))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks).decode()
        failed = ("unknown", "require", "invalid", "error", "not found")
        if check and any(word in answer.lower() for word in failed):
            raise SwitchError(f"haproxy refused '{line}': {answer.strip()}")
        return answer

    def in_flight(self, slot: str) -> int:
        """Requests the slot's server is answering now (``show stat``: scur)."""
        rows = csv.DictReader(io.StringIO(self.command("show stat", check=False).lstrip("# ")))
        for row in rows:
            if row["pxname"] == BACKEND and row["svname"] == slot:
                return int(row["scur"] or 0)
        raise SwitchError(f"no server {slot} in haproxy's backend {BACKEND}")

    def switch(self, address: str, drain_timeout_s: float = 30.0) -> str:
        """Send all new requests to the bento at ``address`` (host:port, answering
        ``/readyz``); returns the address of the bento it replaced, once that has no request
        in flight."""
        status, _ = infra.http("GET", f"http://{address}/readyz", timeout_s=5.0)
        if status != 200:
            raise SwitchError(
                f"the bento at {address} is not ready (GET /readyz: {status or 'no answer'})",
                fix="switch only to a bento that answers /readyz",
            )
        old = self.active
        new = "green" if old == "blue" else "blue"
        host, _, port = address.rpartition(":")
        self.command(f"set server {BACKEND}/{new} addr {host} port {port}")
        if new == "green":
            self.command(f"set server {BACKEND}/green state ready")  # a backup: idle so far
            self.command(f"set server {BACKEND}/blue state maint")  # the flip
        else:
            self.command(f"set server {BACKEND}/blue state ready")  # the flip: blue wins
            self.command(f"set server {BACKEND}/green state maint")
        self.active = new
        self.addresses[new] = address
        deadline = time.monotonic() + drain_timeout_s
        while self.in_flight(old) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.addresses[old]


@contextlib.contextmanager
def served_bento(
    tag: str, work: Path, *, home: Path | str | None = None, ready_timeout_s: float = 180.0
) -> Iterator[str]:
    """``bentoml serve TAG`` on a free port of 127.0.0.1, ready; yields its host:port."""
    Path(work).mkdir(parents=True, exist_ok=True)
    log = Path(work) / f"{tag.replace(':', '-')}.log"
    with infra.serving(tag, home=home, log=log) as (url, proc, _):
        if infra.wait_ready(url, proc, ready_timeout_s) is None:
            raise SwitchError(
                f"bento {tag} did not become ready within {ready_timeout_s:.0f} s",
                where=str(log),
                fix="read its log; `recsys bento validate TAG` checks a bento",
            )
        yield url.split("//", 1)[1]


def supervise(
    registry: Registry,
    front: BlueGreen,
    stop: threading.Event,
    *,
    poll_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> None:
    """Serve the registry's deployable bento behind ``front`` until ``stop`` is set, switching
    to each new deployable bento without dropping a request (module docstring)."""
    tag = serve.deployable_bento(registry)
    current = contextlib.ExitStack()
    try:
        address = current.enter_context(served_bento(tag, front.work, home=registry.home))
        with front.running(address):
            log(f"serving {tag} at {front.url} (backend {address})")
            while not stop.wait(poll_s):
                try:
                    latest = serve.deployable_bento(registry)
                except RecsysError as exc:
                    log(f"keeping {tag}: {exc.what}")
                    continue
                if latest == tag:
                    continue
                following = contextlib.ExitStack()
                try:
                    new_address = following.enter_context(
                        served_bento(latest, front.work, home=registry.home)
                    )
                    front.switch(new_address)
                except RecsysError as exc:
                    following.close()
                    log(f"keeping {tag}: {latest} could not take over: {exc.what}")
                    continue
                current.close()  # drained by switch(): stop the old bento
                current, tag = following, latest
                log(f"switched to {tag} (backend {new_address})")
    finally:
        current.close()
