"""Serving benchmark (issue 5, points 6 and 7): the bento against a naive baseline, side by side.

    .venv/bin/python bench/serving.py [--catalogues ml100k,synthetic1e6] [--clients 1,8,32]
        [--duration 15] [--saturation 60] [--out reports/benchmarks/serving]

For each catalogue the script trains (once; cached under ``--work``) a champion and a
two-tower retriever with ``recsys`` (below), builds the bento with ``recsys.serving.package``
(``--workers`` worker processes, default 1) and serves it with ``bentoml serve`` on 127.0.0.1;
next to it, on 127.0.0.1 too, runs the
**naive baseline**: a starlette/uvicorn endpoint that does what a plain Flask endpoint calling
``model.predict`` does - per request, the champion's Keras ``model.predict`` on every
(user, item) pair of the catalogue, seen items masked, top-k by sort. Both answer
``POST /recommend {"user_id", "k"}``. The closed-loop load generator
(``recsys.serving.loadgen``, asyncio, one keep-alive connection per client) drives each server
in turn at 1, 8 and 32 concurrent clients (``--clients``) for ``--duration`` seconds after a
short warm-up, requests cycling over known users with k=10. Then ``--saturation`` seconds at
48 clients (over the service's ``max_concurrency`` of 32) against the bento: only 200 and the
documented back-pressure (429, and 503 past the latency budget) may come back.

Catalogues:

- ``ml100k``: ../shared/datasets/ml-100k (skipped, with a message, when absent); champion
  NeuMF, retriever TwoTower (exact retrieval: 1,682 items is below ``exact_below``).
- ``synthetic1e6``: ``recsys.data.synthetic`` with 1,000,000 items (64 users, 100 interactions
  each: the two-tower's dense history table bounds users x items); a 64-wide TwoTower both
  retrieves and ranks (it scores every item, cold ones by content; DeepContent as the ranker
  used 19 GB in its first epoch at this size); the bento retrieves with faiss IVF (``--ann``;
  the index is built at server start) and re-scores the 200 candidates exactly. Trained one
  epoch: the latency, not the quality, is measured. The naive baseline runs both towers over
  the whole catalogue per request (the two-tower's Keras model is its training net).

One worker is the default: BentoML's workers share one listening socket and the first to wake
accepts a whole burst of new connections, so 32 clients that connect at once often all land on
one worker (docs/serving.md, "Workers"). ``--nprobe``, ``--storage`` and ``--max-batch`` set
the IVF probe count, the ANN index's vector storage and ``serving.max_batch`` of the bento for
A/B runs.

Writes ``serving.json`` and ``serving.md`` under ``--out`` (hardware, load average before and
after each catalogue, server memory) and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
from hardware import hardware

from recsys.config import RetrievalConfig, Storage
from recsys.serving import loadgen, package

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "datasets" / "ml-100k"
SATURATION_CLIENTS = 48
READY_TIMEOUT_S = 1800.0
"""The 1e6 bento builds its ANN index at start (single-threaded HNSW: minutes)."""
K = 10


# --- models ----------------------------------------------------------------------------------
def train_models(catalogue: str, work: Path) -> dict[str, str]:
    """Train, store and return {"champion", "retriever", "catalogue", "champion_dir"}.

    Runs in a child process with ``BENTOML_HOME`` set (``main`` does it), once per work dir.
    """
    from recsys.config import PreprocessConfig, SplitConfig, SyntheticConfig
    from recsys.data.preprocess import preprocess
    from recsys.models.base import Recommender
    from recsys.serving import store
    from recsys.serving.store import ModelLabels

    champion: Recommender
    if catalogue == "ml100k":
        from recsys.data.sources import read_movielens
        from recsys.models.ncf import NeuMF
        from recsys.models.twotower import TwoTower

        dataset = read_movielens(ML100K)
        cfg = PreprocessConfig(
            implicit_threshold=None,
            split=SplitConfig(method="random_holdout", test_fraction=0.1, seed=1),
        )
        data = preprocess(dataset, cfg)
        champion = NeuMF(epochs=5, seed=0)
        retriever: Recommender = TwoTower(epochs=5, seed=0)
        version = "ml100k"
    else:
        from recsys.data.synthetic import generate
        from recsys.models.twotower import TwoTower

        dataset = generate(SyntheticConfig(n_interactions=6400, n_users=64, n_items=1_000_000))
        cfg = PreprocessConfig(
            min_user_interactions=1,
            min_item_interactions=1,
            split=SplitConfig(method="random_holdout", test_fraction=0.1, val_fraction=0.0),
        )
        data = preprocess(dataset, cfg)
        # The two-tower ranks as well as retrieves here: DeepContent over 1e6 items took 19 GB
        # within its first epoch on this machine and was stopped.
        retriever = champion = TwoTower(
            embedding_dim=64,
            id_dim=0,
            token_dim=16,
            item_hidden_units=[],
            user_hidden_units=[],
            epochs=1,
            eval_users=16,
            seed=0,
        )
        version = "synthetic-1e6"
    t0 = time.perf_counter()
    champion.fit(data)
    if retriever is not champion:
        retriever.fit(data)
    labels = ModelLabels(data_version=version, git_revision="bench", params_hash="0", metrics={})
    retriever_tag = store.save_model(retriever, "bench-twotower", labels)
    tags = {
        "champion": (
            retriever_tag
            if retriever is champion
            else store.save_model(champion, f"bench-{champion.name}", labels)
        ),
        "retriever": retriever_tag,
        "catalogue": package.save_catalogue(data, data_version=version),
        "fit_s": f"{time.perf_counter() - t0:.1f}",
    }
    tags["champion_dir"] = str(store.model_path(tags["champion"]))
    return tags


def prepared(catalogue: str, work: Path, args: argparse.Namespace) -> dict[str, str]:
    """Trained models (cached in ``work``) and a bento built now from this checkout and the
    serving options of ``args``: a cached bento would serve stale settings."""
    env = bench_env(work)
    retrain = args.retrain
    tags_file = work / f"{catalogue}-models.json"
    if retrain or not tags_file.is_file():
        cmd = [sys.executable, __file__, "train", catalogue, "--work", str(work)]
        subprocess.run(cmd, env=env, check=True, cwd=REPO)
    tags = json.loads(tags_file.read_text())
    from recsys.config import ServingConfig
    from recsys.models.base import Recommender
    from recsys.models.twostage import TwoStage
    from recsys.serving import store
    from recsys.serving.store import ModelLabels

    knobs = {"nprobe": args.nprobe} if args.nprobe else {}
    retrieval = RetrievalConfig(ann=args.ann, storage=args.storage, **knobs)
    serving = ServingConfig(
        workers=args.workers, max_batch=args.max_batch, fast_path=args.fast_path
    )
    home = work / "bentoml"
    # The served model: the two-stage ranking with this run's retrieval settings (what a
    # pipeline run would gate and promote), stored once per setting.
    ranker = Recommender.load(store.model_path(tags["champion"], home=home))
    same = tags["retriever"] == tags["champion"]
    retriever = ranker if same else Recommender.load(store.model_path(tags["retriever"], home=home))
    served = TwoStage.compose(ranker, retriever, retrieval=retrieval)
    labels = ModelLabels(data_version=catalogue, git_revision="bench", params_hash="0", metrics={})
    tags["served"] = store.save_model(served, "bench-twostage", labels, home=home)
    tags["bento"] = package.build_bento(
        tags["served"], tags["catalogue"], serving=serving, home=home
    )
    return dict(tags)


def bench_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(work / "bentoml")
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# --- the naive baseline server ----------------------------------------------------------------
def naive_app(model_dir: Path) -> Any:
    """starlette app: ``POST /recommend`` = ``model.predict`` over every item, per request."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from recsys.models.base import Recommender

    model: Any = Recommender.load(model_dir)
    items = np.arange(len(model.item_ids), dtype=np.int64)

    def predict_all(u: int) -> np.ndarray:
        """The Keras model over every item: ``model.predict`` on all (u, i) pairs (NeuMF,
        content models); for the two-tower, whose Keras model is the in-batch training net,
        both towers run over the whole catalogue (``_live_scores``: no cached item vectors)."""
        if hasattr(model, "_predict_pairs"):
            return np.asarray(model._predict_pairs(np.full(len(items), u), items))
        return np.asarray(model._live_scores(np.array([u]), items))[0]

    def top_k(user_id: int, k: int) -> list[dict[str, Any]]:
        u = int(model.encode_users([user_id])[0])
        scores = np.array(predict_all(u), dtype=np.float32)
        scores[model.encode_items(model.seen_items(user_id))] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [{"item_id": int(model.item_ids[i]), "score": float(scores[i])} for i in top]

    async def recommend(request: Request) -> JSONResponse:
        body = await request.json()
        items_out = await run_in_threadpool(top_k, int(body["user_id"]), int(body.get("k", K)))
        return JSONResponse({"user_id": body["user_id"], "items": items_out})

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return Starlette(
        routes=[
            Route("/recommend", recommend, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def serve_naive(model_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(naive_app(model_dir), host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def naive_server(model_dir: str, work: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = package.free_port()
    log = open(work / "naive.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, __file__, "naive", model_dir, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=bench_env(work), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if package.wait_ready(url, proc, READY_TIMEOUT_S) is None:
            raise RuntimeError(f"naive server did not start: {(work / 'naive.log').read_text()}")
        yield url, proc
    finally:
        package.stop(proc)
        log.close()


# --- measuring --------------------------------------------------------------------------------
def tree_rss_mib(pid: int) -> float:
    total = 0
    for p in [pid, *package.process_tree(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(
    url: str, bodies: list[bytes], clients: int, duration: float, timeout_s: float
) -> dict[str, Any]:
    loadgen.run_load(url, "/recommend", bodies, concurrency=clients, duration_s=2.0,
                     timeout_s=timeout_s)  # fmt: skip  # warm-up
    result = loadgen.run_load(
        url, "/recommend", bodies, concurrency=clients, duration_s=duration, timeout_s=timeout_s
    )
    return {**result.summary(), "load_average": load_avg()}


def bench_catalogue(catalogue: str, args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work
    tags = prepared(catalogue, work, args)
    from recsys.models.base import Recommender

    users = Recommender.load(Path(tags["champion_dir"])).vocab.user_ids  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps({"user_id": int(u), "k": K}).encode()
        for u in rng.choice(users, size=min(len(users), 500), replace=False)
    ]
    out: dict[str, Any] = {"tags": tags, "load_before": load_avg(), "runs": []}
    log = work / f"{catalogue}-bento.log"
    with (
        package.serving(tags["bento"], home=work / "bentoml", log=log) as (b_url, b_proc, _),
        naive_server(tags["champion_dir"], work) as (n_url, n_proc),
    ):
        ready = package.wait_ready(b_url, b_proc, READY_TIMEOUT_S)
        if ready is None:
            raise RuntimeError(f"bento did not start: {log.read_text()[-3000:]}")
        out["bento_ready_s"] = round(ready, 1)
        for clients in args.clients:
            for server, url in (("bento", b_url), ("naive", n_url)):
                if server == "naive" and clients > args.naive_max_clients.get(catalogue, 10**6):
                    continue
                timeout = 10.0 if server == "bento" else 600.0
                row = {"server": server, **measure(url, bodies, clients, args.duration, timeout)}
                print(catalogue, row, flush=True)
                out["runs"].append(row)
        out["memory_mib"] = {"bento": tree_rss_mib(b_proc.pid), "naive": tree_rss_mib(n_proc.pid)}
        if args.saturation > 0:
            sat = loadgen.run_load(
                b_url, "/recommend", bodies, concurrency=SATURATION_CLIENTS,
                duration_s=args.saturation, timeout_s=30.0, backoff_s=args.saturation_backoff,
            )  # fmt: skip
            summary = sat.summary()
            summary["only_documented_statuses"] = set(sat.statuses) <= {200, 429, 503}
            summary["load_average"] = load_avg()
            summary["backoff_s"] = args.saturation_backoff
            out["saturation"] = summary
            print(catalogue, "saturation", summary, flush=True)
    out["load_after"] = load_avg()
    return out


def markdown(result: dict[str, Any]) -> str:
    hw = result["hardware"]
    lines = [
        f"Hardware: {hw['cpu']}, {hw['nproc']} cores, {hw['memory_gib']} GiB RAM, "
        f"{hw['platform']}; load generator and servers on 127.0.0.1.",
        f"Command: `{result['command']}`",
        "",
        "| catalogue | server | clients | requests | 200 | p50 ms | p99 ms | req/s | "
        "× naive | load avg (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cat in result["catalogues"].items():
        if "skipped" in cat:
            lines.append(f"| {name} | skipped: {cat['skipped']} | | | | | | | | |")
            continue
        naive = {r["concurrency"]: r for r in cat["runs"] if r["server"] == "naive"}
        best_naive = max((r["throughput_rps"] for r in naive.values()), default=0.0)
        for r in cat["runs"]:
            ratio = ""
            if r["server"] == "bento" and best_naive > 0:
                ratio = f"{r['throughput_rps'] / best_naive:.0f}×"
            lines.append(
                f"| {name} | {r['server']} | {r['concurrency']} | {r['requests']} | {r['ok']} | "
                f"{r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} | {ratio} | "
                f"{r['load_average'][0]} |"
            )
    lines += ["", "× naive: the bento's throughput over the naive baseline's best throughput."]
    for name, cat in result["catalogues"].items():
        if "skipped" in cat:
            continue
        sat = cat.get("saturation")
        lines.append(
            f"- {name}: bento ready in {cat['bento_ready_s']} s; memory (RSS of the process "
            f"tree) bento {cat['memory_mib']['bento']} MiB, naive {cat['memory_mib']['naive']} "
            f"MiB; load average before {cat['load_before']}, after {cat['load_after']}."
        )
        if sat:
            lines.append(
                f"- {name} saturation, {SATURATION_CLIENTS} clients for {sat['wall_s']} s "
                f"(back-off after 429/503: {sat.get('backoff_s', 0.0)} s): "
                f"statuses {sat['statuses']}, p99 of the 200s {sat['p99_ms']} ms, "
                f"{sat['throughput_rps']} req/s; only 200/429/503: "
                f"{sat['only_documented_statuses']}."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=REPO / "reports/benchmarks/serving/work")
    sub = ap.add_subparsers(dest="command")
    train = sub.add_parser("train", help="(internal) train and store one catalogue's models")
    train.add_argument("catalogue", choices=["ml100k", "synthetic1e6"])
    train.add_argument("--work", type=Path, default=ap.get_default("work"))
    naive = sub.add_parser("naive", help="(internal) serve the naive baseline")
    naive.add_argument("model_dir", type=Path)
    naive.add_argument("--port", type=int, required=True)
    ap.add_argument("--catalogues", default="ml100k,synthetic1e6")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--saturation", type=float, default=60.0)
    ap.add_argument(
        "--saturation-backoff",
        type=float,
        default=0.0,
        help="seconds a saturating client waits after a 429/503 (0: retries at once)",
    )
    ap.add_argument("--ann", choices=["hnsw", "ivf"], default="ivf")
    ap.add_argument("--workers", type=int, default=1, help="bento worker processes")
    ap.add_argument("--nprobe", type=int, default=0, help="IVF nprobe (0: the service default)")
    ap.add_argument(
        "--storage",
        choices=get_args(Storage),
        default=RetrievalConfig.storage,
        help="ANN index storage (retrieval.storage)",
    )
    ap.add_argument(
        "--max-batch", type=int, default=64, help="serving.max_batch (1: no micro-batching)"
    )
    ap.add_argument(
        "--fast-path",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serving.fast_path: valid /recommend requests answered before BentoML's API layer",
    )
    ap.add_argument(
        "--naive-max-clients",
        default="synthetic1e6=1",
        help="skip the naive baseline above this many clients per catalogue (a 1e6-item "
        "predict takes seconds: 32 clients would queue for minutes)",
    )
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "reports/benchmarks/serving")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "train":
        tags = train_models(args.catalogue, args.work)
        (args.work / f"{args.catalogue}-models.json").write_text(json.dumps(tags, indent=2))
        return 0
    if args.command == "naive":
        serve_naive(args.model_dir, args.port)
        return 0
    args.clients = [int(c) for c in args.clients.split(",")]
    args.naive_max_clients = {
        k: int(v) for k, v in (kv.split("=") for kv in args.naive_max_clients.split(",") if kv)
    }
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python bench/serving.py", *argv]),
        "catalogues": {},
    }
    text = ""
    for catalogue in args.catalogues.split(","):
        if catalogue == "ml100k" and not (ML100K / "u.data").is_file():
            print(f"skipping ml100k: {ML100K} not found", flush=True)
            result["catalogues"][catalogue] = {"skipped": f"{ML100K} not found"}
            text = write(result, args.out)
            continue
        result["catalogues"][catalogue] = bench_catalogue(catalogue, args)
        text = write(result, args.out)  # after each catalogue: a later failure keeps it
    print(text)
    return 0


def write(result: dict[str, Any], out: Path) -> str:
    result["hardware"] = hardware()
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(result, indent=2, default=str))
    text = markdown(result)
    (out / "serving.md").write_text(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
