"""Time to quality on ml100k-u1: training seconds until a deep model reaches a reference
system's NDCG@10 (REFERENCE.md), for the cost table of docs/benchmarks.md.

Each model is trained on ``train.tsv`` exactly as ``bench/ml100k.sh topk`` trains it (settings
from ``bench/ml100k-u1.yaml``, defaults otherwise; epochs fixed, no early stopping), while a
callback measures the full-ranking NDCG@10 of PROTOCOL.md on ``test.tsv`` after every epoch.
The measurement selects nothing (the epochs come from the params file, chosen on validation):
it only records when the curve first crosses each reference figure. Evaluation time is
excluded from the training seconds (``epoch_train_seconds`` of ``recsys.train.fit_model``).

    .venv/bin/python bench/time_to_quality.py [--models neumf,twotower,hybrid,content]

Prints one JSON line per model and writes reports/benchmarks/time-to-quality.json.
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

import yaml
from hardware import hardware
from tune_content import load

from recsys.models.registry import model_class

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = {"recbole-neumf": 0.4930, "recbole-lightgcn": 0.5314, "ease": 0.5652}
"""NDCG@10 of REFERENCE.md's ml100k-u1 table."""


def crossing(curve: list[float], seconds: list[float], target: float) -> dict[str, Any] | None:
    """The first epoch whose NDCG@10 reaches ``target``, with its training seconds."""
    for epoch, (value, t) in enumerate(zip(curve, seconds, strict=True), start=1):
        if value >= target:
            return {"epoch": epoch, "train_seconds": t}
    return None


def run(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    split_data = load("test")
    data = split_data.fit_data()
    # The test rows as the loop's validation set: every user, never stop early.
    split = dataclasses.replace(data.split, val=split_data.data.split.test)
    model = model_class(name)(**{**fields, "eval_users": 1 << 30, "patience": 0})
    result = model.fit(data, split)
    curve = [round(v, 4) for v in result.history["val_ndcg@10"]]
    seconds = list(result.extra["epoch_train_seconds"])
    return {
        "model": name,
        "config": model.config_dict(),
        "epochs": result.epochs,
        "fit_seconds": result.fit_seconds,
        "train_seconds": result.extra["train_seconds"],
        "samples_per_second": result.samples_per_second,
        "ndcg@10_per_epoch": curve,
        "train_seconds_per_epoch": seconds,
        "reached": {ref: crossing(curve, seconds, v) for ref, v in REFERENCES.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", default="neumf,twotower,hybrid,content")
    ap.add_argument("--params", type=Path, default=ROOT / "bench" / "ml100k-u1.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks")
    args = ap.parse_args(argv)
    params = (yaml.safe_load(args.params.read_text()) or {}).get("models", {})
    results = []
    for name in args.models.split(","):
        out = run(name, dict(params.get(name) or {}))
        print(json.dumps(out), flush=True)
        results.append(out)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"references": REFERENCES, "hardware": hardware(), "models": results}
    (args.out / "time-to-quality.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
