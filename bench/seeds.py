"""Seed variance of the deep models on ml100k-u1, and paired comparisons that account for it.

Runs ``recsys benchmark --protocol topk`` once per seed (every model's ``seed`` set through a
params overlay of ``bench/ml100k-u1.yaml``), then summarizes: NDCG@10 per seed, mean and
standard deviation over seeds, and for each pair asked for, a paired bootstrap over users of
the seed-averaged per-user NDCG@10 (each user's NDCG averaged over the seeds, then the
difference resampled over users), so "A beats B" is judged on more than one training run.

    .venv/bin/python bench/seeds.py --models neumf,content,hybrid,twotower --seeds 1,2,3 \
        --compare hybrid-content,hybrid-neumf

Writes reports/benchmarks/seeds/seed-<s>/ (the benchmark outputs) and summary.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from recsys.evaluation.metrics import bootstrap_ci, topk_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECSYS_SHARED_DIR", ROOT.parent / "shared"))
SPLIT = SHARED / "benchmarks" / "splits" / "ml100k-u1"
ML100K = SHARED / "datasets" / "ml-100k"


def run_seed(seed: int, models: list[str], params: Path, out: Path) -> None:
    """One ``recsys benchmark`` run with every model's seed set to ``seed``."""
    base = yaml.safe_load(params.read_text()) or {}
    overlay = {
        "models": {m: {**(base.get("models", {}).get(m) or {}), "seed": seed} for m in models}
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay_file = out.parent / f"params-seed-{seed}.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay, sort_keys=False))
    cmd = [
        str(ROOT / ".venv" / "bin" / "recsys"),
        "benchmark",
        "--protocol",
        "topk",
        "--params",
        str(overlay_file),
        "--train",
        str(SPLIT / "train.tsv"),
        "--test",
        str(SPLIT / "test.tsv"),
        "--val-train",
        str(SPLIT / "val_train.tsv"),
        "--val-test",
        str(SPLIT / "val_test.tsv"),
        "--items",
        str(ML100K / "u.item"),
        "--users",
        str(ML100K / "u.user"),
        "--models",
        ",".join(models),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True)


def per_user_ndcg(run: Path, model: str, test: pd.DataFrame) -> pd.Series:
    """NDCG@10 per evaluated user, recomputed from ``recommendations.csv`` (PROTOCOL.md)."""
    recs = pd.read_csv(run / model / "recommendations.csv")
    recs = recs[recs["rank"] <= 10].sort_values(["user_id", "rank"])
    users = np.sort(recs["user_id"].unique())
    ranked = np.full((len(users), 10), -1, dtype=np.int64)
    row = np.searchsorted(users, recs["user_id"].to_numpy())
    ranked[row, recs["rank"].to_numpy() - 1] = recs["item_id"].to_numpy()
    relevant = [g.to_numpy() for _, g in test.groupby("user_id")["item_id"]]
    rel_users = np.sort(test["user_id"].unique())
    assert np.array_equal(rel_users, users), "evaluated users differ from the test users"
    return pd.Series(topk_metrics(ranked, relevant, ks=(10,))["ndcg@10"], index=users)


def summarize(
    runs: dict[int, Path], models: list[str], pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    test = pd.read_csv(SPLIT / "test.tsv", sep="\t", names=["user_id", "item_id", "r", "t"])
    ndcg = {m: {s: per_user_ndcg(run, m, test) for s, run in runs.items()} for m in models}
    out: dict[str, Any] = {"seeds": sorted(runs), "models": {}, "pairs": {}}
    for m in models:
        per_seed = [float(ndcg[m][s].mean()) for s in sorted(runs)]
        fit = [
            json.loads((runs[s] / m / "metrics.json").read_text()).get("fit_seconds")
            for s in sorted(runs)
        ]
        out["models"][m] = {
            "ndcg@10_per_seed": [round(v, 4) for v in per_seed],
            "mean": round(float(np.mean(per_seed)), 4),
            "std": round(float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, 4),
            "fit_seconds_per_seed": fit,
        }
    for a, b in pairs:
        mean_a = sum(ndcg[a][s] for s in runs) / len(runs)
        mean_b = sum(ndcg[b][s] for s in runs) / len(runs)
        diff = (mean_a - mean_b).to_numpy()
        low, high = bootstrap_ci(diff, n_boot=10_000, seed=0)
        wins = sum(float(ndcg[a][s].mean()) > float(ndcg[b][s].mean()) for s in runs)
        out["pairs"][f"{a}-{b}"] = {
            "mean_difference": round(float(diff.mean()), 4),
            "ci95": [round(float(low), 4), round(float(high), 4)],
            "seeds_won": f"{wins}/{len(runs)}",
        }
    return out


def markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |",
        "|---|" + "---:|" * (len(seeds) + 1),
    ]
    for m, r in summary["models"].items():
        cells = " | ".join(f"{v:.4f}" for v in r["ndcg@10_per_seed"])
        lines.append(f"| {m} | {cells} | {r['mean']:.4f} ± {r['std']:.4f} |")
    lines += ["", "| pair | mean NDCG@10 difference | 95 % CI (users) | seeds won |"]
    lines.append("|---|---:|---:|---:|")
    for pair, r in summary["pairs"].items():
        low, high = r["ci95"]
        lines.append(
            f"| {pair} | {r['mean_difference']:+.4f} | {low:+.4f} – {high:+.4f} | "
            f"{r['seeds_won']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--models", default="neumf,content,hybrid,twotower")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--compare", default="hybrid-content,hybrid-neumf")
    ap.add_argument("--params", type=Path, default=ROOT / "bench" / "ml100k-u1.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "seeds")
    ap.add_argument("--summary-only", action="store_true", help="reuse existing runs")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    pairs = [tuple(p.split("-", 1)) for p in args.compare.split(",") if p]
    runs = {int(s): args.out / f"seed-{s}" for s in args.seeds.split(",")}
    for seed, run in runs.items():
        if not args.summary_only:
            run_seed(seed, models, args.params, run)
    summary = summarize(runs, models, [(a, b) for a, b in pairs])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
