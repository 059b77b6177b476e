"""PROTOCOL.md Protocol 3 (rating prediction): 5-fold CV over the official ML-100K folds.

For each fold k in 1..5, ``u{k}.base`` / ``u{k}.test`` are preprocessed with a predefined split
(``test_pairs`` = the test file, no validation, no k-core), a fresh AutoRec is fitted on the base
file, and ``evaluate_rating`` scores every test row (the global training mean for users or items
absent from the base file, as PROTOCOL.md requires). A plain biased matrix factorisation fitted
by alternating least squares (``recsys.models.biased_mf.BiasedMF``, numpy) runs on the same
folds for comparison. Prints per-fold and mean RMSE/MAE with fit seconds and the hardware.

    .venv/bin/python bench/bench_rating.py [--folds 1,2,3,4,5] [--autorec '{"epochs": 80}']
        [--no-mf] [--out results.json]

Target (REFERENCE.md): mean RMSE <= 0.919, Surprise SVD++'s published 5-fold figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
from hardware import hardware

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.data.sources import read_movielens, read_ratings_file
from recsys.evaluation.evaluate import evaluate_rating
from recsys.models.base import Recommender
from recsys.models.biased_mf import BiasedMF
from recsys.schema import Dataset

DEFAULT_ML100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-100k"
SURPRISE = {"svd": 0.934, "svdpp": 0.919}
"""Surprise's published 5-fold RMSE on ML-100K (REFERENCE.md)."""


def load_fold(
    directory: Path, k: int, *, val_fraction: float = 0.0, seed: int = 20261128
) -> Processed:
    """Fold ``k``: train = ``u{k}.base`` (minus a per-user random ``val_fraction`` held out as
    ``split.val``), test = ``u{k}.test``; items and users tables from the data set."""
    full = read_movielens(directory)
    base = read_ratings_file(directory / f"u{k}.base")
    test = read_ratings_file(directory / f"u{k}.test")
    dataset = Dataset(
        pd.concat([base, test], ignore_index=True),
        items=full.items,
        users=full.users,
        name=f"ml-100k-u{k}",
    )
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=val_fraction, seed=seed),
    )
    data = preprocess(dataset, cfg, test_pairs=test)
    split = data.split
    if len(split.train) + len(split.val) != len(base) or len(split.test) != len(test):
        raise RuntimeError(f"fold u{k}: split sizes differ from the files")
    return data


# --- the benchmark -------------------------------------------------------------------------------
def run_fold(model: Recommender, data: Processed) -> dict[str, Any]:
    result = model.fit(data)
    split = data.split
    ev = evaluate_rating(model, split.train, split.test, n_boot=200)
    return {
        "rmse": ev.metrics["rmse"],
        "mae": ev.metrics["mae"],
        "fit_s": result.fit_seconds,
        "score_s": ev.score_seconds,
        "epochs": result.epochs,
        "n_fallback": ev.n_fallback,
        "device": result.device,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ML100K)
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--autorec", default="{}", help="JSON: AutoRec config fields")
    parser.add_argument("--mf", default="{}", help="JSON: BiasedMF config fields")
    parser.add_argument("--no-mf", action="store_true", help="skip the biased-MF baseline")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    from recsys.models.autorec import AutoRec  # imports TensorFlow

    folds = [int(k) for k in args.folds.split(",")]
    systems: dict[str, Any] = {"autorec": lambda: AutoRec(**json.loads(args.autorec))}
    if not args.no_mf:
        systems["biased_mf"] = lambda: BiasedMF(**json.loads(args.mf))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for k in folds:
        data = load_fold(args.data, k)
        for name, make in systems.items():
            row = {"fold": f"u{k}", **run_fold(make(), data)}
            results[name].append(row)
            print(json.dumps({"system": name, **row}), flush=True)

    hw = hardware()
    print(
        f"\nhardware: {hw['cpu']}, {hw['nproc']} cores; python {hw['python']}; "
        f"tensorflow {hw.get('tensorflow')}, keras {hw.get('keras')}, numpy {hw.get('numpy')}"
    )
    print(f"autorec config: {json.dumps(AutoRec(**json.loads(args.autorec)).config_dict())}")
    print("\n| system | fold | RMSE | MAE | fit s | epochs | fallback rows |")
    print("|---|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name, rows in results.items():
        for row in rows:
            print(
                f"| {name} | {row['fold']} | {row['rmse']:.4f} | {row['mae']:.4f} | "
                f"{row['fit_s']:.1f} | {row['epochs']} | {row['n_fallback']} |"
            )
        mean = {m: float(np.mean([r[m] for r in rows])) for m in ("rmse", "mae", "fit_s")}
        summary[name] = mean
        print(
            f"| **{name}** | mean of {len(rows)} | **{mean['rmse']:.4f}** | "
            f"**{mean['mae']:.4f}** | {mean['fit_s']:.1f} | | |"
        )
    print(f"\nSurprise published 5-fold RMSE: SVD {SURPRISE['svd']}, SVD++ {SURPRISE['svdpp']}")
    if args.out:
        args.out.write_text(
            json.dumps({"hardware": hw, "results": results, "mean": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
