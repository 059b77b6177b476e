"""Tune and measure NeuMF on the shared benchmark splits (``../shared/benchmarks``).

Tune on the validation files only (``--stage val``: ``val_train.tsv`` / ``val_test.tsv``), then
report the final number on the test files (``--stage test``). ``--curve`` puts the stage's test
rows into ``split.val`` so the training loop logs NDCG@10 after every epoch (choose ``epochs``
from the validation curve, never from the test one).

    .venv/bin/python bench/tune_neumf.py --split ml100k-u1 --stage val --curve \
        --set epochs=30 --set embedding_dim=64
    .venv/bin/python bench/tune_neumf.py --split ml100k-loo --stage test --set epochs=12
    .venv/bin/python bench/tune_neumf.py --split ml100k-u1 --stage test --speed

Each run prints one JSON line: config, fit seconds, metrics (PROTOCOL.md: ``topk`` for u1,
``loo`` for loo), the per-epoch curve, and with ``--speed`` the users x items scored per second
by the fast path and by ``model.predict``, with the hardware.
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

import pandas as pd
import tuning
from hardware import hardware

from recsys.benchmark import SplitData, SplitFiles, load_split
from recsys.evaluation.harness import run_trial
from recsys.models.ncf import NeuMF

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "splits"


def load(split: str, stage: str) -> SplitData:
    """The stage's files of ``split`` as ``recsys benchmark`` reads them (with loo negatives)."""
    root = Path(os.environ.get("RECSYS_SPLITS", SPLITS)) / split
    prefix = "val_" if stage == "val" else ""
    neg_file = root / f"{prefix}negatives.tsv"
    files = SplitFiles(
        root / f"{prefix}train.tsv",
        root / f"{prefix}test.tsv",
        neg_file if neg_file.is_file() else None,
    )
    return load_split(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="ml100k-u1", choices=["ml100k-u1", "ml100k-loo"])
    ap.add_argument("--stage", default="val", choices=["val", "test"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--curve", action="store_true", help="log NDCG@10 on the stage's test")
    ap.add_argument("--speed", action="store_true", help="measure scoring throughput")
    args = ap.parse_args(argv)
    if args.curve and args.stage == "test":
        ap.error("--curve reads the test rows during training: only with --stage val")

    overrides = tuning.overrides(args.set)
    overrides.setdefault("eval_users", 100_000)
    overrides.setdefault("patience", 0)
    split_data = load(args.split, args.stage)
    data = split_data.fit_data()
    split = data.split
    negatives = split_data.negatives
    if args.curve:
        val_negatives = None
        if negatives is not None:  # leave-one-out: the curve is the loo NDCG@10
            u = data.vocab.encode_users(negatives["user_id"].to_numpy())
            i = data.vocab.encode_items(negatives["item_id"].to_numpy())
            known = (u >= 0) & (i >= 0)  # an unknown item scores -inf in evaluate_loo anyway
            val_negatives = pd.DataFrame({"user_idx": u[known], "item_idx": i[known]})
        val = split_data.data.split.test
        split = dataclasses.replace(split, val=val, val_negatives=val_negatives)
    model = NeuMF(**overrides)
    protocol = "topk" if args.split == "ml100k-u1" else "loo"
    trial = run_trial(model, data, split_data.heldout(), protocol, split=split, n_boot=100)
    out: dict[str, Any] = {"split": args.split, "stage": args.stage}
    key = "val_loo_ndcg@10" if negatives is not None else "val_ndcg@10"
    out.update(tuning.record(trial, key if args.curve else None))
    if args.speed:
        out["speed"] = tuning.speed(model)
        out["hardware"] = hardware()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
