"""``recsys benchmark``, ``train``, ``evaluate`` and ``compose``: fit and score models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.cli.common import (
    Commands,
    add_command,
    add_format_options,
    add_in_option,
    add_out_option,
    add_params_option,
    add_timings_option,
    params_from,
)
from recsys.errors import ConfigError
from recsys.timings import NOT_MEASURED, Timings

if TYPE_CHECKING:
    from recsys.tuning.study import TuneSettings


def add_benchmark_parser(commands: Commands) -> None:
    """Add ``recsys benchmark``."""
    from recsys.models.registry import MODELS

    bench = add_command(commands, "benchmark", cmd_benchmark, raw=True)
    split_files = (
        ("--train", "training interactions"),
        ("--test", "test interactions (never used for tuning)"),
        ("--negatives", "loo: sampled negatives per test user"),
        ("--items", "item table: content features (u.item, movies.dat, movies.csv, CSV)"),
        ("--users", "user table: attributes (u.user, users.dat, CSV)"),
    )
    for flag, text in split_files:
        bench.add_argument(flag, type=Path, metavar="FILE", help=text)
    add_format_options(bench)
    bench.add_argument(
        "--protocol", choices=("topk", "loo", "rating"), default="topk", help="default: topk"
    )
    bench.add_argument(
        "--models",
        metavar="LIST",
        help=f"comma-separated, run in this order (default: every registered model that "
        f"imports; registered: {', '.join(MODELS)})",
    )
    tuning_files = (
        ("--params", "FILE", "YAML: models.<name> sets each model; data.csv maps csv columns"),
        ("--val-train", "FILE", "validation training file (tuning)"),
        ("--val-test", "FILE", "validation held-out file (tuning)"),
        ("--val-negatives", "FILE", "loo: validation negatives"),
        ("--data-dir", "DIR", "directory of <fold>.base/<fold>.test"),
    )
    for flag, metavar, text in tuning_files:
        bench.add_argument(flag, type=Path, metavar=metavar, help=text)
    bench.add_argument(
        "--folds", metavar="LIST", help="comma-separated fold names, e.g. u1,u2,u3,u4,u5"
    )
    bench.add_argument(
        "--tune-trials",
        type=int,
        metavar="N",
        help="with --val-*: an Optuna study of N trials per model with a search space (as "
        "recsys tune; studies kept in OUT/study.db); default: no study",
    )
    bench.add_argument(
        "--tune-timeout",
        type=float,
        metavar="S",
        help="wall seconds per model's study (default 300 with --tune-trials)",
    )
    bench.add_argument(
        "--jobs",
        metavar="N",
        default="auto",
        help="worker processes that fit models side by side, the cores shared out as threads "
        "(default auto: one per core; 1: every model in this process, the libraries' own "
        "thread pools). A composite model runs with its components, reusing their fits",
    )
    bench.add_argument("--save-models", action="store_true", help="also save OUT/<model>/model")
    bench.add_argument(
        "--n-boot", type=int, metavar="N", default=1000, help="bootstrap resamples for CIs"
    )
    bench.add_argument("--seed", type=int, metavar="N", default=0, help="bootstrap seed")
    add_out_option(bench, "output directory", metavar="OUT")


def add_parsers(commands: Commands) -> None:
    """Add ``recsys train``, ``evaluate`` and ``compose``: the DVC stages that fit and score."""
    train = add_command(commands, "train", cmd_train)
    train.add_argument("--model", required=True, help="candidate family, e.g. ease, neumf")
    add_in_option(train, "processed directory")
    add_out_option(train, "model directory to write")
    add_params_option(train)
    add_timings_option(train)
    train.add_argument(
        "--tuned",
        type=Path,
        metavar="FILE",
        help="with tuning.enabled: recsys tune's params file (models/tuning/params.yaml), whose "
        "settings replace the candidate's params.yaml ones; ignored when tuning is off",
    )

    evaluate = add_command(commands, "evaluate", cmd_evaluate)
    evaluate.add_argument("--model", type=Path, required=True, help="trained model directory")
    add_in_option(evaluate)
    add_out_option(evaluate, "metrics JSON file to write")
    evaluate.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap and latency-sample seed")
    add_timings_option(evaluate)

    compose = add_command(commands, "compose", cmd_compose)
    compose.add_argument("--ranker", type=Path, required=True, help="trained candidate dir")
    compose.add_argument("--retriever", type=Path, required=True, help="trained retriever dir")
    add_in_option(compose)
    add_out_option(compose, "two-stage model dir to write")
    compose.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    add_params_option(compose)
    add_timings_option(compose)


def cmd_benchmark(args: argparse.Namespace) -> int:
    """train and score models on benchmark split files (PROTOCOL.md)

    Fit each model on --train and score it on --test under one protocol of
    shared/benchmarks/PROTOCOL.md, then write
      OUT/<model>/recommendations.csv  topk: user_id,item_id,rank,score (top 50 per
                                       evaluated user, its training items excluded)
      OUT/<model>/scores.csv           loo: user_id,item_id,score (held-out item, negatives)
      OUT/<model>/predictions.csv      rating: user_id,item_id,prediction (one per test row)
      OUT/<model>/metrics.json         metrics, bootstrap CIs, train facts, chosen params
      OUT/results.json, results.md     all models: metrics, fit/recommend seconds, samples/s,
                                       parameters, file checksums, hardware, versions
    OUT is built beside itself and replaced only when every model finished.

    Files (split files, --items, --users) are read by the pipeline's readers in any
    of these formats, detected from their content or named by --format,
    --items-format, --users-format (docs/data.md):
      ml-100k    u.data lines (tab, no header: user, item, rating, timestamp), u.item,
                 u.user (alias: uidata)
      ml-dat     ML-1M/ML-10M '::' files: ratings.dat, movies.dat (+ tags.dat), users.dat
      ml-csv     ML-20M/25M/latest: ratings.csv, movies.csv (+ tags.csv)
      playcount  user, item, weight[, timestamp]; tab or comma; header optional;
                 implicit feedback (the weight is the rating)
      csv        header user_id,item_id[,rating or weight][,timestamp], or any columns
                 mapped by data.csv in --params; items/users tables with a header
      parquet    as csv, in Parquet
    Ids may be integers or text (SKUs, names); results speak the original ids.
    A headerless 4-field file reads as ml-100k (ratings); pass --format playcount for
    counts. Ambiguous or unknown files, mixed id types, or a side table sharing no id
    with the split are refused (exit 2).

    Tuning reads only --val-train/--val-test (and --val-negatives for loo): EASE's
    lambda, and any model class with a tune() hook. The chosen values are recorded in
    metrics.json and the final model is refit on --train.

    Rating cross-validation (protocol 3): --protocol rating --data-dir ml-100k
    --folds u1,u2,u3,u4,u5 reads DIR/<fold>.base and DIR/<fold>.test, writes
    OUT/<model>/<fold>/predictions.csv, and reports the mean and std over folds.

    Exit status: 0 done; 2 bad option, unknown model, or unreadable input.
    """
    from recsys import benchmark as bm
    from recsys.benchmark.schedule import parse_jobs

    val = None
    if args.val_train or args.val_test or args.val_negatives:
        if not (args.val_train and args.val_test):
            raise ConfigError("tuning needs both --val-train and --val-test")
        val = bm.SplitFiles(args.val_train, args.val_test, args.val_negatives)
    cfg = bm.BenchmarkConfig(
        splits=bm.split_files(
            args.train, args.test, args.negatives,
            data_dir=args.data_dir, folds=bm.parse_names(args.folds),
        ),
        protocol=args.protocol,
        models=bm.parse_names(args.models),
        model_params=bm.load_model_params(args.params),
        val=val, items=args.items, users=args.users, file_format=args.file_format,
        items_format=args.items_format, users_format=args.users_format,
        csv=bm.load_data_csv(args.params),
        save_models=args.save_models, n_boot=args.n_boot, seed=args.seed,
        jobs=parse_jobs(args.jobs),
        tune=_tune_settings(args.tune_trials, args.tune_timeout),
    )  # fmt: skip
    report = bm.run_benchmark(
        cfg, args.out, log=print, warn=lambda m: print(f"warning: {m}", file=sys.stderr)
    )
    print(f"{len(report.models)} model(s) -> {args.out / bm.RESULTS_MD}")
    return 0


def _tune_settings(trials: int | None, timeout: float | None) -> TuneSettings | None:
    """``recsys benchmark``'s study budget (None: no study)."""
    if trials is None and timeout is None:
        return None
    from recsys.tuning.study import TuneSettings

    default = TuneSettings()
    return TuneSettings(
        trials=default.trials if trials is None else trials,
        timeout_s=default.timeout_s if timeout is None else timeout,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """train one candidate model family on the processed split

    Fit the candidate --model (a key of the 'models' section of the parameter file, with its
    settings) on the processed split's train rows, early-stopping on its validation rows, and
    write --out atomically: the saved model plus train.json, the same bytes for the same data,
    settings and seed. What the fit measured (seconds, samples per second, epoch times,
    hardware) goes to --timings/train-MODEL.json. Exit status: 0 written, 2 bad input or
    configuration.
    """
    from recsys import pipeline
    from recsys.timings import read_timings

    summary = pipeline.train_candidate(
        args.model,
        args.inp,
        args.out,
        params_from(args.params),
        timings_dir=args.timings,
        tuned_file=args.tuned,
    )
    if summary.skipped is not None:
        print(f"skipped {args.model}: {summary.skipped} -> {args.out}/train.json")
        return 0
    train = summary.train
    timed = read_timings(args.timings, "train", args.model, args.out)
    print(
        f"trained {args.model}: {_seconds(timed, 'fit_seconds', spec='.1f', unit=' s')}, "
        f"{train['epochs']} epoch(s), {train['n_parameters']:,} parameters on "
        f"{train['device']}, {summary.size_bytes / 1e6:.2f} MB, settings from "
        f"{summary.settings_from} -> {args.out}"
    )
    return 0


def _seconds(timed: Timings | None, *keys: str, spec: str, unit: str) -> str:
    """A measured value of a timing record as printed, or that the run did not measure it."""
    value = None if timed is None else timed.value(*keys)
    return NOT_MEASURED if value is None else f"{value:{spec}}{unit}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    """score a trained model on the processed test split (metrics JSON)

    Rank every training item for each test user (seen items excluded) and write --out: metrics
    with 95% bootstrap CIs, per-user values for paired tests, model size and the split's
    checksums, the same bytes for the same model and data. What it measured (recommend
    seconds, p50/p99 single-request latency, hardware) goes to --timings/evaluate-FAMILY.json.
    """
    from recsys import pipeline
    from recsys.timings import read_timings

    report = pipeline.evaluate_candidate(
        args.model, args.inp, args.out, n_boot=args.n_boot, seed=args.seed, timings_dir=args.timings
    )
    if report.get("skipped"):
        print(f"not evaluated {report['family']}: skipped ({report['skipped']}) -> {args.out}")
        return 0
    m, ci = report["metrics"], report["ci"]["ndcg@10"]
    timed = read_timings(args.timings, "evaluate", report["family"], args.out)
    print(
        f"evaluated {report['family']} on {report['n_users']:,} test users: NDCG@10 "
        f"{m['ndcg@10']:.4f} ({ci[0]:.4f}-{ci[1]:.4f}), recall@10 {m['recall@10']:.4f}, "
        f"p99 {_seconds(timed, 'latency_ms', 'p99', spec='.2f', unit=' ms')} -> {args.out}"
    )
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    """build and score the served two-stage ranking of a trained candidate

    The ranking the service answers with: retrieve M candidates per user by the retriever's
    vectors (exact or ANN search, `serving:` in the parameter file), then rank them by the
    trained candidate. Saves it as one model to --out (no training) and scores it like `recsys
    evaluate` on the processed test split, with the candidate's own full ranking and the ANN's
    recall@M beside it (the gate's two-stage budget). What the scoring measured goes to
    --timings/evaluate-twostage-FAMILY.json, as with `recsys evaluate`.
    """
    from recsys import candidates, pipeline

    params = params_from(args.params)
    candidates.check_candidates(params.models, params.serving)
    summary = pipeline.compose_candidate(args.ranker, args.retriever, args.inp, args.out, params)
    report = pipeline.evaluate_candidate(args.out, args.inp, args.metrics, timings_dir=args.timings)
    if report.get("skipped"):
        print(f"not composed {summary.family}: skipped ({report['skipped']}) -> {args.out}")
        return 0
    two = report["two_stage"]
    primary = params.gate.primary_metric
    print(
        f"composed {summary.family} (M={two['rerank_top']}, {two['index']} index, recall@M "
        f"{two['recall@M']:.4f}): {primary} {report['metrics'][primary]:.4f} served, "
        f"{two['ranker_metrics'][primary]:.4f} ranking every item -> {args.out}, {args.metrics}"
    )
    return 0
