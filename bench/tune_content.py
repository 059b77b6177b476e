"""Tune and measure DeepContent, Hybrid and TwoTower on the ML-100K u1 benchmark split.

Tune on the validation files only (``--stage val``: ``val_train.tsv`` / ``val_test.tsv``, a
per-user 1/8 of ``train.tsv``), then report the final number on the test files
(``--stage test``). ``--curve`` puts the validation rows into ``split.val`` so the training
loop logs NDCG@10 after every epoch (``epochs`` is then read off the validation curve, never
the test one). Item content and user attributes come from ``u.item`` / ``u.user``, and the data
is built exactly as ``recsys benchmark`` builds it (``recsys.benchmark.load_split``).

    .venv/bin/python bench/tune_content.py --model content --stage val --curve --set epochs=30
    .venv/bin/python bench/tune_content.py --model twotower --stage test --set epochs=40
    .venv/bin/python bench/tune_content.py --model hybrid --stage test --speed

Each run prints one JSON line: model, config, fit seconds, metrics (PROTOCOL.md ``topk``), the
per-epoch curve and loss, and with ``--speed`` the users x items scored per second by the fast
path and by ``model.predict`` over the same pairs, with the hardware.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tuning
from hardware import hardware

from recsys.benchmark import SplitData, SplitFiles, load_split, read_side_tables
from recsys.evaluation.harness import run_trial
from recsys.models.registry import model_class

SHARED = Path(os.environ.get("RECSYS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
SPLIT = SHARED / "benchmarks" / "splits" / "ml100k-u1"
ML100K = SHARED / "datasets" / "ml-100k"


def load(stage: str) -> SplitData:
    """The stage's split with ML-100K content, as ``recsys benchmark`` reads it."""
    prefix = "val_" if stage == "val" else ""
    items, users = read_side_tables(ML100K / "u.item", ML100K / "u.user")
    files = SplitFiles(SPLIT / f"{prefix}train.tsv", SPLIT / f"{prefix}test.tsv")
    return load_split(files, items=items, users=users)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default="content", choices=["content", "hybrid", "twotower"])
    ap.add_argument("--stage", default="val", choices=["val", "test"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--curve", action="store_true", help="log NDCG@10 on the validation rows")
    ap.add_argument("--speed", action="store_true", help="measure scoring throughput")
    args = ap.parse_args(argv)
    if args.curve and args.stage == "test":
        ap.error("--curve reads the held-out rows during training: only with --stage val")

    overrides = tuning.overrides(args.set)
    if args.curve:
        overrides.setdefault("eval_users", 100_000)
        overrides.setdefault("patience", 0)
    split_data = load(args.stage)
    data = split_data.fit_data()
    split = data.split
    if args.curve:
        split = dataclasses.replace(split, val=split_data.data.split.test)
    model = model_class(args.model)(**overrides)
    trial = run_trial(model, data, split_data.heldout(), "topk", split=split, n_boot=100)
    out: dict[str, Any] = {"model": args.model, "stage": args.stage}
    out.update(tuning.record(trial, "val_ndcg@10" if args.curve else None))
    if args.speed:
        out["speed"] = tuning.speed(model)
        out["hardware"] = hardware()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
