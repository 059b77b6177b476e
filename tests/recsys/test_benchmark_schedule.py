"""``recsys benchmark --jobs``: models spread over worker processes (recsys.benchmark.schedule)
give the results of one process, composites run with their components, errors come back
whole."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from recsys.benchmark import BenchmarkConfig, run_benchmark
from recsys.benchmark.config import SplitFiles
from recsys.benchmark.run import _run_parallel, _Work
from recsys.benchmark.schedule import (
    THREAD_VARIABLES,
    model_groups,
    parse_jobs,
    resolve_jobs,
    run_order,
    worker_env,
    worker_pool,
    worker_threads,
)
from recsys.data.preprocess import Processed
from recsys.errors import ConfigError, DataError
from recsys.models import registry
from recsys.schema import ITEM_ID, RATING, USER_ID
from tests.recsys.test_model_requirements import write_split
from tests.recsys.test_models_contract import synthetic_data

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE = {"members": ["ease", "itemknn"], "params": {"ease": {"l2": 50.0}}}


def classes(*names: str) -> dict[str, type]:
    return {n: registry.model_class(n) for n in names}


def test_a_composite_runs_after_its_components_and_shares_their_process() -> None:
    fields = {"ensemble": ENSEMBLE, "twostage": {"ranker": "ease", "retriever": "itemknn"}}
    names = ("ensemble", "mostpop", "neumf", "itemknn", "ease", "bpr", "twostage")
    found = classes(*names)
    every = {n: fields.get(n, {}) for n in names}
    assert run_order(found, every) == [
        "mostpop", "neumf", "itemknn", "ease", "ensemble", "bpr", "twostage"
    ]  # fmt: skip
    groups = model_groups(found, every)
    # The costliest group first (the sum of fit_cost), composites with their components.
    assert groups[:2] == [["itemknn", "ease", "ensemble", "twostage"], ["neumf"]]
    assert sorted(n for g in groups for n in g) == sorted(names)
    # Components that do not run are not waited for.
    alone = classes("ensemble", "mostpop")
    assert run_order(alone, {"ensemble": ENSEMBLE, "mostpop": {}}) == ["ensemble", "mostpop"]


def test_composites_take_the_settings_their_components_ran_with() -> None:
    ens, two = registry.model_class("ensemble"), registry.model_class("twostage")
    ran = {"ease": {"l2": 250.0}, "twotower": {"epochs": 3}}
    assert ens.component_models(ENSEMBLE) == ("ease", "itemknn")
    given = ens.with_component_settings(ENSEMBLE, ran)
    assert given is not None and given["params"]["ease"] == {"l2": 250.0}
    assert given["members"] == ENSEMBLE["members"]
    assert ens.with_component_settings(ENSEMBLE, {"bpr": {}}) is None
    assert two.component_models({}) == ("twotower", "ease")  # the defaults
    given = two.with_component_settings({"rerank_top": 50}, ran)
    assert given == {"rerank_top": 50, "params": ran}
    assert registry.model_class("ease").component_models({}) == ()


def test_jobs_and_threads_share_out_the_cores() -> None:
    assert resolve_jobs(None, n_groups=9, cores=2) == 2
    assert resolve_jobs(None, n_groups=1, cores=16) == 1  # never more workers than work
    assert resolve_jobs(4, n_groups=9, cores=2) == 4
    assert worker_threads(2, cores=2) == 1 and worker_threads(3, cores=16) == 5
    assert worker_threads(4, cores=2) == 1
    assert parse_jobs("auto") is None and parse_jobs(" 3 ") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ConfigError, match="--jobs"):
            parse_jobs(bad)
    with pytest.raises(ConfigError, match="jobs"):
        resolve_jobs(0, n_groups=3)


def test_worker_env_sets_thread_limits_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own choice stays
    with worker_env(1):
        assert os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "TF_NUM_INTRAOP_THREADS" not in os.environ
    assert os.environ["OMP_NUM_THREADS"] == "7"


def split_with_validation(root: Path, data: Processed) -> tuple[SplitFiles, SplitFiles]:
    """The split's files and validation files cut from its training rows (the last fifth)."""
    files = write_split(root, data)
    train = data.split.train[[USER_ID, ITEM_ID, RATING, "timestamp"]]
    cut = int(len(train) * 0.8)
    train.iloc[:cut].to_csv(root / "val_train.csv", index=False)
    train.iloc[cut:].to_csv(root / "val_test.csv", index=False)
    return files, SplitFiles(root / "val_train.csv", root / "val_test.csv")


