"""Tune AutoRec (or the bench's biased MF) on validation rows carved from ML-100K ``u{k}.base``;
the test files are never scored.

Each fold is preprocessed as in ``bench_rating.py`` but with ``val_fraction`` (default 0.1): a
per-user random tenth of ``u{k}.base`` becomes ``split.val``. Every grid point is fitted on the
remaining nine tenths with early stopping on the validation RMSE (``fit_model`` keeps the best
epoch) by ``recsys.evaluation.harness.run_trial``, and the table lists the validation RMSE
(protocol ``rating`` on ``split.val``) and the
epoch it was reached at. The chosen point's epoch count then becomes ``AutoRecConfig.epochs``
for the refit on the full base file (``bench_rating.py``).

    .venv/bin/python bench/tune_autorec.py [--model autorec|biased_mf] [--folds 1]
        [--grid '{"l2": [100, 200]}'] [--fixed '{"hidden_units": 500}'] [--max-epochs 200]
        [--out tune.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_rating import DEFAULT_ML100K, load_fold
from hardware import hardware

from recsys.evaluation.harness import Heldout, run_trial
from recsys.models.autorec import AutoRec
from recsys.models.base import Recommender
from recsys.models.biased_mf import BiasedMF

DEFAULT_GRID: dict[str, list[Any]] = {
    "l2": [100.0, 200.0, 300.0],
    "dropout": [0.0, 0.2, 0.4],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ML100K)
    parser.add_argument("--model", choices=("autorec", "biased_mf"), default="autorec")
    parser.add_argument("--folds", default="1", help="comma-separated fold numbers (1..5)")
    parser.add_argument("--grid", default=json.dumps(DEFAULT_GRID), help="JSON: field -> values")
    parser.add_argument("--fixed", default="{}", help="JSON: AutoRec fields for every point")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    grid: dict[str, list[Any]] = json.loads(args.grid)
    fixed: dict[str, Any] = json.loads(args.fixed)
    folds = [int(k) for k in args.folds.split(",")]
    data = {k: load_fold(args.data, k, val_fraction=args.val_fraction) for k in folds}
    rows = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        for k in folds:
            model: Recommender = (
                AutoRec(**{"epochs": args.max_epochs, **fixed, **point})
                if args.model == "autorec"
                else BiasedMF(**{**fixed, **point})
            )
            start = time.perf_counter()
            split = data[k].split
            heldout = Heldout(split.train, split.val)  # validation rows, never u{k}.test
            trial = run_trial(model, data[k], heldout, "rating", n_boot=10)
            result, val = trial.train, trial.evaluation.metrics
            row = {
                "fold": k,
                **point,
                "val_rmse": val["rmse"],
                "val_mae": val["mae"],
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs,
                "fit_s": round(time.perf_counter() - start, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nhardware: {json.dumps(hardware())}")
    print(f"{args.model}; fixed: {json.dumps(fixed)}; max_epochs {args.max_epochs}")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in sorted(rows, key=lambda r: (r["fold"], r["val_rmse"])):
        print("| " + " | ".join(_fmt(k, v) for k, v in row.items()) + " |")
    if args.out:
        args.out.write_text(json.dumps({"hardware": hardware(), "rows": rows}, indent=2))
    return 0


def _fmt(key: str, value: Any) -> str:
    return f"{value:.4f}" if key.startswith("val_") else str(value)


if __name__ == "__main__":
    sys.exit(main())
