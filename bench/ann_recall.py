"""ANN recall@10 against exact search on a synthetic two-tower-like catalogue (issue 5, point 2).

    .venv/bin/python bench/ann_recall.py [--n-items 1000000] [--dim 64] [--queries 1000]
        [--ef 64,128,256,512,1024] [--nprobe 8,16,32,64,128] [--indexes hnsw,ivf]
        [--storage float32,float16,int8] [--out reports/benchmarks/serving]

Item vectors imitate a two-tower model's: unit-norm, clustered (``--clusters`` Gaussian
centres, within-cluster noise ``--noise`` per dimension, Zipf-sized clusters so that some
regions are dense); user queries are unit-norm mixtures of two cluster centres plus noise,
like a pooled history. Ground truth is exact inner-product top-10 (``ExactIndex``, the
service's exact path). The ANN indexes are the service's own ``recsys.retrieval.FaissIndex``
with the ``RetrievalConfig`` defaults (HNSW M=32, efConstruction=80; IVF with 4 sqrt(n)
lists), built single-threaded as the service builds them, once per vector storage
(``--storage``: float32 = IVF-Flat / HNSW-Flat, float16 and int8 = faiss scalar quantizers);
the search knob (efSearch, nprobe) is swept on the built index
(``FaissIndex.set_search_params``).

Per setting: recall@10; the share of the exact top-10 among the ANN's top 200 (what the
two-stage service retrieves for re-ranking; HNSW then searches with efSearch >= 200); the
single-query latency through ``FaissIndex.search`` (one query at a time, faiss on one thread,
as a request is served: p50/p99 over the queries); and the smallest knob reaching the target
recall. Build seconds, the bytes of the stored vectors (``FaissIndex.index_bytes``) and the
resident memory the index adds (RSS growth while building) are per index. Writes
``ann_recall.json`` and ``ann_recall.md`` under ``--out``, with the hardware and the load
average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from hardware import hardware

from recsys.config import RetrievalConfig
from recsys.retrieval import ExactIndex, FaissIndex, recall_at_k

K = 10
TARGET = 0.95
RERANK_TOP = 200
"""The service's M: candidates retrieved for re-ranking (``ServingConfig.rerank_top``)."""


