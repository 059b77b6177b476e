"""``recsys data ...``: read, validate, preprocess, download and browse interaction data."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from recsys.cli.common import (
    DEFAULT_REPORTS,
    PROFILE_FILE,
    Commands,
    add_command,
    add_group,
    add_in_option,
    add_out_option,
    add_params_option,
    params_from,
)
from recsys.config import DataConfig, Params, SourceName
from recsys.errors import ConfigError, ValidationFailed

if TYPE_CHECKING:  # heavy modules are imported by the commands that use them
    from recsys.data.validation import ValidationReport
    from recsys.data.validation_verdict import ValidationResult
    from recsys.schema import Dataset


def add_parsers(commands: Commands) -> None:
    """Add ``recsys data`` and its commands."""
    data_commands = add_group(commands, "data", "read, validate and preprocess interaction data")

    prepare = add_command(data_commands, "prepare", cmd_prepare)
    source_options(prepare)
    add_out_option(prepare, "output directory")

    validate = add_command(data_commands, "validate", cmd_validate)
    source_options(validate)
    validate.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="a prepared directory whose profile is the previous accepted version (drift check)",
    )

    prep = add_command(data_commands, "preprocess", cmd_preprocess)
    add_in_option(prep, "prepared directory")
    add_out_option(prep, "output directory")
    add_params_option(prep)
    prep.add_argument(
        "--test-file",
        type=Path,
        help="predefined split: test file in u.data format (overrides preprocess.split.test_file)",
    )

    download = add_command(data_commands, "download", cmd_download)
    download.add_argument("--dataset", required=True, help="e.g. ml-100k, ml-1m, ml-latest-small")
    download.add_argument("--dest", type=Path, required=True, help="directory to unpack into")
    download.add_argument("--base-url", help="mirror of files.grouplens.org/datasets/movielens")

    docs = add_command(data_commands, "docs", cmd_data_docs)
    docs.add_argument(
        "--reports", type=Path, default=DEFAULT_REPORTS, help="(default: %(default)s)"
    )
    docs.add_argument("--port", type=int, default=8000, help="0: any free port (default: 8000)")


def source_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a data source, where its validation reports and verdicts go."""
    parser.add_argument(
        "--source",
        choices=get_args(SourceName),
        help="data source (default: data.source in the parameter file)",
    )
    parser.add_argument(
        "--path", type=Path, help="directory (movielens) or file (csv) to read (default: data.path)"
    )
    add_params_option(parser)
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORTS,
        help="where validation reports are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--result",
        type=Path,
        help="write the verdict here as JSON (key, passed, failures, report, data docs)",
    )
    parser.add_argument(
        "--reuse-verdict",
        type=Path,
        metavar="FILE",
        help="reuse the passing verdict recorded in FILE for identical input, params, code and "
        "baseline instead of validating again; a new passing verdict is recorded there",
    )


def _data_config(args: argparse.Namespace) -> tuple[Params, DataConfig]:
    """The params and their data section with ``--source`` / ``--path`` applied."""
    params = params_from(args.params)
    data_cfg = params.data
    if args.source:
        data_cfg = dataclasses.replace(data_cfg, source=args.source)
    if args.path:
        data_cfg = dataclasses.replace(data_cfg, path=str(args.path))
    if data_cfg.source != "synthetic" and not data_cfg.path:
        raise ConfigError(
            f"source '{data_cfg.source}' needs a path", fix="pass --path or set data.path"
        )
    return params, data_cfg


def _verdict(
    args: argparse.Namespace, params: Params, data_cfg: DataConfig, previous_dir: Path | None
) -> tuple[str, ValidationResult | None]:
    """The validation key of this input and a passing verdict recorded for it (or None)."""
    from recsys.data import validation_verdict

    if args.result is not None:  # never leave the result of an earlier run behind
        args.result.unlink(missing_ok=True)
    baseline = previous_dir / PROFILE_FILE if previous_dir is not None else None
    key = validation_verdict.validation_key(data_cfg, params.validation, baseline=baseline)
    reused = validation_verdict.reusable_verdict(args.reuse_verdict, key)
    if reused is not None:
        print(f"validation: identical input already passed; reusing {reused.report}")
        if args.result is not None:
            reused.write(args.result)
    return key, reused


def _validate(
    args: argparse.Namespace, params: Params, dataset: Dataset, previous_dir: Path | None, key: str
) -> tuple[ValidationReport, Path]:
    """Validate, write the report (whatever its verdict) and the ``--result``; a pass is
    recorded in ``--reuse-verdict``. Returns (report, report_dir)."""
    from recsys.data import io, validation
    from recsys.data.validation_verdict import ValidationResult

    previous = None
    if previous_dir is not None and (previous_dir / PROFILE_FILE).is_file():
        previous = io.read_json(previous_dir / PROFILE_FILE)
    report = validation.validate(dataset, params.validation, previous_profile=previous)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report_dir = args.report_dir / f"{stamp}-{dataset.name}-{'pass' if report.success else 'fail'}"
    report.write(report_dir)
    print(report.summary())
    print(f"report: {report_dir / 'report.json'}")
    print(f"data docs: {report_dir / 'data_docs' / 'index.html'}")
    result = ValidationResult(
        key=key,
        passed=report.success,
        failures=len(report.failures),
        warnings=len(report.warnings),
        report=(report_dir / "report.json").as_posix(),
        data_docs=(report_dir / "data_docs" / "index.html").as_posix(),
        dataset=dataset.name,
    )
    if args.result is not None:
        result.write(args.result)
    if report.success and args.reuse_verdict is not None:
        result.write(args.reuse_verdict)
    return report, report_dir


