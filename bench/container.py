"""Container benchmark (issue 18): the bento's OCI image against the bare bento, side by side.

    .venv/bin/python bench/container.py [--bento TAG] [--clients 8] [--duration 15]
        [--rounds 3] [--cold] [--out reports/benchmarks/container]

The bento is the registry's deployable bento (the pipeline's; ``--bento`` another one of the
store under $BENTOML_HOME). Measured, in this order, on one machine:

- **Build**: with ``--cold``, the base image bootstrapped again (debootstrap) and the bento
  image built without the layer cache; then a build of whatever is not cached yet, and a
  rebuild with unchanged inputs (every layer cached). Sizes from the image manifests.
- **Cold start**, ``--rounds`` times each, alternating: from starting ``bentoml serve`` (bare)
  or ``buildah run`` (container) to the first 200 of ``POST /recommend``.
- **Latency**: one server at a time, a 2 s warm-up, then ``--clients`` closed-loop clients for
  ``--duration`` seconds (``recsys.serving.loadgen``), requests cycling over 500 known users
  with k=10: p50, p99, throughput.

Needs root, buildah and debootstrap (``recsys.serving.container.unavailable`` says what is
missing). Writes ``container.json`` and ``container.md`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from hardware import hardware

from recsys.serving import container, infra, loadgen, serve
from recsys.serving.bentoml_cli import load_bento
from recsys.serving.store import Registry

K = 10
READY_TIMEOUT_S = 300.0
Starter = Callable[[int, Path], AbstractContextManager[subprocess.Popen[bytes]]]


def bare(bento: str) -> Starter:
    @contextlib.contextmanager
    def start(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        with infra.serving(bento, port=port, log=log) as (_, proc, _):
            yield proc

    return start


def boxed(image: str) -> Starter:
    @contextlib.contextmanager
    def start(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        with container.running(image, port, log=log) as proc:
            yield proc

    return start


def answered_at(url: str, proc: subprocess.Popen[bytes], body: dict[str, Any]) -> float:
    """The ``time.monotonic()`` at which ``POST /recommend`` first answered 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited before answering")
        if infra.http("POST", f"{url}/recommend", body, timeout_s=5.0)[0] == 200:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"no 200 within {READY_TIMEOUT_S} s")


def cold_start(starter: Starter, body: dict[str, Any], work: Path) -> float:
    port = infra.free_port()
    start = time.monotonic()
    with starter(port, work / f"cold-{port}.log") as proc:
        return round(answered_at(f"http://127.0.0.1:{port}", proc, body) - start, 2)


def latency(starter: Starter, bodies: list[bytes], args: argparse.Namespace, work: Path) -> Any:
    port = infra.free_port()
    url = f"http://127.0.0.1:{port}"
    with starter(port, work / f"load-{port}.log") as proc:
        answered_at(url, proc, json.loads(bodies[0]))
        loadgen.run_load(url, "/recommend", bodies, concurrency=args.clients, duration_s=2.0)
        result = loadgen.run_load(
            url, "/recommend", bodies, concurrency=args.clients, duration_s=args.duration
        )
    return {**result.summary(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bento", help="bento tag (default: the registry's deployable bento)")
    parser.add_argument("--registry", type=Path, default=Path("data/registry"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="rebuild base and image uncached")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/container"))
    args = parser.parse_args(argv)
    why = container.unavailable()
    if why is not None:
        print(f"cannot build container images here: {why}", file=sys.stderr)
        return 2
    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    bento = load_bento(tag, None)
    tag = str(bento.tag)
    out: dict[str, Any] = {"bento": tag, "clients": args.clients, "duration_s": args.duration}
    if args.cold:
        base = container.ensure_base_image(rebuild=True)
        out["base_cold_s"] = round(base.seconds, 1)
        _, image = container.containerize_bento(tag, no_cache=True)
        out["image_cold_s"] = round(image.seconds, 1)
    _, image = container.containerize_bento(tag)  # builds whatever is not cached yet
    out["image_first_s"] = round(image.seconds, 1)
    base, image = container.containerize_bento(tag)  # unchanged inputs: every layer cached
    out["image_cached_s"] = round(image.seconds, 1)
    out["image"] = image.name
    out["image_mb"] = round(image.size_bytes / 1e6)
    out["base_mb"] = round(base.size_bytes / 1e6)

    bodies = infra.recommend_bodies(tag, k=K)
    body = json.loads(bodies[0])
    starters = {"bare": bare(tag), "container": boxed(image.name)}
    with tempfile.TemporaryDirectory(prefix="recsys-bench-container-") as tmp:
        work = Path(tmp)
        cold: dict[str, list[float]] = {name: [] for name in starters}
        for _ in range(args.rounds):
            for name, starter in starters.items():
                cold[name].append(cold_start(starter, body, work))
                print(name, "cold start", cold[name][-1], "s", flush=True)
        out["cold_start_s"] = cold
        out["latency"] = {}
        for name, starter in starters.items():
            out["latency"][name] = latency(starter, bodies, args, work)
            print(name, out["latency"][name], flush=True)
    out["hardware"] = hardware()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "container.json").write_text(json.dumps(out, indent=2) + "\n")
    text = markdown(out)
    (args.out / "container.md").write_text(text)
    print(text)
    return 0


def markdown(out: dict[str, Any]) -> str:
    lines = [
        f"# Container against bare bento ({out['bento']})",
        "",
        f"Image {out['image']}: {out['image_mb']} MB (base {out['base_mb']} MB); "
        f"cached rebuild {out['image_cached_s']} s"
        + (
            f"; cold: base {out['base_cold_s']} s, image {out['image_cold_s']} s."
            if "image_cold_s" in out
            else "."
        ),
        "",
        f"| server | cold start s (median of {len(out['cold_start_s']['bare'])}) | "
        f"p50 ms | p99 ms | req/s | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in out["latency"].items():
        starts = out["cold_start_s"][name]
        errors = row["requests"] - row["ok"]
        lines.append(
            f"| {name} | {float(np.median(starts)):.1f} ({min(starts)}–{max(starts)}) | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['throughput_rps']:.0f} | {errors} |"
        )
    lines += ["", f"{out['clients']} clients, {out['duration_s']} s; hardware: {out['hardware']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