def test_two_workers_give_the_results_of_one_process(tmp_path: Path) -> None:
    """The same files, metrics and tuning with --jobs 2 as with --jobs 1; the ensemble is
    built from the EASE the run tuned (not its own params' lambda 50), whose fit it reuses
    in its worker."""
    files, val = split_with_validation(tmp_path / "split", synthetic_data())
    names = ("ensemble", "mostpop", "ease", "itemknn", "bpr")
    runs = {}
    for jobs in (1, 2):
        cfg = BenchmarkConfig(
            splits=(files,), models=names, model_params={"ensemble": ENSEMBLE}, val=val,
            n_boot=10, jobs=jobs,
        )  # fmt: skip
        runs[jobs] = run_benchmark(cfg, tmp_path / f"jobs{jobs}")
    assert list(runs[2].models) == list(runs[1].models) == [
        "mostpop", "ease", "itemknn", "ensemble", "bpr"
    ]  # fmt: skip
    for name in names:
        one, two = (tmp_path / f"jobs{j}" / name for j in (1, 2))
        pd.testing.assert_frame_equal(
            pd.read_csv(one / "recommendations.csv"), pd.read_csv(two / "recommendations.csv")
        )
        m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
        assert m1["metrics"] == m2["metrics"] and m1["config"] == m2["config"]
    results = json.loads((tmp_path / "jobs2" / "results.json").read_text())
    assert results["hardware"]["workers"] == 2
    assert results["hardware"]["threads_per_worker"] == worker_threads(2)
    assert "worker processes" in (tmp_path / "jobs2" / "results.md").read_text()
    ensemble = runs[2].models["ensemble"]
    tuned_l2 = runs[2].models["ease"].tuning.chosen["l2"]
    assert ensemble.folds[0].config["params"]["ease"]["l2"] == tuned_l2
    members = ensemble.folds[0].train.extra["members"]
    assert members["ease"]["reused"] and all(m["reused"] for m in members.values())


def test_a_worker_error_reaches_the_caller_whole(tmp_path: Path) -> None:
    """A failure in a worker process is raised in the caller with its class, what, where and
    fix; the other groups are cancelled."""
    files = write_split(tmp_path / "split", synthetic_data())
    work = _Work({}, (), None, BenchmarkConfig(splits=(files,)), tmp_path, verbose=False)
    with pytest.raises(ConfigError) as caught:
        _run_parallel([["no-such-model"], ["no-such-model"]], work, jobs=2, threads=1)
    assert "unknown model 'no-such-model'" in caught.value.what
    assert caught.value.fix is not None and "mostpop" in caught.value.fix
    error = DataError("bad file", where="file 'x.csv', line 3", fix="remove the line")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.what, copy.where, copy.fix) == (
        DataError, "bad file", "file 'x.csv', line 3", "remove the line"
    )  # fmt: skip
    assert str(copy) == str(error)


KILLED_PARENT = """
import os, sys, time
from recsys.benchmark.schedule import worker_pool
if __name__ == "__main__":
    with worker_pool(1) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 120)
        time.sleep(120)
"""


def test_workers_end_when_the_benchmark_is_killed(tmp_path: Path) -> None:
    """A benchmark killed mid-run (SIGKILL: no clean-up runs) leaves no worker process
    fitting on: each worker watches its parent and exits when it is gone."""
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive, sleeping in its task
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


def test_a_failure_ends_the_other_workers_at_once() -> None:
    """The first error leaves the pool within seconds: a worker still busy (here a
    two-minute task) is ended, not waited for."""
    start = time.monotonic()
    with pytest.raises(ValueError, match="invalid literal"), worker_pool(2) as pool:
        busy = pool.submit(time.sleep, 120)
        pid = pool.submit(os.getpid).result()
        pool.submit(int, "not a number").result()
    assert time.monotonic() - start < 60
    assert not busy.done() or busy.exception() is not None
    assert not alive(pid)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped by init)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_workers_share_one_study_file(tmp_path: Path) -> None:
    """``--tune-trials`` with two workers: every model's Optuna study lands, whole, in the one
    OUT/study.db that the workers write side by side."""
    import optuna

    from recsys.tuning.study import TuneSettings

    files, val = split_with_validation(tmp_path / "split", synthetic_data())
    names = ("itemknn", "ease", "als")
    cfg = BenchmarkConfig(
        splits=(files,), models=names, val=val, n_boot=10, jobs=2,
        tune=TuneSettings(trials=4, timeout_s=120),
    )  # fmt: skip
    report = run_benchmark(cfg, tmp_path / "out")
    assert all(report.models[n].studied for n in names)
    summaries = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert {s.study_name.rsplit(".", 1)[-1]: s.n_trials for s in summaries} == dict.fromkeys(
        names, 4
    )
