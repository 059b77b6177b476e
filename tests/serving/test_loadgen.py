"""The load generator of the serving benchmark and load tests, against a stdlib HTTP server
on 127.0.0.1; and the search knobs the ANN benchmark sweeps (``FaissIndex.set_search_params``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from recsys.config import RetrievalConfig
from recsys.retrieval import ExactIndex, FaissIndex, recall_at_k
from recsys.serving import package
from recsys.serving.loadgen import STATUS_CONNECTION_ERROR, run_load


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if body == b"busy" else 200
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_counts_statuses_and_stops_at_max_requests(http_server: str) -> None:
    result = run_load(
        http_server, "/x", [b"{}", b"busy"], concurrency=4, duration_s=30, max_requests=40
    )
    summary = result.summary()
    assert summary["requests"] == 40 and result.wall_s < 30
    assert summary["statuses"] == {"200": 20, "503": 20}
    assert summary["ok"] == 20 and summary["throughput_rps"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_stops_at_the_duration(http_server: str) -> None:
    result = run_load(http_server, "/x", [b"{}"], concurrency=2, duration_s=0.5)
    assert 0.5 <= result.wall_s < 5 and result.count(200) == len(result.statuses) > 0


def test_connection_errors_are_status_0_not_exceptions() -> None:
    url = f"http://127.0.0.1:{package.free_port()}"  # nothing listens there
    result = run_load(url, "/x", [b"{}"], concurrency=2, duration_s=5, max_requests=6)
    assert result.statuses == [STATUS_CONNECTION_ERROR] * 6
    assert result.summary()["p99_ms"] is None


def test_search_knobs_trade_recall_without_rebuilding() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    truth, _ = ExactIndex(vectors).search(queries, 10)
    ivf = FaissIndex(vectors, "ivf", RetrievalConfig(nlist=30, nprobe=1))
    low = recall_at_k(ivf.search(queries, 10)[0], truth)
    ivf.set_search_params(nprobe=10**6)  # clamped to nlist: every list, exact
    assert recall_at_k(ivf.search(queries, 10)[0], truth) == 1.0 > low
    hnsw = FaissIndex(vectors, "hnsw", RetrievalConfig(hnsw_m=4, ef_construction=8))
    hnsw.set_search_params(ef_search=1)
    low = recall_at_k(hnsw.search(queries, 10)[0], truth)
    hnsw.set_search_params(ef_search=3000)  # M=4: a sparse graph, so not exactly 1.0
    assert recall_at_k(hnsw.search(queries, 10)[0], truth) >= max(low + 0.3, 0.95)


def test_back_off_after_back_pressure(http_server: str) -> None:
    result = run_load(http_server, "/x", [b"busy"], concurrency=1, duration_s=1.0, backoff_s=0.25)
    assert set(result.statuses) == {503} and 2 <= len(result.statuses) <= 5
