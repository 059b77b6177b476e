"""The replay benchmark (issue 19 §2): incremental updates against full retraining over time.

MovieLens 100K in time order (timestamp, then file order): the first 70 % train the first
model, the remaining 30 % arrive in 6 equal increments. Before increment k is absorbed, three
models are scored on it (prequential: the next increment is the test):

- ``incremental``: the model of step k-1 updated with increment k-1 by
  ``recsys.models.update.update_model`` (warm start for Keras models, fold-in or refit for
  the classic ones), chained from step to step as a live service would run it;
- ``full``: a model of the same settings trained from scratch on everything up to k-1;
- ``none``: the first model, never updated.

At step 1 the three are the same model. Scoring (full ranking, PROTOCOL.md's NDCG@10 and
Recall@10): the users of increment k with at least one earlier interaction, each ranked over
every item seen so far, their earlier items excluded; a user the model does not know (only
``none`` has such users) gets its popularity ranking, an item it does not know is never
ranked. The side tables hold the users and items seen so far (so the vocabularies grow), the
content features keep the first model's encodings (as an update does).

Each variant runs with ``--seeds`` model seeds (default 3) and its per-user metrics are
averaged over them (the steps score only 29 to 83 users each, so one seed's ratio moves by
several per cent from training noise alone); each step reports the incremental/full NDCG@10
ratio with a paired bootstrap 95 % CI over users.

Compute per step: wall and CPU seconds (``time.process_time``: every thread of the process) of
the update and of the full fit; evaluation is excluded.

    .venv/bin/python bench/replay.py [--models neumf,twotower,ease] [--epochs 2] [--seeds 3]

Settings: ``bench/ml100k-u1-tuned.yaml``: the models' (chosen on ml100k-u1's validation
files) and the updates' (its ``update`` section: chosen on a replay of the first 70 % alone,
``bench/replay_tune.py``); writes
reports/benchmarks/replay.json and replay.png, one JSON line per step to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import yaml
from hardware import hardware

from recsys.config import PreprocessConfig, SplitConfig, load_params
from recsys.data.preprocess import ContentFeatures, Processed, preprocess
from recsys.data.sources.movielens import read_movielens
from recsys.evaluation.metrics import topk_metrics
from recsys.models.base import Recommender
from recsys.models.keras_base import KerasRecommender
from recsys.models.ranking import top_k
from recsys.models.registry import model_class
from recsys.models.update import UpdateSettings, update_model
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID, Dataset

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "datasets" / "ml-100k"
BASE_SHARE, INCREMENTS, K = 0.7, 6, 10
METRICS = ("ndcg@10", "recall@10")
N_BOOT = 2000
CFG = PreprocessConfig(
    min_user_interactions=1,
    min_item_interactions=1,
    split=SplitConfig(method="predefined", val_fraction=0.0, seed=0),
)


def timeline(dataset: Dataset) -> tuple[pd.DataFrame, list[int]]:
    """The interactions in time order and the row where each increment starts (and the end)."""
    rows = dataset.interactions.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    n = len(rows)
    base = round(BASE_SHARE * n)
    return rows, [base + round(k * (n - base) / INCREMENTS) for k in range(INCREMENTS + 1)]


def step_data(
    dataset: Dataset, rows: pd.DataFrame, start: int, end: int, like: ContentFeatures | None
) -> Processed:
    """Rows ``[0, start)`` to train on and ``[start, end)`` as the test split; side tables
    restricted to the ids seen so far."""
    seen = rows.iloc[:end]
    assert dataset.items is not None and dataset.users is not None
    step = dataclasses.replace(
        dataset,
        interactions=seen,
        items=dataset.items[dataset.items[ITEM_ID].isin(seen[ITEM_ID])],
        users=dataset.users[dataset.users[USER_ID].isin(seen[USER_ID])],
    )
    return preprocess(step, CFG, test_pairs=rows.iloc[start:end], features_like=like)


def evaluate(model: Recommender, data: Processed) -> dict[str, np.ndarray]:
    """Per-user NDCG@10 and Recall@10 on ``data``'s test rows (module docstring), users in
    id order."""
    train, test = data.split.train, data.split.test
    users = np.intersect1d(test[USER_ID].unique(), train[USER_ID].unique())
    catalogue = np.sort(train[ITEM_ID].unique())
    known_items = model.known_items(catalogue)
    items = catalogue[known_items]
    scores = np.full((len(users), len(catalogue)), -np.inf, dtype=np.float32)
    known = model.known_users(users)
    if known.any():
        u = users[known]
        block = model.score(np.repeat(u, len(items)), np.tile(items, len(u)))
        scores[np.ix_(np.flatnonzero(known), np.flatnonzero(known_items))] = block.reshape(
            len(u), len(items)
        )
    if (~known).any():  # the popularity ranking of a model that does not know the user
        popularity = model.item_popularity()[model.encode_items(items)]
        scores[np.ix_(np.flatnonzero(~known), np.flatnonzero(known_items))] = popularity
    history = train[train[USER_ID].isin(users)]
    rows = np.searchsorted(users, history[USER_ID].to_numpy())
    cols = np.searchsorted(catalogue, history[ITEM_ID].to_numpy())
    scores[rows, cols] = -np.inf
    top = top_k(scores, K)
    ranked = np.where(np.isfinite(np.take_along_axis(scores, top, 1)), catalogue[top], -1)
    relevant = test[test[USER_ID].isin(users)].groupby(USER_ID)[ITEM_ID].apply(np.asarray)
    metrics = topk_metrics(ranked, [relevant[u] for u in users], ks=(K,))
    return {name: metrics[name] for name in METRICS}


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    cost = {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
    }
    return out, cost


def chain(
    name: str, fields: dict[str, Any], settings: UpdateSettings, seed: int
) -> list[dict[str, Any]]:
    """One seed's run over every step: costs and per-user metrics of the three variants."""
    dataset = read_movielens(ML100K)
    rows, bounds = timeline(dataset)
    if issubclass(model_class(name), KerasRecommender):
        fields = {**fields, "seed": seed}  # the closed-form models have no seed
    settings = dataclasses.replace(settings, seed=seed)
    base_data = step_data(dataset, rows, bounds[0], bounds[1], None)
    base = model_class(name)(**fields)
    _, base_cost = timed(lambda: base.fit(base_data))
    incremental, out = base, []
    for k in range(1, INCREMENTS + 1):
        data = step_data(dataset, rows, bounds[k - 1], bounds[k], base_data.features)
        record: dict[str, Any] = {"step": k, "train_rows": len(data.split.train)}
        if k == 1:
            record.update(full_cost=base_cost, update_cost=None, method=None)
            full = base
        else:
            updated, record["update_cost"] = timed(
                lambda m=incremental, d=data: update_model(m, d, settings)
            )
            incremental = updated.model
            record["method"] = updated.method
            record["batch_rows"], record["replay_rows"] = updated.batch_rows, updated.replay_rows
            full = model_class(name)(**fields)
            _, record["full_cost"] = timed(lambda m=full, d=data: m.fit(d))
        for variant, model in (("incremental", incremental), ("full", full), ("none", base)):
            record[variant] = evaluate(model, data)
        out.append(record)
    return out