def cmd_validate(args: argparse.Namespace) -> int:
    """validate a source; exit 0 when valid, 1 with a report when not

    Validate a data source without writing any data. Exit status: 0 valid, 1 a blocking
    expectation failed (the report names it), 2 unreadable input (then no --result is written).
    """
    from recsys.data import sources

    params, data_cfg = _data_config(args)
    key, reused = _verdict(args, params, data_cfg, args.against)
    if reused is not None:
        return 0
    report, _ = _validate(args, params, sources.load_source(data_cfg), args.against, key)
    return 0 if report.success else 1


def cmd_prepare(args: argparse.Namespace) -> int:
    """read a source, validate it, and write the canonical tables

    Read a data source into the canonical tables, validate them with the Great Expectations
    suites, and write them to --out only when they pass. The validation report (JSON and Data
    Docs HTML) is always written under --report-dir. With --reuse-verdict, a passing verdict
    recorded for the identical input (same files, params, validation code and baseline profile)
    stands instead of a second validation. Exit status: 0 written, 1 validation failed,
    2 unreadable input or bad configuration (then no --result is written).
    """
    from recsys.data import io, sources, validation

    params, data_cfg = _data_config(args)
    key, reused = _verdict(args, params, data_cfg, args.out)
    dataset = sources.load_source(data_cfg)
    if reused is None:  # no passing verdict for this very input: validate it here
        report, report_dir = _validate(args, params, dataset, args.out, key)
        if not report.success:
            dataset = _quarantine(args, params, dataset, report, report_dir)
    profile = validation.profile(dataset)
    io.save_dataset(dataset, args.out, extra_files={PROFILE_FILE: profile})
    rows = ", ".join(f"{name} {len(t):,}" for name, t in dataset.tables().items())
    print(f"prepared {dataset.name}: {rows} -> {args.out}")
    return 0


def _quarantine(
    args: argparse.Namespace,
    params: Params,
    dataset: Dataset,
    report: ValidationReport,
    report_dir: Path,
) -> Dataset:
    """The data set without the rows failing row-level expectations, when
    ``validation.quarantine`` allows it and the rest then passes; ``ValidationFailed`` else."""
    from recsys.data import io, validation

    if not params.validation.quarantine:
        raise ValidationFailed(
            f"validation failed: {len(report.failures)} blocking expectation(s); "
            f"nothing was written to {args.out}",
            report=report,
        )
    dataset, quarantined = validation.split_quarantine(dataset, report)
    recheck = validation.validate(dataset, params.validation)
    recheck.write(report_dir / "after_quarantine")
    print(recheck.summary())
    if not recheck.success:
        raise ValidationFailed(
            "validation still fails after quarantining the offending rows (a table-level "
            f"expectation failed); nothing was written to {args.out}",
            report=recheck,
        )
    io.write_table(quarantined, report_dir / "quarantine.parquet")
    print(f"quarantined {len(quarantined)} row(s) to {report_dir / 'quarantine.parquet'}")
    return dataset


def cmd_preprocess(args: argparse.Namespace) -> int:
    """clean, index, featurize and split prepared data

    Deduplicate, convert to implicit feedback (if configured), k-core filter, build id
    vocabularies and content features, and split; writes --out atomically.
    """
    from recsys.data import io, preprocess, sources

    params = params_from(args.params)
    cfg = params.preprocess
    dataset = io.load_dataset(args.inp)
    test_file = args.test_file or (Path(cfg.split.test_file) if cfg.split.test_file else None)
    test_pairs = None
    if cfg.split.method == "predefined":
        if test_file is None:
            raise ConfigError(
                "split method 'predefined' needs a test file",
                fix="set preprocess.split.test_file or pass --test-file",
            )
        test_pairs = sources.read_ratings_file(test_file)
    processed = preprocess.preprocess(dataset, cfg, test_pairs=test_pairs)
    preprocess.save_processed(processed, args.out)
    split = processed.split
    print(
        f"preprocessed {dataset.name}: {len(processed.interactions):,} interactions, "
        f"{len(processed.vocab.user_ids):,} users, {len(processed.vocab.item_ids):,} items; "
        f"{cfg.split.method} split train {len(split.train):,} / val {len(split.val):,} / "
        f"test {len(split.test):,} -> {args.out}"
    )
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """download an official MovieLens archive and verify its checksum

    Download <base-url>/<dataset>.zip, verify its checksum and unpack it into DEST/<dataset>/.
    Needs network access; offline, place the unpacked files yourself.
    """
    from recsys.data import sources

    kwargs = {"base_url": args.base_url} if args.base_url else {}
    target = sources.download_movielens(args.dataset, args.dest, **kwargs)
    print(f"downloaded and verified {args.dataset} -> {target}")
    return 0


def cmd_data_docs(args: argparse.Namespace) -> int:
    """serve the validation reports over http, readable without network

    Serve REPORTS on http://127.0.0.1:PORT/ until interrupted: each run's data_docs/report.html
    (our summary) and data_docs/index.html (GX Data Docs).
    """
    import contextlib
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    if not args.reports.is_dir():
        raise ConfigError(f"no reports directory {args.reports}", fix="run recsys data validate")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(args.reports))
    with ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        print(f"serving {args.reports} at {url} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0
