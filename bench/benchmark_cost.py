"""Where ``recsys benchmark``'s time goes: seconds per model and per stage (tune, fit, score).

Each model runs in its own child process (fresh memory, a wall-clock limit that can stop it)
through the steps ``recsys.benchmark.run_model`` takes: ``tune_model`` on the validation files,
then ``run_trial`` (fit on train, score on test with the benchmark's bootstrap CIs). No output
file is written; the table and the machine (``bench/hardware.py``, with the load average before
and after) go to stdout, and ``--out`` also writes JSON.

    .venv/bin/python bench/benchmark_cost.py --data ml100k-u1 [--models ease,bpr]
        [--no-tune] [--timeout 900] [--out cost.json]
    .venv/bin/python bench/benchmark_cost.py --data playcount ...   # bench/playcount_log.py

``ml100k-u1`` reads ``$SHARED/benchmarks/splits/ml100k-u1`` (``SHARED=../shared``) with
``u.item``/``u.user`` and bench/ml100k-u1.yaml's settings; ``playcount`` writes the synthetic
play-count log of bench/playcount_log.py (1.9k users x 17.6k items, no side tables) to a
temporary directory and uses the same settings file. Stages: ``tune`` = ``Tuning.seconds``;
``fit`` = ``TrainResult.fit_seconds``; ``recommend`` = the top-50 lists of the test users;
``score`` = the rest of the evaluation (metrics, bootstrap); ``total`` = the child's wall time
including reading the files. A model past ``--timeout`` is reported as such, not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hardware import hardware
from playcount_log import write_splits

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "bench" / "ml100k-u1.yaml"


def split_dir(data: str, scratch: Path) -> tuple[Path, Path | None, Path | None]:
    """(split folder, u.item, u.user) of a named data set."""
    shared = Path(os.environ.get("SHARED", ROOT.parent / "shared"))
    if data == "ml100k-u1":
        ml = shared / "datasets" / "ml-100k"
        return shared / "benchmarks" / "splits" / "ml100k-u1", ml / "u.item", ml / "u.user"
    if data == "playcount":
        write_splits(scratch)
        return scratch, None, None
    raise SystemExit(f"unknown --data {data!r}: ml100k-u1 or playcount")


def run_one(name: str, folder: Path, items: Path | None, users: Path | None, tune: bool) -> dict:
    """One model's stages, in this process (the child's side)."""
    from recsys.benchmark.config import SplitFiles, load_model_params
    from recsys.benchmark.run import score_options
    from recsys.benchmark.splits import load_split, read_side_tables
    from recsys.benchmark.tuning import tune_model
    from recsys.evaluation.harness import run_trial
    from recsys.models import registry

    start = time.perf_counter()
    item_table, user_table = read_side_tables(items, users)
    split = load_split(
        SplitFiles(folder / "train.tsv", folder / "test.tsv"), items=item_table, users=user_table
    )
    val = load_split(
        SplitFiles(folder / "val_train.tsv", folder / "val_test.tsv"),
        items=item_table,
        users=user_table,
        prefix="val-",
    )
    cls = registry.model_class(name)
    fields = dict(load_model_params(PARAMS).get(name, {}))
    tuning = tune_model(cls, fields, val, "topk") if tune else None
    if tuning is not None:
        fields = {**fields, **tuning.chosen}
    trial_start = time.perf_counter()
    trial = run_trial(
        cls(**fields), split.fit_data(), split.heldout(), "topk", **score_options("topk")
    )
    trial_seconds = time.perf_counter() - trial_start
    fit = float(trial.train.fit_seconds or 0.0)
    recommend = float(trial.output_seconds)
    return {
        "model": name,
        "tune": tuning.seconds if tuning is not None else None,
        "chosen": tuning.chosen if tuning is not None else None,
        "fit": round(fit, 2),
        "recommend": round(recommend, 2),
        "score": round(trial_seconds - fit - recommend, 2),
        "total": round(time.perf_counter() - start, 2),
        "ndcg@10": round(float(trial.evaluation.metrics["ndcg@10"]), 4),
        "epochs": trial.train.epochs,
    }


def run_child(name: str, args: argparse.Namespace, folder: Path, side: tuple) -> dict[str, Any]:
    """``run_one`` in a child process, stopped after ``args.timeout`` seconds."""
    command = [sys.executable, __file__, "--child", name, "--folder", str(folder)]
    command += [f"--items={side[0] or ''}", f"--users={side[1] or ''}"]
    command += [] if args.tune else ["--no-tune"]
    start = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"model": name, "error": f"stopped after {args.timeout} s", "total": args.timeout}
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if "Error" in ln] or ["no message"]
        wall = round(time.perf_counter() - start, 1)
        return {"model": name, "error": f"exit {done.returncode}: {errors[-1]}", "total": wall}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| model | tune s | fit s | recommend s | score s | total s | NDCG@10 |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['error']} | | | | {r['total']} | |")
            continue
        tune = "-" if r["tune"] is None else f"{r['tune']:.1f}"
        lines.append(
            f"| {r['model']} | {tune} | {r['fit']:.1f} | {r['recommend']:.1f} | {r['score']:.1f}"
            f" | {r['total']:.1f} | {r['ndcg@10']:.4f} |"
        )
    total = sum(float(r["total"]) for r in rows)
    lines.append(f"| **all** | | | | | **{total:.0f}** | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml100k-u1")
    parser.add_argument("--models", default="", help="comma-separated; default every registered")
    parser.add_argument("--no-tune", dest="tune", action="store_false")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per model")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--items", help=argparse.SUPPRESS)
    parser.add_argument("--users", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side = [Path(p) if p else None for p in (args.items, args.users)]
        print(json.dumps(run_one(args.child, args.folder, side[0], side[1], args.tune)))
        return
    from recsys.models import registry

    names = [n.strip() for n in args.models.split(",") if n.strip()] or list(registry.MODELS)
    before = hardware()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder, items, users = split_dir(args.data, Path(scratch))
        for name in names:
            rows.append(run_child(name, args, folder, (items, users)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"{args.data}, tuning {'on' if args.tune else 'off'}\n\n{markdown(rows)}\n")
    print(f"hardware: {json.dumps(before)}; load average after: {load_after}")
    if args.out:
        args.out.write_text(
            json.dumps({"data": args.data, "tune": args.tune, "rows": rows, "hardware": before,
                        "load_after": load_after}, indent=1) + "\n"
        )  # fmt: skip


if __name__ == "__main__":
    main()
