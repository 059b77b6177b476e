"""What float16 / int8 storage of the item vectors costs in quality (issue 5, point 6).

    .venv/bin/python bench/quantization.py [--split ../shared/benchmarks/splits/ml100k-u1]
        [--out reports/benchmarks/serving]

Trains the two-tower model on ``ml100k-u1`` as ``recsys benchmark --models twotower`` does
(its epochs tuned on the validation files only), then answers PROTOCOL.md's full-ranking
protocol for the test users through the service's retrieval code
(``recsys.retrieval.FaissIndex``) with the item vectors stored as float32, float16 and int8
(``RetrievalConfig.storage``). IVF probes every list (nprobe = nlist), so the storage is the
only difference from exact search. Two ways of answering, as the service does:

- **retrieval**: the top 10 by the stored codes' inner products (what ``/similar_items`` and
  ``/recommend_recent`` return; the worst case);
- **two-stage**: the top 200 by the codes, re-scored by the float32 model
  (``two_stage_recommend``: what ``/recommend`` returns with the two-tower as champion).

Per storage: NDCG@10 with its bootstrap CI, the change against float32 (relative, and a paired
bootstrap CI over users), the bytes of the stored vectors. The 1e6-item recall and latency per
storage are ``bench/ann_recall.py --storage ...``. Writes ``quantization.json`` and
``quantization.md`` under ``--out``; recommendations are not written (MovieLens licence).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast, get_args

import numpy as np
from hardware import hardware

from recsys import benchmark as B
from recsys.config import RetrievalConfig, Storage
from recsys.evaluation.evaluate import evaluate_topk
from recsys.models import registry
from recsys.models.base import Recommender
from recsys.models.twostage import TwoStage
from recsys.retrieval import FaissIndex

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STORAGES = get_args(Storage)
RERANK_TOP = 200
N_BOOT = 1000


class StoredVectors:
    """The two-tower model answering through an index of its stored item vectors; duck-typed
    for ``evaluate_topk`` (which calls ``recommend(users, k, exclude_seen, candidates)``)."""

    def __init__(self, model: Any, index: FaissIndex, two_stage: bool) -> None:
        self.model, self.index, self.two_stage = model, index, two_stage
        # The served two-stage model over the same IVF settings (every list probed).
        retrieval = RetrievalConfig(kind="ivf", storage=index.storage, nprobe=10**6)
        self.served = TwoStage.compose(model, model, rerank_top=RERANK_TOP, retrieval=retrieval)

    def recommend(
        self,
        user_ids: np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = None
        if candidates is not None:
            allowed = np.zeros(len(self.model.item_ids), dtype=bool)
            allowed[self.model.encode_items(candidates)] = True
        if self.two_stage:
            return self.served.recommend(user_ids, k, exclude_seen=exclude_seen, allowed=allowed)
        users = np.asarray(user_ids, dtype=np.int64)
        queries = self.model.user_embeddings(self.model.encode_users(users))
        exclude = [self.model.seen_item_indices(int(u)) for u in users] if exclude_seen else None
        found, scores = self.index.search(queries, k, exclude=exclude, allowed=allowed)
        ids = np.where(found >= 0, self.model.item_ids[np.maximum(found, 0)], -1)
        return ids, scores


def paired_ci(diff: np.ndarray, seed: int = 0) -> list[float]:
    """95 % bootstrap CI of the mean of per-user differences."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (N_BOOT, len(diff)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 5), round(float(np.percentile(means, 97.5)), 5)]


def train_twotower(split_dir: Path) -> tuple[Any, B.SplitData, dict[str, Any]]:
    items, users = B.read_side_tables(
        SHARED / "datasets/ml-100k/u.item", SHARED / "datasets/ml-100k/u.user"
    )
    split = B.load_split(
        B.SplitFiles(split_dir / "train.tsv", split_dir / "test.tsv"), items=items, users=users
    )
    val = B.load_split(
        B.SplitFiles(split_dir / "val_train.tsv", split_dir / "val_test.tsv"),
        items=items,
        users=users,
        prefix="val-",
    )
    cls = registry.model_class("twotower")
    tuning = B.tune_model(cls, {}, val, "topk")
    chosen = tuning.chosen if tuning is not None else {}
    model = cls(**chosen)
    data = split.fit_data()
    t0 = time.perf_counter()
    model.fit(data, data.split)
    return model, split, {"chosen": chosen, "fit_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", type=Path, default=SHARED / "benchmarks/splits/ml100k-u1")
    ap.add_argument("--out", type=Path, default=REPO / "reports/benchmarks/serving")
    args = ap.parse_args(argv)
    if not (args.split / "train.tsv").is_file():
        print(f"no split at {args.split}: needs ../shared (MovieLens is not in this repo)")
        return 2
    load_before = [round(x, 2) for x in os.getloadavg()]
    model, split, training = train_twotower(args.split)
    vectors = model.item_embeddings()
    rows: dict[str, dict[str, Any]] = {}
    per_user: dict[tuple[str, str], np.ndarray] = {}
    for storage in STORAGES:
        cfg = RetrievalConfig(kind="ivf", storage=storage)  # type: ignore[arg-type]
        index = FaissIndex(vectors, "ivf", cfg)
        index.set_search_params(nprobe=int(index.index.nlist))  # every list: storage only
        for mode in ("retrieval", "two-stage"):
            answer = StoredVectors(model, index, two_stage=mode == "two-stage")
            result = evaluate_topk(
                cast(Recommender, answer), split.train, split.test, (10,), n_boot=N_BOOT
            )
            per_user[storage, mode] = result.per_user["ndcg@10"]
            rows[f"{mode}/{storage}"] = {
                "mode": mode,
                "storage": storage,
                "vectors_bytes": index.index_bytes,
                "ndcg@10": round(result.metrics["ndcg@10"], 5),
                "ci": [round(x, 5) for x in result.ci["ndcg@10"]],
            }
    for row in rows.values():
        diff = per_user[row["storage"], row["mode"]] - per_user["float32", row["mode"]]
        base = float(per_user["float32", row["mode"]].mean())
        row["change"] = round(float(diff.mean()), 5)
        row["change_pct"] = round(100 * float(diff.mean()) / base, 3)
        row["change_ci"] = paired_ci(diff)
        row["users_changed"] = int((diff != 0).sum())
    result_json = {
        "split": str(args.split),
        "model": "twotower",
        "training": training,
        "n_items": len(vectors),
        "dim": int(vectors.shape[1]),
        "users": len(next(iter(per_user.values()))),
        "rows": rows,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "hardware": hardware(),
        "command": " ".join([".venv/bin/python bench/quantization.py", *(argv or sys.argv[1:])]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantization.json").write_text(json.dumps(result_json, indent=2))
    lines = [
        f"Two-tower on {args.split.name}: {result_json['n_items']} items, "
        f"d={result_json['dim']}, {result_json['users']} test users; "
        f"load {load_before} -> {result_json['load_after']}.",
        "",
        "| answer | storage | vectors KiB | NDCG@10 (95 % CI) | change | change % "
        "| paired CI | users changed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        lines.append(
            f"| {row['mode']} | {row['storage']} | {row['vectors_bytes'] / 1024:.0f} | "
            f"{row['ndcg@10']:.4f} ({row['ci'][0]:.4f}-{row['ci'][1]:.4f}) | "
            f"{row['change']:+.5f} | {row['change_pct']:+.2f} | "
            f"{row['change_ci'][0]:+.4f} - {row['change_ci'][1]:+.4f} | {row['users_changed']} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "quantization.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