def rss_mib() -> float:
    """Resident memory of this process now (not the peak), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def catalogue(
    n_items: int, dim: int, n_queries: int, clusters: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """([n_items, dim] unit item vectors, [n_queries, dim] unit query vectors)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    sizes = 1.0 / np.arange(1, clusters + 1) ** 0.5  # Zipf-ish cluster sizes
    assign = rng.choice(clusters, size=n_items, p=sizes / sizes.sum())
    items = np.empty((n_items, dim), dtype=np.float32)
    for lo in range(0, n_items, 100_000):  # bounded temporaries
        hi = min(lo + 100_000, n_items)
        block = centres[assign[lo:hi]] + noise * rng.standard_normal((hi - lo, dim))
        items[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    pairs = rng.choice(clusters, size=(n_queries, 2), p=sizes / sizes.sum())
    mix = rng.uniform(0.3, 0.7, size=(n_queries, 1)).astype(np.float32)
    queries = mix * centres[pairs[:, 0]] + (1 - mix) * centres[pairs[:, 1]]
    queries += noise * rng.standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return items, queries.astype(np.float32)


def time_queries(index: Any, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Top-K of each query searched alone; (ids [n, K], per-query milliseconds)."""
    ids = np.empty((len(queries), K), dtype=np.int64)
    ms = []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        found, _ = index.search(queries[i : i + 1], K)
        ms.append((time.perf_counter() - t0) * 1e3)
        ids[i] = found[0]
    return ids, ms


def sweep(
    index: FaissIndex, knob: str, values: list[int], queries: np.ndarray, truth: np.ndarray
) -> list[dict[str, Any]]:
    rows = []
    for value in values:
        index.set_search_params(**{knob: value})
        found, ms = time_queries(index, queries)
        candidates, _ = index.search(queries, RERANK_TOP)
        rows.append(
            {
                knob: value,
                "recall_at_10": round(recall_at_k(found, truth), 4),
                "recall_10_in_200": round(recall_at_k(candidates, truth), 4),
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3),
                "qps_one_thread": round(1e3 / float(np.mean(ms)), 1),
            }
        )
        print(f"  {index.kind} {knob}={value}: {rows[-1]}", flush=True)
    return rows


def build(kind: str, items: np.ndarray, cfg: RetrievalConfig) -> tuple[FaissIndex, dict[str, Any]]:
    before = rss_mib()
    t0 = time.perf_counter()
    index = FaissIndex(items, kind, cfg)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    extra = rss_mib() - before
    info = {
        "storage": cfg.storage,
        "build_s": round(seconds, 1),
        "index_rss_mib": round(extra, 1),
        "vectors_mib": round(index.index_bytes / 2**20, 1),
    }
    if kind == "hnsw":
        info.update(hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction)
    else:
        info.update(nlist=int(index.index.nlist))
    print(f"built {kind}/{cfg.storage} in {seconds:.1f} s, +{extra:.0f} MiB RSS", flush=True)
    return index, info


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    hw = result["hardware"]
    lines = [
        f"ANN recall@{K} against exact search: {p['n_items']:,} items, d={p['dim']}, "
        f"{p['queries']} queries ({p['clusters']} clusters, noise {p['noise']}).",
        "",
        f"Hardware: {hw['cpu']}, {hw['nproc']} cores, {hw['memory_gib']} GiB; load average "
        f"before {result['load_before']}, after {result['load_after']}.",
        "",
        f"Exact search (numpy, ExactIndex): p50 {result['exact']['p50_ms']} ms, "
        f"p99 {result['exact']['p99_ms']} ms per query; item vectors "
        f"{result['exact']['vectors_mib']} MiB.",
        "",
        "| index | build s | vectors MiB | +RSS MiB | knob | recall@10 "
        "| exact top-10 in ANN top-200 | p50 ms | p99 ms | q/s (1 thread) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["indexes"].items():
        knob = "ef_search" if name.startswith("hnsw") else "nprobe"
        for row in entry["sweep"]:
            mark = " **" if row[knob] == entry.get("smallest_reaching_target") else ""
            lines.append(
                f"| {name} | {entry['build_s']} | {entry['vectors_mib']} | "
                f"{entry['index_rss_mib']} | "
                f"{knob}={row[knob]}{mark} | {row['recall_at_10']} | {row['recall_10_in_200']} | "
                f"{row['p50_ms']} | "
                f"{row['p99_ms']} | {row['qps_one_thread']} |"
            )
    lines.append("")
    for kind in result["indexes"]:
        entry = result["indexes"][kind]
        lines.append(
            f"- {kind}: smallest setting with recall@10 ≥ {TARGET}: "
            f"{entry.get('smallest_reaching_target')} (service default: {entry['default']})"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-items", type=float, default=1e6)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--ef", default="64,128,256,512,1024")
    ap.add_argument("--nprobe", default="8,16,32,64,128")
    ap.add_argument("--indexes", default="hnsw,ivf")
    ap.add_argument("--storage", default="float32,float16,int8")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/serving"))
    args = ap.parse_args(argv)
    n_items = int(args.n_items)
    load_before = [round(x, 2) for x in os.getloadavg()]
    items, queries = catalogue(
        n_items, args.dim, args.queries, args.clusters, args.noise, args.seed
    )
    exact = ExactIndex(items)
    truth, exact_ms = time_queries(exact, queries[: min(200, len(queries))])
    truth, _ = exact.search(queries, K)  # every query (blocked), the ground truth
    cfg = RetrievalConfig()
    result: dict[str, Any] = {
        "params": {
            "n_items": n_items,
            "dim": args.dim,
            "queries": args.queries,
            "clusters": args.clusters,
            "noise": args.noise,
            "seed": args.seed,
            "k": K,
            "target_recall": TARGET,
        },
        "exact": {
            "p50_ms": round(float(np.percentile(exact_ms, 50)), 2),
            "p99_ms": round(float(np.percentile(exact_ms, 99)), 2),
            "vectors_mib": round(items.nbytes / 2**20, 1),
        },
        "indexes": {},
    }
    import faiss

    faiss.omp_set_num_threads(1)  # one request = one query on one thread
    knobs = {
        "hnsw": ("ef_search", [int(v) for v in args.ef.split(",")], cfg.ef_search),
        "ivf": ("nprobe", [int(v) for v in args.nprobe.split(",")], cfg.nprobe),
    }
    for kind in args.indexes.split(","):
        knob, values, default = knobs[kind]
        for storage in args.storage.split(","):
            index, info = build(kind, items, dataclasses.replace(cfg, storage=storage))
            rows = sweep(index, knob, values, queries, truth)
            reaching = [r[knob] for r in rows if r["recall_at_10"] >= TARGET]
            result["indexes"][f"{kind}/{storage}"] = {
                **info,
                "default": f"{knob}={default}",
                "sweep": rows,
                "smallest_reaching_target": min(reaching) if reaching else None,
            }
            del index
    result["load_before"] = load_before
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["hardware"] = hardware()
    result["command"] = " ".join([".venv/bin/python bench/ann_recall.py", *(argv or sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ann_recall.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (args.out / "ann_recall.md").write_text(text)
    print(text)
    return 0 if all(e["smallest_reaching_target"] for e in result["indexes"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
