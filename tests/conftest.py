"""Shared fixtures. Runs before any test module imports TensorFlow, GX, DVC or BentoML."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# Telemetry off and CPU only, before the libraries are imported (STACK-NOTES.md).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("RECSYS_GPU_TESTS") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _default_stop_signals() -> None:
    """SIGINT and SIGTERM as a terminal gives them to this process, and so to the processes the
    tests start. Launched as a background job of a script, pytest starts with SIGINT ignored;
    Dagster, once a test runs it in-process, maps SIGTERM to SIGINT's handler
    (``dagster._utils.interrupts.setup_interrupt_handlers``), so SIGTERM became ignored too, and
    every server a later test started (``dagster dev``, ``recsys data docs``) inherited that and
    never stopped on SIGTERM. The tests that check stopping must not depend on how the suite
    was launched."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_default_stop_signals()


def _import_anyio_eagerly() -> None:
    """Import every lazily imported name of anyio now, in the main thread. pytest rewrites the
    modules of its plugins' packages (anyio is one) with ``ast.parse`` as they are imported;
    anyio imports ``anyio._core._fileio`` and others lazily, on first use, which for a
    Starlette ``FileResponse`` is in a server thread while the main thread runs too, and
    CPython 3.11's AST constructor can then raise ``SystemError: AST constructor recursion
    depth mismatch`` (python/cpython#106905): tests/orchestration/test_plots.py failed so,
    once, in a CI run."""
    import warnings

    import anyio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases warn when first read
        for name in dir(anyio):
            getattr(anyio, name)


_import_anyio_eagerly()


@pytest.fixture(autouse=True)
def _stop_signals_reset() -> Iterator[None]:
    """Undo an in-process Dagster run's SIGTERM mapping after each test (see above)."""
    yield
    _default_stop_signals()


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECSYS_SHARED_DIR", REPO.parent / "shared"))
ML100K = SHARED / "datasets" / "ml-100k"
BENCH_SPLITS = SHARED / "benchmarks" / "splits"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens 100K (read-only). Skips the test when ../shared is absent."""
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (set RECSYS_SHARED_DIR)")
    return ML100K


@pytest.fixture(scope="session")
def bench_splits_dir() -> Path:
    if not BENCH_SPLITS.is_dir():
        pytest.skip(f"benchmark splits not found at {BENCH_SPLITS}")
    return BENCH_SPLITS
