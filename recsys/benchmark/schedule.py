"""How ``recsys benchmark`` spreads its models over worker processes (``--jobs``).

In one process the every-model ml100k-u1 benchmark kept about 1.3 of two CPU cores busy
(14.5 CPU minutes in 10.9: TensorFlow's small ops do not spread), so on a 2-core machine two
fits side by side, one thread each, finish sooner than one after the other; two fits side
by side that each run TensorFlow's default thread pools over the same two cores are slower
than one after the other (docs/benchmarks.md, issue 17). Hence:

- ``run_order``: the models in the order asked, except that a composite model (an ensemble,
  a two-stage model) runs after the models it is built from, so it can reuse their fits and
  the settings tuned for them in this run;
- ``model_groups``: models that share fits (a composite and its components) form one group,
  run in one process, in ``run_order``; groups go to the workers costliest first
  (``Recommender.fit_cost``), each idle worker taking the next;
- ``resolve_jobs`` and ``worker_threads``: the number of workers and the threads of each, so
  that workers x threads never exceeds the cores;
- ``worker_env``: the thread limits as environment variables, set while the workers start
  (TensorFlow and the BLAS libraries read them when they load) and restored afterwards;
- ``worker_pool``: the spawned worker processes (TensorFlow is not fork-safe), each of which
  exits within a second when the process that started it is gone (``watch_parent``): a
  benchmark killed mid-run leaves no worker fitting on for nobody.

One worker (``--jobs 1``) runs everything in the calling process, as before.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from recsys.errors import ConfigError
from recsys.models.base import Recommender

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)
"""What TensorFlow, OpenMP and the BLAS libraries read for their thread pools' sizes."""


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_jobs(text: str) -> int | None:
    """``--jobs``: a positive count, or ``auto`` (None: ``resolve_jobs`` chooses)."""
    if text.strip().lower() == "auto":
        return None
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"--jobs must be a positive number or 'auto', got {text!r}")
    return jobs


def resolve_jobs(jobs: int | None, n_groups: int, cores: int | None = None) -> int:
    """Workers to start: ``jobs`` (None: one per core), never more than the groups of work."""
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    wanted = jobs if jobs is not None else (cores or cpu_count())
    return max(1, min(wanted, n_groups))


def worker_threads(jobs: int, cores: int | None = None) -> int:
    """Threads per worker: the cores shared out, at least one."""
    return max(1, (cpu_count() if cores is None else cores) // max(1, jobs))


def run_order(
    classes: Mapping[str, type[Recommender]], fields: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The model names in the order given, except that a composite waits until every one of
    its components that runs too has run (a stable topological order; a cycle, which no
    registered model forms, keeps the given order)."""
    needs = {
        name: {p for p in cls.component_models(fields[name]) if p in classes and p != name}
        for name, cls in classes.items()
    }
    order: list[str] = []
    waiting = list(classes)
    while waiting:
        ready = [n for n in waiting if needs[n].issubset(order)] or waiting[:1]
        order.append(ready[0])
        waiting.remove(ready[0])
    return order


def model_groups(
    classes: Mapping[str, type[Recommender]], fields: Mapping[str, Mapping[str, Any]]
) -> list[list[str]]:
    """Models that must share a process (a composite and its components, transitively),
    each group in ``run_order``; the groups costliest first (the sum of their models'
    ``fit_cost``; ties keep the run order)."""
    order = run_order(classes, fields)
    leader = {name: name for name in order}

    def find(name: str) -> str:
        while leader[name] != name:
            leader[name] = leader[leader[name]]
            name = leader[name]
        return name

    for name in order:
        for part in classes[name].component_models(fields[name]):
            if part in leader:
                leader[find(part)] = find(name)
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(find(name), []).append(name)
    ranked = sorted(
        enumerate(groups.values()),
        key=lambda item: (-sum(classes[n].fit_cost for n in item[1]), item[0]),
    )
    return [group for _, group in ranked]


@contextmanager
def worker_env(threads: int) -> Iterator[None]:
    """``THREAD_VARIABLES`` set to ``threads`` for processes started inside the block (one a
    user already set is left as it is), then restored."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:
        for name, value in saved.items():
            if value is None:
                os.environ[name] = str(threads)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def watch_parent(parent: int, stop: Any = None, every: float = 0.5) -> None:
    """In a worker process: end it (SIGKILL: nothing of it is worth keeping once the caller
    gave up on it) as soon as ``parent`` is no longer its parent (the benchmark that started
    it was killed) or the event ``stop`` is set (the benchmark failed elsewhere)."""

    def stopped() -> bool:
        if stop is None:
            time.sleep(every)
            return False
        return bool(stop.wait(every))

    def watch() -> None:
        while os.getppid() == parent and not stopped():
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="recsys-watch-parent", daemon=True).start()


@contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """``jobs`` spawned worker processes (TensorFlow is not fork-safe) that end with their
    parent (``watch_parent``). When the block raises (a worker's error, Ctrl-C) every worker
    is ended at once, mid-fit, instead of finishing work nobody will read."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=watch_parent, initargs=(os.getpid(), stop)
    )
    try:
        yield pool
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