def run(
    name: str, fields: dict[str, Any], settings: UpdateSettings, seeds: int
) -> list[dict[str, Any]]:
    """Every step of ``name`` over ``seeds`` seeds: per-user metrics averaged over the seeds,
    costs summed per seed and averaged, and the paired bootstrap 95 % CI of the incremental
    over full NDCG@10 ratio (users resampled)."""
    runs = [chain(name, fields, settings, seed) for seed in range(seeds)]
    out = []
    rng = np.random.default_rng(0)
    for steps in zip(*runs, strict=True):
        first = steps[0]
        record: dict[str, Any] = {
            "model": name,
            **{k: first[k] for k in ("step", "train_rows", "method")},
            **{k: first.get(k) for k in ("batch_rows", "replay_rows")},
        }
        for cost in ("update_cost", "full_cost"):
            record[cost] = (
                None
                if first[cost] is None
                else {
                    key: round(float(np.mean([s[cost][key] for s in steps])), 2)
                    for key in ("wall_s", "cpu_s")
                }
            )
        per_user = {}
        for variant in ("incremental", "full", "none"):
            per_user[variant] = {
                m: np.mean([s[variant][m] for s in steps], axis=0) for m in METRICS
            }
            record[variant] = {
                "users": len(per_user[variant]["ndcg@10"]),
                **{m: round(float(v.mean()), 4) for m, v in per_user[variant].items()},
            }
        inc, full = per_user["incremental"]["ndcg@10"], per_user["full"]["ndcg@10"]
        draws = rng.integers(0, len(inc), (N_BOOT, len(inc)))
        ratios = inc[draws].mean(1) / np.maximum(full[draws].mean(1), 1e-12)
        record["ndcg_ratio"] = round(float(inc.mean() / full.mean()), 4)
        record["ndcg_ratio_ci"] = [round(float(q), 4) for q in np.quantile(ratios, [0.025, 0.975])]
        print(json.dumps(record), flush=True)
        out.append(record)
    return out


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: the worst step's incremental/full NDCG@10 ratio and the compute share."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["model"] for r in records):
        steps = [r for r in records if r["model"] == name and r["update_cost"]]
        ratios = [r["ndcg_ratio"] for r in steps]
        cpu = [r["update_cost"]["cpu_s"] / r["full_cost"]["cpu_s"] for r in steps]
        pooled = [
            sum(r[v]["ndcg@10"] * r[v]["users"] for r in steps) for v in ("incremental", "full")
        ]
        out[name] = {
            "min_ndcg_ratio": round(min(ratios), 4),
            "pooled_ndcg_ratio": round(pooled[0] / pooled[1], 4),
            "max_cpu_share": round(max(cpu), 4),
            "meets_target": min(ratios) >= 0.98 and max(cpu) <= 0.10,
        }
    return out


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["model"] for r in records))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        steps = [r for r in records if r["model"] == name]
        x = [r["step"] for r in steps]
        for variant, style in (("full", "o-"), ("incremental", "s--"), ("none", "x:")):
            ax.plot(x, [r[variant]["ndcg@10"] for r in steps], style, label=variant)
        ax.set_title(name)
        ax.set_xlabel("increment scored (prequential)")
        ax.set_ylabel("NDCG@10")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", default="neumf,twotower,ease")
    ap.add_argument("--params", type=Path, default=ROOT / "bench" / "ml100k-u1-tuned.yaml")
    ap.add_argument("--epochs", type=int, help="every model's update epochs (default: --params)")
    ap.add_argument("--replay", type=float, help="every model's replay share (default: --params)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds averaged per step")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="no run: combine the steps of earlier replay.json files (the last file's hardware "
        "and settings) into one replay.json and plot",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks")
    args = ap.parse_args(argv)
    if args.merge:
        runs = [json.loads(path.read_text()) for path in args.merge]
        records = [r for run in runs for r in run["steps"]]
        merged = {**runs[-1], "steps": records, "summary": summary(records)}
        merged["merged_from"] = [str(p) for p in args.merge]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "replay.json").write_text(json.dumps(merged, indent=2))
        plot(records, args.out / "replay.png")
        print(json.dumps(merged["summary"]))
        return 0
    if not ML100K.is_dir():
        print(f"ML-100K not found at {ML100K} (../shared/datasets/ml-100k)", file=sys.stderr)
        return 2
    params = (yaml.safe_load(args.params.read_text()) or {}).get("models", {})
    update = load_params(args.params, partial=True).update
    records, settings = [], {}
    for name in args.models.split(","):
        fields = dict(params.get(name) or {})
        if issubclass(model_class(name), KerasRecommender):
            fields["patience"] = 0  # no validation rows: the configured epochs
        epochs, replay = update.for_model(name)
        chosen = UpdateSettings(
            epochs=epochs if args.epochs is None else args.epochs,
            replay=replay if args.replay is None else args.replay,
        )
        settings[name] = dataclasses.asdict(chosen)
        records += run(name, fields, chosen, args.seeds)
    result = {
        "settings": {"update": settings, "seeds": args.seeds},
        "hardware": hardware(),
        "steps": records,
        "summary": summary(records),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay.json").write_text(json.dumps(result, indent=2))
    plot(records, args.out / "replay.png")
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
