"""EASE's fit and lambda search against a plain numpy EASE, side by side on the same data.

The reference is what a practitioner writes from Steck (2019): the Gram matrix ``X^T X`` once
(float64, shared by the grid), one ``np.linalg.inv`` per lambda, ``B = -P / diag(P)``, scores
``X_u B`` with each user's training items set to -inf, top 10 by ``argpartition``, NDCG@10 as
PROTOCOL.md defines it. Ours is ``recsys.models.baselines.tune_ease_lambda`` scored by the
benchmark's own evaluator (``recsys.benchmark.tuning.validation_evaluator``), and ``EASE.fit``
on the full training file. Same files, same grid, same metric: the two NDCG@10 per lambda are
printed next to each other and must agree.

Runs alternate (reference, ours, ours, reference, ...) so that both see the same load on a
shared machine; the medians, the spread and the load average are printed.

    .venv/bin/python bench/ease_cost.py --data ml100k-u1 [--repeat 3]
    .venv/bin/python bench/ease_cost.py --data playcount --repeat 1 --reference-lambdas 1

``--reference-lambdas N`` times the reference on the first N lambdas only (one inverse of a
17k x 17k matrix takes minutes on 2 cores) and extrapolates its search to the whole grid:
``gram + len(grid) x (median seconds per lambda)``; the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from benchmark_cost import split_dir
from hardware import hardware

from recsys.benchmark.config import EASE_L2_GRID, SplitFiles
from recsys.benchmark.splits import SplitData, load_split
from recsys.benchmark.tuning import validation_evaluator
from recsys.data.preprocess import ITEM_IDX, USER_IDX
from recsys.models.baselines import EASE, tune_ease_lambda


# --- the plain reference ------------------------------------------------------------------------
def matrices(split: SplitData) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """(X [users, train items] binary, evaluated users, their test items as (row, col))."""
    train, test = split.data.split.train, split.data.split.test
    items = np.unique(train[ITEM_IDX].to_numpy())
    n_users = split.data.vocab.n_users
    x = sp.csr_matrix(
        (
            np.ones(len(train)),
            (train[USER_IDX].to_numpy(), np.searchsorted(items, train[ITEM_IDX])),
        ),
        shape=(n_users, len(items)),
    )
    x.data[:] = 1.0
    users = np.intersect1d(test[USER_IDX].unique(), train[USER_IDX].unique())
    return x, users, test[USER_IDX].to_numpy(), np.searchsorted(items, test[ITEM_IDX].to_numpy())


def reference_ndcg(
    x: sp.csr_matrix, b: np.ndarray, users: np.ndarray, tu, ti, items_known
) -> float:
    """PROTOCOL.md NDCG@10 of ``B`` for ``users`` (plain numpy)."""
    s = np.asarray(x[users] @ b)
    s[x[users].toarray() > 0] = -np.inf
    top = np.argpartition(-s, 10, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1), 1)
    row = np.searchsorted(users, tu)
    ok = (row < len(users)) & (users[np.minimum(row, len(users) - 1)] == tu)
    n_rel = np.bincount(row[ok], minlength=len(users))
    rel = np.zeros((len(users), b.shape[0] + 1), dtype=bool)
    known = ok & items_known
    rel[row[known], ti[known]] = True
    hits = np.take_along_axis(rel, top, 1)
    disc = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(disc)[np.minimum(n_rel, 10) - 1]
    return float(((hits * disc).sum(1) / ideal).mean())


def reference_solve(gram: np.ndarray, l2: float) -> np.ndarray:
    a = gram.copy()
    a[np.diag_indices_from(a)] += l2
    p = np.linalg.inv(a)
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def reference_search(val: SplitData, grid: list[float], limit: int) -> dict[str, Any]:
    x, users, tu, ti = matrices(val)
    train_items = np.unique(val.data.split.train[ITEM_IDX].to_numpy())
    test_items = val.data.split.test[ITEM_IDX].to_numpy()
    known = np.isin(test_items, train_items)
    ti = np.where(known, ti, len(train_items))  # unseen test items: a column never ranked
    t0 = time.perf_counter()
    gram = (x.T @ x).toarray()
    gram_s = time.perf_counter() - t0
    scores, per_lambda = {}, []
    for l2 in grid[:limit]:
        t = time.perf_counter()
        scores[l2] = reference_ndcg(x, reference_solve(gram, l2), users, tu, ti, known)
        per_lambda.append(time.perf_counter() - t)
    seconds = gram_s + sum(per_lambda)
    if limit < len(grid):
        seconds = gram_s + len(grid) * statistics.median(per_lambda)
    return {"seconds": seconds, "extrapolated": limit < len(grid), "scores": scores}


def reference_fit(split: SplitData) -> float:
    t0 = time.perf_counter()
    x = matrices(split)[0]
    reference_solve((x.T @ x).toarray(), 500.0)
    return time.perf_counter() - t0


# --- ours ---------------------------------------------------------------------------------------
def our_search(val: SplitData, grid: list[float]) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = tune_ease_lambda(val.data, val.data.split, grid, validation_evaluator("topk", val))
    return {"seconds": time.perf_counter() - t0, "scores": result.scores, "best": result.best_l2}


def our_fit(split: SplitData) -> float:
    return float(EASE(l2=500.0).fit(split.fit_data()).fit_seconds or 0.0)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s [{min(values):.2f}, {max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml100k-u1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-lambdas", type=int, default=0, help="0: the whole grid")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    grid = sorted(EASE_L2_GRID)
    limit = args.reference_lambdas or len(grid)
    with tempfile.TemporaryDirectory() as scratch:
        folder = split_dir(args.data, Path(scratch))[0]
        split = load_split(SplitFiles(folder / "train.tsv", folder / "test.tsv"))
        val = load_split(
            SplitFiles(folder / "val_train.tsv", folder / "val_test.tsv"), prefix="val-"
        )
    runs: dict[str, list[float]] = {
        "ref_search": [],
        "our_search": [],
        "ref_fit": [],
        "our_fit": [],
    }
    loads, scores = [os.getloadavg()], {}
    for rep in range(args.repeat):
        order = ("ref", "our") if rep % 2 == 0 else ("our", "ref")
        for who in order:
            if who == "ref":
                got = reference_search(val, grid, limit)
                runs["ref_search"].append(got["seconds"])
                runs["ref_fit"].append(reference_fit(split))
                scores["reference"] = got["scores"]
            else:
                got = our_search(val, grid)
                runs["our_search"].append(got["seconds"])
                runs["our_fit"].append(our_fit(split))
                scores["ours"] = got["scores"]
            loads.append(os.getloadavg())
    ratio_search = statistics.median(runs["our_search"]) / statistics.median(runs["ref_search"])
    ratio_fit = statistics.median(runs["our_fit"]) / statistics.median(runs["ref_fit"])
    x = matrices(val)[0]
    print(f"{args.data}: val X {x.shape[0]} users x {x.shape[1]} items, grid {grid}")
    if limit < len(grid):
        print(f"reference search extrapolated from its first {limit} lambda(s)")
    print("| | reference (plain numpy) | ours | ours / reference |")
    print("|---|---:|---:|---:|")
    print(f"| lambda search | {summary(runs['ref_search'])} | {summary(runs['our_search'])} "
          f"| {ratio_search:.2f} |")  # fmt: skip
    print(f"| fit (lambda 500, train) | {summary(runs['ref_fit'])} | {summary(runs['our_fit'])} "
          f"| {ratio_fit:.2f} |")  # fmt: skip
    print("NDCG@10 per lambda (reference / ours):")
    for l2 in grid:
        ref = scores["reference"].get(l2)
        print(f"  {l2:g}: {'-' if ref is None else f'{ref:.4f}'} / {scores['ours'][l2]:.4f}")
    print(f"load averages during the runs: {[tuple(round(v, 2) for v in la) for la in loads]}")
    print(f"hardware: {json.dumps(hardware())}")
    if args.out:
        named = {who: {str(l2): v for l2, v in got.items()} for who, got in scores.items()}
        record = {"data": args.data, "runs": runs, "loads": loads, "scores": named}
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
