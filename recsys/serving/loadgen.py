"""A closed-loop HTTP load generator (stdlib asyncio), shared by ``bench/serving.py`` and the
serving load tests.

::

    result = run_load("http://127.0.0.1:3000", "/recommend", bodies, concurrency=8,
                      duration_s=10, max_requests=5000)
    result.summary()   # {"requests", "ok", "statuses", "p50_ms", "p99_ms", "throughput_rps", ...}

``concurrency`` clients each keep one HTTP/1.1 keep-alive connection and send the next request
as soon as the previous answer arrived (a closed loop: throughput x latency = concurrency).
Bodies are taken round-robin. A request that fails at the connection level counts as status
0, one that exceeds ``timeout_s`` as status -1; both reconnect. Latencies of every answered
request are kept (milliseconds, from the first byte written to the last byte read).
Nothing here imports BentoML: it measures any server, the naive baseline included.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

STATUS_CONNECTION_ERROR = 0
STATUS_TIMEOUT = -1
BACK_PRESSURE = (429, 503)


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    wall_s: float
    statuses: list[int] = field(repr=False)
    """Per request, in completion order."""
    latencies_ms: list[float] = field(repr=False)

    def count(self, *statuses: int) -> int:
        return sum(1 for s in self.statuses if s in statuses)

    def summary(self) -> dict[str, Any]:
        """Counts by status; latency percentiles and throughput of the 200 answers."""
        ok = np.asarray(
            [ms for ms, s in zip(self.latencies_ms, self.statuses, strict=True) if s == 200]
        )
        pct = (lambda q: round(float(np.percentile(ok, q)), 2)) if len(ok) else (lambda q: None)
        return {
            "concurrency": self.concurrency,
            "requests": len(self.statuses),
            "ok": len(ok),
            "statuses": {str(k): v for k, v in sorted(Counter(self.statuses).items())},
            "wall_s": round(self.wall_s, 2),
            "throughput_rps": round(len(ok) / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": round(float(ok.max()), 2) if len(ok) else None,
        }


def run_load(
    url: str,
    path: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int | None = None,
    timeout_s: float = 10.0,
    backoff_s: float = 0.0,
) -> LoadResult:
    """Drive ``POST url+path`` with ``concurrency`` closed-loop clients for ``duration_s``
    seconds or ``max_requests`` requests, whichever comes first. ``backoff_s``: how long a
    client waits after a back-pressure answer (429, 503) before its next request, as a
    retrying client would; 0 retries at once (the harshest load)."""
    if concurrency < 1 or not bodies:
        raise ValueError("need concurrency >= 1 and at least one body")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # A caller that loaded TensorFlow (the benchmark reads the model's users) holds hundreds of
    # thousands of objects, and a full garbage collection over them would stall every client at
    # once and be counted as server latency. Freeze them for the run: the clients themselves
    # make little garbage.
    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(
                _drive(
                    host,
                    port,
                    path,
                    bodies,
                    concurrency,
                    duration_s,
                    max_requests,
                    timeout_s,
                    backoff_s,
                )
            )
    finally:
        gc.unfreeze()


async def _drive(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    max_requests: int | None,
    timeout_s: float,
    backoff_s: float,
) -> LoadResult:
    statuses: list[int] = []
    latencies: list[float] = []
    order: Iterator[bytes] = itertools.cycle(bodies)
    budget = itertools.count() if max_requests is None else iter(range(max_requests))
    start = time.perf_counter()
    deadline = start + duration_s

    async def client() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.perf_counter() < deadline and next(budget, None) is not None:
            body = next(order)
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):  # no task per request, unlike wait_for
                    if conn is None:
                        conn = await asyncio.open_connection(host, port)
                    status, keep = await _exchange(*conn, request)
            except TimeoutError:
                status, keep = STATUS_TIMEOUT, False
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, keep = STATUS_CONNECTION_ERROR, False
                await asyncio.sleep(0.05)  # the server is restarting: do not spin
            latencies.append((time.perf_counter() - t0) * 1e3)
            statuses.append(status)
            if backoff_s > 0 and status in BACK_PRESSURE:
                await asyncio.sleep(backoff_s)
            if not keep and conn is not None:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(concurrency, time.perf_counter() - start, statuses, latencies)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with ``uvicorn[standard]``): the
    clients share two cores with the server under test, so the less CPU they spend, the less of
    the measured latency is theirs. Measured with ``asyncio.timeout`` (no task per request):
    71-82 us of client CPU per request, against 85-111 us with asyncio's loop and ``wait_for``."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read the whole answer; (status, connection reusable)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:  # no framing: the body ends with the connection
        await reader.read()
        return status, False
    return status, headers.get("connection") != "close"
