"""Benchmark ``preprocess()`` per split method and ``save_processed()`` on a large data set.

Target: 1e6 interactions, default config (temporal holdout with validation, k-core 5) in
under 30 s on 2 cores. The data set comes from ``recsys.data.synthetic`` (or, where that module
is missing, a numpy stand-in with Zipf popularity); its generation is timed separately.

    .venv/bin/python bench/bench_preprocess.py [--n-interactions 1000000] [--repeats 1]
        [--methods temporal_holdout,leave_one_out] [--out results.json]

Prints a markdown table with the hardware and library versions; ``--out`` also writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hardware import hardware

from recsys.config import PreprocessConfig, SplitConfig, SyntheticConfig
from recsys.data import preprocess as pp
from recsys.schema import INTERACTION_DTYPES, ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset

METHODS = (
    "temporal_holdout",
    "random_holdout",
    "global_temporal",
    "leave_one_out",
    "predefined",
    "kfold",
)


def make_dataset(n: int, seed: int) -> tuple[Dataset, str]:
    """The benchmark data set and where it came from."""
    try:
        from recsys.data.synthetic import generate
    except ImportError:
        return numpy_dataset(n, seed), "numpy stand-in (bench/bench_preprocess.py)"
    return generate(SyntheticConfig(n_interactions=n, seed=seed)), "recsys.data.synthetic"


def numpy_dataset(n: int, seed: int) -> Dataset:
    """About n/50 users and n/100 items, Zipf popularity and activity; repeated pairs kept."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 50, 10), max(n // 100, 10)
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.5
    item_p = 1.0 / np.arange(1, n_items + 1)
    users = rng.choice(n_users, n, p=user_p / user_p.sum()) + 1
    items = rng.permutation(n_items)[rng.choice(n_items, n, p=item_p / item_p.sum())] + 1
    interactions = pd.DataFrame(
        {
            USER_ID: users,
            ITEM_ID: items,
            RATING: rng.integers(1, 6, n).astype(float),
            TIMESTAMP: rng.integers(1_420_070_400, 1_577_836_800, n),
        }
    ).astype(INTERACTION_DTYPES)
    ids = np.arange(1, n_items + 1)
    genres = np.array(["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"])
    items_table = pd.DataFrame(
        {
            ITEM_ID: ids,
            "title": [f"Title {k % 997} Word{k % 31} ({1950 + k % 70})" for k in ids],
            "genres": [f"{genres[k % 6]}|{genres[(k // 6) % 6]}" for k in ids],
        }
    )
    uid = np.arange(1, n_users + 1)
    users_table = pd.DataFrame(
        {
            USER_ID: uid,
            "age": rng.integers(10, 70, n_users),
            "gender": rng.choice(["F", "M"], n_users),
            "occupation": rng.choice(["artist", "doctor", "student", "writer"], n_users),
        }
    )
    return Dataset(interactions, items_table, users_table, name="numpy-bench")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """(result of the last call, best wall-clock seconds over ``repeats`` calls)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def stage_breakdown(ds: Dataset, cfg: PreprocessConfig) -> dict[str, float]:
    """Seconds per stage of the default pipeline, run step by step."""
    out: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    df = ds.interactions.astype(INTERACTION_DTYPES)
    df, _ = pp.deduplicate(df, ds.feedback)
    lap("deduplicate")
    df = pp.kcore(df, cfg.min_user_interactions, cfg.min_item_interactions)
    lap("kcore")
    vocab = pp.Vocabulary.build(df, ds.items, ds.users)
    indexed = pp.index_interactions(df, vocab)
    lap("vocabulary + index")
    pp.build_features(vocab, ds.items, ds.users, cfg)
    lap("features")
    pp.split_interactions(indexed, cfg.split)
    lap(f"split ({cfg.split.method})")
    return out


def directory_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-interactions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per method")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ds, source = make_dataset(args.n_interactions, args.seed)
    gen_s = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    pick = rng.random(len(ds.interactions)) < 0.2
    test_pairs = ds.interactions.loc[pick, [USER_ID, ITEM_ID]]

    rows = []
    for method in args.methods.split(","):
        cfg = PreprocessConfig(split=SplitConfig(method=method))  # type: ignore[arg-type]
        pairs = test_pairs if method == "predefined" else None
        run = functools.partial(pp.preprocess, ds, cfg, test_pairs=pairs)
        p, prep_s = timed(run, args.repeats)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "processed"
            _, save_s = timed(functools.partial(pp.save_processed, p, out), args.repeats)
            size = directory_bytes(out)
        info = p.split.info
        rows.append(
            {
                "method": method,
                "preprocess_s": round(prep_s, 3),
                "save_s": round(save_s, 3),
                "rows": p.stats["n_interactions"],
                "train": info["n_train"],
                "val": info["n_val"],
                "test": info["n_test"],
                "folds": len(p.folds),
                "output_mib": round(size / 2**20, 1),
            }
        )
        print(f"{method}: preprocess {prep_s:.2f} s, save {save_s:.2f} s", file=sys.stderr)

    stages = stage_breakdown(ds, PreprocessConfig())
    result = {
        "benchmark": "preprocess",
        "n_interactions": len(ds.interactions),
        "source": source,
        "generate_s": round(gen_s, 2),
        "repeats": args.repeats,
        "hardware": hardware(),
        "results": rows,
        "default_stages_s": {k: round(v, 3) for k, v in stages.items()},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }
    print(render(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def render(result: dict[str, Any]) -> str:
    hw = result["hardware"]
    lines = [
        f"preprocess benchmark: {result['n_interactions']:,} interactions from "
        f"{result['source']} (generated in {result['generate_s']} s); best of "
        f"{result['repeats']}; peak RSS {result['peak_rss_mib']:.0f} MiB",
        "",
        f"Hardware: {hw['cpu']}, nproc {hw['nproc']}, {hw['memory_gib']} GiB; "
        f"Python {hw['python']}, numpy {hw['numpy']}, pandas {hw['pandas']}, "
        f"pyarrow {hw['pyarrow']}",
        "",
        "| split method | preprocess (s) | save (s) | rows | train | val | test | folds | MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['method']} | {r['preprocess_s']:.2f} | {r['save_s']:.2f} | {r['rows']:,} | "
            f"{r['train']:,} | {r['val']:,} | {r['test']:,} | {r['folds']} | "
            f"{r['output_mib']} |"
        )
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in result["default_stages_s"].items())
    lines += ["", f"Default config by stage: {stages}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
