"""Choose a model's update settings (epochs, replay share, learning-rate scale) on a replay of
the first 70 % of MovieLens 100K alone, so that ``bench/replay.py``'s test increments are
never read (issue 19 §2).

The first 45 % train the first model; the next 25 % arrive in 5 validation increments. At
steps 2-5 the chained update of each candidate setting and a full retrain are scored on the
next increment exactly as ``bench/replay.py`` scores them (its ``step_data`` and
``evaluate``); per-user metrics are averaged over the seeds. The chosen setting is the one
with the best worst-step ratio to the full retrain (the target is "at every step").

    .venv/bin/python bench/replay_tune.py --model neumf --seeds 2   # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from replay import ML100K, evaluate, step_data, timeline

from recsys.data.sources.movielens import read_movielens
from recsys.models.registry import model_class
from recsys.models.update import UpdateSettings, update_model

ROOT = Path(__file__).resolve().parents[1]
VALIDATION_SHARE, BASE_SHARE, INCREMENTS = 0.7, 0.45, 5
CANDIDATES: dict[str, tuple[int, float, float]] = {
    "epochs 1, replay 1": (1, 1.0, 1.0),
    "epochs 2, replay 1": (2, 1.0, 1.0),
    "epochs 3, replay 1": (3, 1.0, 1.0),
    "epochs 2, replay 2": (2, 2.0, 1.0),
    "epochs 2, replay 1, lr x0.3": (2, 1.0, 0.3),
    "epochs 4, replay 2, lr x0.5": (4, 2.0, 0.5),
}
"""(epochs, replay, learning-rate scale)."""


def scored(name: str, fields: dict[str, Any], seeds: int) -> dict[str, dict[int, list[Any]]]:
    """Per candidate (and ``full``), per step: the per-user NDCG@10 of each seed."""
    dataset = read_movielens(ML100K)
    rows, _ = timeline(dataset)
    rows = rows.iloc[: round(VALIDATION_SHARE * len(rows))].reset_index(drop=True)
    n = len(rows)
    base = round(BASE_SHARE / VALIDATION_SHARE * n)
    bounds = [base + round(k * (n - base) / INCREMENTS) for k in range(INCREMENTS + 1)]
    out: dict[str, dict[int, list[Any]]] = {c: {} for c in [*CANDIDATES, "full"]}
    for seed in range(seeds):
        own = {**fields, "seed": seed}
        first = step_data(dataset, rows, bounds[0], bounds[1], None)
        model = model_class(name)(**own)
        model.fit(first)
        chains = dict.fromkeys(CANDIDATES, model)
        for k in range(2, INCREMENTS + 1):
            data = step_data(dataset, rows, bounds[k - 1], bounds[k], first.features)
            full = model_class(name)(**own)
            full.fit(data)
            out["full"].setdefault(k, []).append(evaluate(full, data)["ndcg@10"])
            for label, (epochs, replay, lr) in CANDIDATES.items():
                champion = copy.copy(chains[label])  # the learning rate of this update only
                rate = own.get("learning_rate", champion.config.learning_rate) * lr
                champion.config = dataclasses.replace(champion.config, learning_rate=rate)
                settings = UpdateSettings(epochs=epochs, replay=replay, seed=seed)
                updated = update_model(champion, data, settings).model
                updated.config = dataclasses.replace(updated.config, learning_rate=rate / lr)
                chains[label] = updated
                out[label].setdefault(k, []).append(evaluate(updated, data)["ndcg@10"])
            print(json.dumps({"seed": seed, "step": k}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default="neumf")
    ap.add_argument("--params", type=Path, default=ROOT / "bench" / "ml100k-u1-tuned.yaml")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    if not ML100K.is_dir():
        print(f"ML-100K not found at {ML100K} (../shared/datasets/ml-100k)", file=sys.stderr)
        return 2
    fields = dict((yaml.safe_load(args.params.read_text()) or {})["models"][args.model])
    fields["patience"] = 0
    out = scored(args.model, fields, args.seeds)
    full = {k: np.mean(v, axis=0).mean() for k, v in out.pop("full").items()}
    table = {}
    for label, steps in out.items():
        ratios = [float(np.mean(v, axis=0).mean() / full[k]) for k, v in sorted(steps.items())]
        table[label] = {
            "step_ratios": [round(r, 4) for r in ratios],
            "min": round(min(ratios), 4),
            "mean": round(float(np.mean(ratios)), 4),
        }
    best = max(table, key=lambda label: (table[label]["min"], table[label]["mean"]))
    print(json.dumps({"model": args.model, "candidates": table, "chosen": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
