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

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.data.sources import read_ratings_file
from recsys.evaluation.evaluate import evaluate_loo, evaluate_topk
from recsys.models.ncf import NeuMF
from recsys.schema import Dataset

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "splits"


def load(split: str, stage: str) -> tuple[Processed, pd.DataFrame, pd.DataFrame | None]:
    """(processed data with the stage's test as ``split.test``, test rows, loo negatives)."""
    root = Path(os.environ.get("RECSYS_SPLITS", SPLITS)) / split
    prefix = "val_" if stage == "val" else ""
    train = read_ratings_file(root / f"{prefix}train.tsv")
    test = read_ratings_file(root / f"{prefix}test.tsv")
    neg_file = root / f"{prefix}negatives.tsv"
    negatives = read_ratings_file(neg_file) if neg_file.is_file() else None
    ds = Dataset(pd.concat([train, test], ignore_index=True), name=f"{split}-{stage}")
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    return preprocess(ds, cfg, test_pairs=test), test, negatives


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
    data, test, negatives = load(args.split, args.stage)
    split = data.split
    if args.curve:
        val_negatives = None
        if negatives is not None:  # leave-one-out: the curve is the loo NDCG@10
            u = data.vocab.encode_users(negatives["user_id"].to_numpy())
            i = data.vocab.encode_items(negatives["item_id"].to_numpy())
            known = (u >= 0) & (i >= 0)  # an unknown item scores -inf in evaluate_loo anyway
            val_negatives = pd.DataFrame({"user_idx": u[known], "item_idx": i[known]})
        split = dataclasses.replace(split, val=split.test, val_negatives=val_negatives)
    model = NeuMF(**overrides)
    result = model.fit(data, split)
    train = data.split.train
    out: dict[str, Any] = {
        "split": args.split,
        "stage": args.stage,
        "config": model.config_dict(),
        "fit_seconds": result.fit_seconds,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "samples_per_second": result.samples_per_second,
        "device": result.device,
        "n_parameters": result.n_parameters,
    }
    if args.split == "ml100k-u1":
        topk = evaluate_topk(model, train, test, ks=(10, 20), n_boot=100)
        out["metrics"] = {k: round(v, 4) for k, v in topk.metrics.items()}
        out["recommend_seconds"] = topk.recommend_seconds
    else:
        assert negatives is not None
        loo = evaluate_loo(model, test, negatives, ks=(10,), n_boot=100)
        out["metrics"] = {k: round(v, 4) for k, v in loo.metrics.items()}
        out["score_seconds"] = loo.score_seconds
    if args.curve:
        key = "val_loo_ndcg@10" if negatives is not None else "val_ndcg@10"
        out["curve"] = [round(v, 4) for v in result.history.get(key, [])]
    out["loss"] = [round(v, 4) for v in result.history["loss"]]
    if args.speed:
        out["speed"] = tuning.speed(model)
        out["hardware"] = hardware()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
