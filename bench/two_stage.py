"""What the service answers against what its ranker would answer alone (issue 16, part 1).

    .venv/bin/python bench/two_stage.py [--split ../shared/benchmarks/splits/ml100k-u1]
        [--out reports/benchmarks/two_stage]

Trains on ``ml100k-u1`` as ``recsys benchmark`` does (settings of ``bench/ml100k-u1.yaml``,
EASE's lambda, the two-tower's epochs and the ensemble's weights tuned on the validation
files only), then scores PROTOCOL.md's full-ranking protocol on ``test.tsv`` for each
champion candidate (EASE, two-tower, the EASE + two-tower ensemble):

- **full**: the ranker scoring every item (``Recommender.recommend``);
- **served**: the two-stage model the pipeline gates and the bento serves
  (``recsys.models.twostage.TwoStage``: the two-tower retrieves M candidates, the ranker ranks
  them), with the index the service builds by default for this catalogue (exact below 100k
  items) and, to see what an ANN index costs, IVF (float16, nprobe 32) and HNSW forced;
- **recall@M**: the index's recall of the exact top M (the retrieval's loss before ranking).

Per row: NDCG@10 with its bootstrap CI, the paired change against the full ranking with its CI
and the share of users whose top 10 changed. Writes ``two_stage.json`` and ``two_stage.md``
under ``--out``; recommendations are not written (MovieLens licence).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hardware import hardware

from recsys import benchmark as B
from recsys.config import RetrievalConfig
from recsys.evaluation.evaluate import evaluate_topk
from recsys.evaluation.metrics import paired_bootstrap
from recsys.models import registry
from recsys.models.base import Recommender
from recsys.models.twostage import TwoStage

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
N_BOOT = 1000
RANKERS = ("ease", "twotower", "ensemble")
INDEXES = {
    "default (exact)": RetrievalConfig(),
    "ivf float16": RetrievalConfig(kind="ivf", storage="float16"),
    "hnsw float16": RetrievalConfig(kind="hnsw", storage="float16"),
}
MS = (50, 100, 200)


def fit(
    name: str, settings: dict[str, Any], split: B.SplitData, val: B.SplitData
) -> tuple[Recommender, dict[str, Any]]:
    """``name`` fitted on the training file, its tunables chosen on the validation files."""
    cls = registry.model_class(name)
    tuning = B.tune_model(cls, settings, val, "topk")
    fields = {**settings, **(tuning.chosen if tuning is not None else {})}
    model = cls(**fields)
    data = split.fit_data()
    start = time.perf_counter()
    model.fit(data, data.split)
    return model, {"fields": fields, "fit_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", type=Path, default=SHARED / "benchmarks/splits/ml100k-u1")
    ap.add_argument("--params", type=Path, default=REPO / "bench/ml100k-u1.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "reports/benchmarks/two_stage")
    args = ap.parse_args(argv)
    if not (args.split / "train.tsv").is_file():
        print(f"no split at {args.split}: needs ../shared (MovieLens is not in this repo)")
        return 2
    load_before = [round(x, 2) for x in os.getloadavg()]
    items, users = B.read_side_tables(
        SHARED / "datasets/ml-100k/u.item", SHARED / "datasets/ml-100k/u.user"
    )
    files = B.SplitFiles(args.split / "train.tsv", args.split / "test.tsv")
    split = B.load_split(files, items=items, users=users)
    val_files = B.SplitFiles(args.split / "val_train.tsv", args.split / "val_test.tsv")
    val = B.load_split(val_files, items=items, users=users, prefix="val-")
    settings = B.load_model_params(args.params)

    models: dict[str, Recommender] = {}
    training: dict[str, Any] = {}
    for name in RANKERS:
        models[name], training[name] = fit(name, dict(settings.get(name, {})), split, val)
    retriever = models["twotower"]

    def scored(model: Recommender) -> Any:
        return evaluate_topk(model, split.train, split.test, (10,), n_boot=N_BOOT)

    rows: list[dict[str, Any]] = []
    n_users = 0
    for name in RANKERS:
        ranker = models[name]
        full = scored(ranker)
        full_ids, _ = ranker.recommend(full.user_ids, 10)
        n_users = len(full.user_ids)
        rows.append(_row(name, "full (every item)", None, None, full, full, None, None))
        for index_name, retrieval in INDEXES.items():
            for m in MS if index_name.startswith("default") else (200,):
                served = TwoStage.compose(ranker, retriever, rerank_top=m, retrieval=retrieval)
                result = scored(served)
                ids, _ = served.recommend(full.user_ids, 10)
                changed = float((ids != full_ids).any(axis=1).mean())
                recall = served.retrieval_recall(full.user_ids)
                row = _row(name, index_name, m, served.index.kind, result, full, recall, changed)
                rows.append(row)
                print(json.dumps(row), flush=True)

    report = {
        "split": str(args.split),
        "n_items": len(retriever.item_ids),
        "users": n_users,
        "training": training,
        "rows": rows,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "hardware": hardware(),
        "command": " ".join([".venv/bin/python bench/two_stage.py", *(argv or sys.argv[1:])]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "two_stage.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "two_stage.md").write_text(text)
    print(text)
    return 0


def _row(
    ranker: str,
    answer: str,
    m: int | None,
    index: str | None,
    result: Any,
    full: Any,
    recall: float | None,
    changed: float | None,
) -> dict[str, Any]:
    value = float(result.metrics["ndcg@10"])
    row: dict[str, Any] = {
        "ranker": ranker,
        "answer": answer,
        "M": m,
        "index": index,
        "ndcg@10": round(value, 5),
        "ci": [round(float(x), 5) for x in result.ci["ndcg@10"]],
        "recall@M": recall,
        "users_changed": None if changed is None else round(changed, 4),
    }
    if m is not None:
        a, b = result.per_user["ndcg@10"], full.per_user["ndcg@10"]
        paired = paired_bootstrap(a, b, n_boot=N_BOOT)
        row["change"] = round(value - float(full.metrics["ndcg@10"]), 5)
        row["change_ci"] = [round(float(x), 5) for x in paired.ci]
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"ml100k-u1 ({report['n_items']} items), PROTOCOL.md full ranking on test.tsv; "
        f"retriever: the two-tower model; load {report['load_before']} -> "
        f"{report['load_after']}.",
        "",
        "| ranker | answer | M | index | NDCG@10 (95 % CI) | change vs full (paired CI) "
        "| recall@M | users' top 10 changed |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        change = (
            "—"
            if r["M"] is None
            else f"{r['change']:+.4f} ({r['change_ci'][0]:+.4f} to {r['change_ci'][1]:+.4f})"
        )
        recall = "—" if r["recall@M"] is None else f"{r['recall@M']:.4f}"
        changed = "—" if r["users_changed"] is None else f"{100 * r['users_changed']:.1f} %"
        lines.append(
            f"| {r['ranker']} | {r['answer']} | {r['M'] or '—'} | {r['index'] or '—'} | "
            f"{r['ndcg@10']:.4f} ({r['ci'][0]:.4f}-{r['ci'][1]:.4f}) | {change} | "
            f"{recall} | {changed} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
