"""``recsys tune``: each model's settings searched on validation data (``recsys.tuning``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from recsys.cli.common import (
    Commands,
    add_command,
    add_format_options,
    add_out_option,
    params_from,
)
from recsys.errors import ConfigError, location

STUDY_DB = "study.db"


def add_parsers(commands: Commands) -> None:
    """Add ``recsys tune``."""
    tune = add_command(commands, "tune", cmd_tune, raw=True)
    data = tune.add_argument_group("validation data (the files, or the pipeline's split)")
    for flag, text in (
        ("--val-train", "validation training file"),
        ("--val-test", "validation held-out file (scored; never the test file)"),
        ("--val-negatives", "loo: validation negatives"),
        ("--items", "item table: content features (u.item, movies.dat, movies.csv, CSV)"),
        ("--users", "user table: attributes (u.user, users.dat, CSV)"),
    ):
        data.add_argument(flag, type=Path, metavar="FILE", help=text)
    add_format_options(data)
    data.add_argument("--protocol", choices=("topk", "loo", "rating"), help="default: topk")
    data.add_argument(
        "--in",
        dest="inp",
        type=Path,
        metavar="DIR",
        help="processed data dir: tune the pipeline's candidates on its validation split",
    )
    tune.add_argument(
        "--params",
        type=Path,
        metavar="FILE",
        help="starting settings: models.<name> (with --in: the pipeline's params.yaml, whose "
        "'tuning' section gives the budget; default params.yaml)",
    )
    tune.add_argument("--models", metavar="LIST", help="comma-separated (default: every model)")
    tune.add_argument("--trials", type=int, metavar="N", help="trials per model (default 20)")
    tune.add_argument("--timeout", type=float, metavar="S", help="seconds per model (default 300)")
    tune.add_argument("--pruner", choices=("median", "hyperband", "none"), help="default median")
    tune.add_argument("--storage", metavar="URL", help=f"Optuna storage (default OUT/{STUDY_DB})")
    tune.add_argument("--study-name", default="recsys", help="studies are NAME.<model>")
    tune.add_argument("--seed", type=int, metavar="N", help="sampler seed (default 0)")
    add_out_option(tune, "output directory (the study database stays there)", metavar="OUT")


def cmd_tune(args: argparse.Namespace) -> int:
    """search each model's settings on validation data (Optuna)

    One study per model (TPE, seeded; median or Hyperband pruning on the Keras models'
    per-epoch validation metric), stored in SQLite: run the same command again and an
    interrupted study continues with the trials it has (--trials is the study's total).
    The first trial replays the starting settings, so the best is never below them on
    validation. Budget: --trials per model and --timeout wall seconds per model.

    Data: --val-train/--val-test (and --val-negatives for loo), as `recsys benchmark`
    reads them; or --in data/processed: fit on its train rows, score its validation rows
    (the test rows are never read), for the candidates of params.yaml.

    Writes OUT/trials.csv and OUT/trials.md (every trial: params, value, state, seconds),
    OUT/params.yaml (models: the chosen settings; `recsys benchmark --params` reads it)
    and OUT/tuning.json. Exit status: 0 done, 2 bad option or input.
    """
    from recsys import benchmark as bm
    from recsys.tuning.run import (
        pipeline_protocol,
        skip_report,
        tune_models,
        validation_from_processed,
    )
    from recsys.tuning.study import TuneSettings

    val_files = (args.val_train, args.val_test, args.val_negatives)
    if args.inp is not None and any(val_files):
        raise ConfigError("--in tunes on the processed split; it replaces --val-*", fix="drop one")
    out = Path(args.out)
    _check_out(out)
    protocol: Any
    names = bm.parse_names(args.models)
    if args.inp is not None:
        params = params_from(args.params or Path("params.yaml"))
        cfg = params.tuning
        val = validation_from_processed(args.inp)
        protocol = args.protocol or pipeline_protocol(val)
        names = names or params.models.candidates
        given = {n: params.models.families.get(n, {}) for n in names}
        if not cfg.enabled and args.trials is None:
            skip_report(names, given, val, protocol, "tuning.enabled is false", out)
            print(f"tuning.enabled is false: params.yaml's settings kept -> {out}")
            return 0
        start = TuneSettings(
            trials=cfg.trials, timeout_s=cfg.timeout_s, pruner=cfg.pruner, seed=cfg.seed
        )
    else:
        if not (args.val_train and args.val_test):
            raise ConfigError(
                "recsys tune needs --val-train and --val-test (or --in DIR)",
                fix="e.g. --val-train splits/ml100k-u1/val_train.tsv "
                "--val-test splits/ml100k-u1/val_test.tsv",
            )
        protocol = args.protocol or "topk"
        split = bm.SplitFiles(args.val_train, args.val_test, args.val_negatives)
        if (protocol == "loo") != (args.val_negatives is not None):
            raise ConfigError(
                "protocol 'loo' needs the validation negatives, and only it uses them",
                fix="pass --val-negatives with --protocol loo, and only then",
            )
        csv_cfg = bm.load_data_csv(args.params)
        items, users = bm.read_side_tables(
            args.items,
            args.users,
            items_format=args.items_format,
            users_format=args.users_format,
            csv_cfg=csv_cfg,
        )
        val = bm.load_split(
            split,
            file_format=args.file_format,
            items=items,
            users=users,
            prefix="val-",
            csv_cfg=csv_cfg,
        )
        given = bm.load_model_params(args.params)
        start = TuneSettings()
    out.mkdir(parents=True, exist_ok=True)
    options = {"trials": args.trials, "timeout_s": args.timeout, "pruner": args.pruner,
               "seed": args.seed, "storage": args.storage}  # fmt: skip
    settings = dataclasses.replace(
        start,
        study_name=args.study_name,
        storage=f"sqlite:///{(out / STUDY_DB).resolve()}",
        **{k: v for k, v in options.items() if v is not None},
    )
    report = tune_models(
        names, given, val, protocol, settings, out, log=print,
        warn=lambda m: print(f"warning: {m}", file=sys.stderr),
    )  # fmt: skip
    for name, study in report.models.items():
        best = "-" if study.best_value is None else f"{study.best_value:.4f}"
        print(f"{name}: {study.skipped or study.source}, validation {report.metric} {best}")
    print(f"{len(report.models)} model(s) -> {out / 'params.yaml'}, {out / 'trials.md'}")
    return 0


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a tuning output (its files would mix)."""
    ours = (out / STUDY_DB).exists() or (out / "tuning.json").exists()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not ours)):
        raise ConfigError(
            f"--out {out} exists and is not a tuning output",
            where=location(out),
            fix="choose a new or empty directory (or the OUT of an earlier `recsys tune`)",
        )
