"""Benchmark ``recsys.data.synthetic.generate`` across data-set sizes.

Target: 1e6 interactions in under 10 s on 2 cores; 1e7 within 8 GB of memory. Each size runs
in a fresh child process, so that its peak RSS (``resource.getrusage``) is its own.

    .venv/bin/python bench/bench_synthetic.py [--sizes 1e5,1e6] [--repeat 3] [--workers N]
        [--out results.json]

Prints a markdown table with the hardware and library versions; ``--out`` also writes JSON.
Wall time counts every thread; CPU time is the process's user + system time, which on a busy
shared machine is the steadier number.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hardware import hardware


def run_size(n: int, repeat: int, workers: int | None, seed: int) -> dict[str, Any]:
    """Time ``generate`` for ``n`` interactions (in this process; see ``measure``)."""
    from recsys.config import SyntheticConfig
    from recsys.data.synthetic import generate, resolve_sizes

    cfg = SyntheticConfig(n_interactions=n, seed=seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        ds = generate(cfg, workers=workers)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert len(ds.interactions) == n
        del ds
    n_users, n_items = resolve_sizes(cfg)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "n_interactions": n,
        "n_users": n_users,
        "n_items": n_items,
        "repeat": repeat,
        "workers": workers,
        "wall_s": wall,
        "cpu_s": cpu,
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "median_cpu_s": statistics.median(cpu),
        "interactions_per_s": n / statistics.median(wall),
        "peak_rss_mib": peak_kib / 1024,
        "rss_before_mib": rss_before / 1024,
    }


def measure(n: int, repeat: int, workers: int | None, seed: int) -> dict[str, Any]:
    """``run_size`` in a child process, so that peak RSS belongs to this size alone."""
    cmd = [sys.executable, __file__, "--child", str(n), "--repeat", str(repeat)]
    cmd += ["--seed", str(seed)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"size {n} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def markdown(results: list[dict[str, Any]], hw: dict[str, Any]) -> str:
    lines = [
        "| interactions | users | items | repeat | median s | min s | CPU s | interactions/s "
        "| peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['n_interactions']:,} | {r['n_users']:,} | {r['n_items']:,} | {r['repeat']} "
            f"| {r['median_s']:.2f} | {r['min_s']:.2f} | {r['median_cpu_s']:.2f} "
            f"| {r['interactions_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |"
        )
    lines.append("")
    lines.append(
        f"CPU: {hw['cpu']}, {hw['nproc']} cores, {hw['memory_gib']} GiB; load average "
        f"{hw['load_average']} at the start; Python {hw['python']}, numpy {hw['numpy']}, "
        f"pandas {hw['pandas']}; {hw['platform']}."
    )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size")
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1e5,1e6"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (the largest once)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: all CPUs)")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(run_size(args.child, args.repeat, args.workers, args.seed)))
        return

    hw = hardware()
    results = []
    for n in args.sizes:
        repeat = 1 if n >= 10_000_000 else args.repeat
        results.append(measure(n, repeat, args.workers, args.seed))
        r = results[-1]
        print(f"{n:>12,}: median {r['median_s']:.2f} s", file=sys.stderr, flush=True)
    print(markdown(results, hw))
    if args.out is not None:
        args.out.write_text(json.dumps({"hardware": hw, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
