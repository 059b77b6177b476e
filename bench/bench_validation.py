"""Benchmark the ``prepare`` stage: validation (GX suites), profile, report and atomic save.

    .venv/bin/python bench/bench_validation.py [--n-interactions 1000000] [--repeats 3]
        [--out results.json]

Generates the synthetic data set once, then times each step of ``recsys data prepare`` on it
(best of ``--repeats``); the GX import is timed separately, once. Prints a markdown table with
the hardware; ``--out`` also writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hardware import hardware

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def best_of(repeats: int, fn: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def run(n: int, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    import great_expectations  # noqa: F401  (the import is a fixed cost of every run)

    import_s = time.perf_counter() - t0
    from recsys.config import SyntheticConfig, ValidationConfig
    from recsys.data import io, validation
    from recsys.data.synthetic import generate

    generate_s, dataset = best_of(1, lambda: generate(SyntheticConfig(n_interactions=n)))
    cfg = ValidationConfig(min_interactions_per_user=5)
    validate_s, report = best_of(repeats, lambda: validation.validate(dataset, cfg))
    assert report.success, report.summary()
    profile_s, prof = best_of(repeats, lambda: validation.profile(dataset))
    drift_s, _ = best_of(repeats, lambda: validation.validate(dataset, cfg, previous_profile=prof))
    with tempfile.TemporaryDirectory() as tmp:
        write_s, _ = best_of(repeats, lambda: report.write(Path(tmp) / "report"))
        save_s, _ = best_of(
            repeats,
            lambda: io.save_dataset(dataset, Path(tmp) / "prepared", {"profile.json": prof}),
        )
    return {
        "n_interactions": n,
        "n_users": len(dataset.users),
        "n_items": len(dataset.items),
        "expectations": len(report.outcomes),
        "repeats": repeats,
        "gx_import_s": round(import_s, 2),
        "generate_s": round(generate_s, 2),
        "validate_s": round(validate_s, 2),
        "validate_with_drift_s": round(drift_s, 2),
        "profile_s": round(profile_s, 2),
        "report_write_s": round(write_s, 2),
        "save_s": round(save_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "hardware": hardware(),
    }


def render(r: dict[str, Any]) -> str:
    hw = r["hardware"]
    return "\n".join(
        [
            f"prepare-stage benchmark: {r['n_interactions']:,} interactions, {r['n_users']:,} "
            f"users, {r['n_items']:,} items; {r['expectations']} expectations; best of "
            f"{r['repeats']}; peak RSS {r['peak_rss_mib']} MiB",
            f"Hardware: {hw['cpu']}, nproc {hw['nproc']}, {hw['memory_gib']} GiB, load "
            f"{hw['load_average']}; Python {hw['python']}, great-expectations "
            f"{hw.get('great-expectations')}, pandas {hw['pandas']}",
            "",
            "| step | seconds |",
            "|---|---:|",
            f"| import great_expectations (once per process) | {r['gx_import_s']:.2f} |",
            f"| generate (synthetic) | {r['generate_s']:.2f} |",
            f"| validate (all suites) | {r['validate_s']:.2f} |",
            f"| validate with drift check | {r['validate_with_drift_s']:.2f} |",
            f"| profile | {r['profile_s']:.2f} |",
            f"| report.json + Data Docs | {r['report_write_s']:.2f} |",
            f"| save tables (atomic) | {r['save_s']:.2f} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-interactions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args.n_interactions, args.repeats)
    print(render(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
