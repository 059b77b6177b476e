"""The ``recsys`` command line: thin adapters over the library, used by ``dvc.yaml`` and people.

Errors a user can act on (``RecsysError``) print as a few plain lines and exit with their code
(2 for bad input or configuration, 1 for a failed validation); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from recsys import __version__
from recsys.config import Params, SourceName, load_params
from recsys.errors import ConfigError, RecsysError, ValidationFailed

if TYPE_CHECKING:  # heavy modules are imported by the commands that use them
    from recsys.data.validation import ValidationReport
    from recsys.schema import Dataset

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_REPORTS = Path("reports") / "validation"
DEFAULT_REGISTRY = Path("data") / "registry"
"""Champion pointer, promotion history and gate decisions (``recsys.serving.store``)."""
INTERNAL_ERROR = 3
"""Exit status of an unexpected exception (0 ok, 1 validation failed, 2 bad input or config)."""
PROFILE_FILE = "profile.json"
"""The data profile stored with each accepted version; the next run checks drift against it."""

Handler = Callable[[argparse.Namespace], int]

BENCHMARK_DESCRIPTION = """\
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

Split files: u.data format (tab-separated user, item, rating, timestamp; no header)
for .tsv .tab .data .base .test; CSV with a header user_id,item_id[,rating,timestamp]
for .csv. --format overrides the suffix.

Tuning reads only --val-train/--val-test (and --val-negatives for loo): EASE's
lambda, and any model class with a tune() hook. The chosen values are recorded in
metrics.json and the final model is refit on --train.

Rating cross-validation (protocol 3): --protocol rating --data-dir ml-100k
--folds u1,u2,u3,u4,u5 reads DIR/<fold>.base and DIR/<fold>.test, writes
OUT/<model>/<fold>/predictions.csv, and reports the mean and std over folds.

Exit status: 0 done; 2 bad option, unknown model, or unreadable input."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recsys`` console script."""
    for name, value in (("GX_ANALYTICS_ENABLED", "False"), ("DVC_NO_ANALYTICS", "1")):
        os.environ.setdefault(name, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except RecsysError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except Exception:  # a bug, not bad input: keep the traceback, and a distinct exit status
        traceback.print_exc()
        print("internal error: this is a bug in recsys, please report it", file=sys.stderr)
        return INTERNAL_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Validated data, deep recommenders, a metric gate and a BentoML service.",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    data = commands.add_parser("data", help="read, validate and preprocess interaction data")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(handler=lambda _args: _help(data))

    prepare = data_commands.add_parser(
        "prepare",
        help="read a source, validate it, and write the canonical tables",
        description=(
            "Read a data source into the canonical tables, validate them with the Great "
            "Expectations suites, and write them to --out only when they pass. The validation "
            "report (JSON and Data Docs HTML) is always written under --report-dir. Exit status: "
            "0 written, 1 validation failed, 2 unreadable input or bad configuration."
        ),
    )
    _source_options(prepare)
    prepare.add_argument("--out", type=Path, required=True, help="output directory")
    prepare.set_defaults(handler=cmd_prepare)

    validate = data_commands.add_parser(
        "validate",
        help="validate a source; exit 0 when valid, 1 with a report when not",
        description="Validate a data source without writing any data. Exit status: 0 valid, "
        "1 a blocking expectation failed (the report names it), 2 unreadable input.",
    )
    _source_options(validate)
    validate.add_argument(
        "--against",
        type=Path,
        help="a prepared directory whose profile is the previous accepted version (drift check)",
    )
    validate.set_defaults(handler=cmd_validate)

    prep = data_commands.add_parser(
        "preprocess",
        help="clean, index, featurize and split prepared data",
        description="Deduplicate, convert to implicit feedback (if configured), k-core filter, "
        "build id vocabularies and content features, and split; writes --out atomically.",
    )
    prep.add_argument("--in", dest="inp", type=Path, required=True, help="prepared directory")
    prep.add_argument("--out", type=Path, required=True, help="output directory")
    prep.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    prep.add_argument(
        "--test-file",
        type=Path,
        help="predefined split: test file in u.data format (overrides preprocess.split.test_file)",
    )
    prep.set_defaults(handler=cmd_preprocess)

    download = data_commands.add_parser(
        "download",
        help="download an official MovieLens archive and verify its checksum",
        description="Download <base-url>/<dataset>.zip, verify its checksum and unpack it into "
        "DEST/<dataset>/. Needs network access; offline, place the unpacked files yourself.",
    )
    download.add_argument("--dataset", required=True, help="e.g. ml-100k, ml-1m, ml-latest-small")
    download.add_argument("--dest", type=Path, required=True, help="directory to unpack into")
    download.add_argument("--base-url", help="mirror of files.grouplens.org/datasets/movielens")
    download.set_defaults(handler=cmd_download)

    docs = data_commands.add_parser(
        "docs",
        help="serve the validation reports over http, readable without network",
        description="Serve REPORTS on http://127.0.0.1:PORT/ until interrupted: each run's "
        "data_docs/report.html (our summary) and data_docs/index.html (GX Data Docs).",
    )
    docs.add_argument(
        "--reports", type=Path, default=DEFAULT_REPORTS, help="(default: %(default)s)"
    )
    docs.add_argument("--port", type=int, default=8000, help="0: any free port (default: 8000)")
    docs.set_defaults(handler=cmd_data_docs)

    _benchmark_parser(commands)
    _registry_parsers(commands)
    _model_stage_parsers(commands)
    _bento_parsers(commands)
    _serve_parser(commands)
    return parser


def _benchmark_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from recsys.models.registry import MODELS

    bench = commands.add_parser(
        "benchmark",
        help="train and score models on benchmark split files (PROTOCOL.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=BENCHMARK_DESCRIPTION,
    )
    bench.add_argument("--train", type=Path, metavar="FILE", help="training interactions")
    bench.add_argument(
        "--test", type=Path, metavar="FILE", help="test interactions (never used for tuning)"
    )
    bench.add_argument(
        "--negatives", type=Path, metavar="FILE", help="loo: sampled negatives per test user"
    )
    bench.add_argument(
        "--items", type=Path, metavar="FILE", help="MovieLens u.item: item content features"
    )
    bench.add_argument(
        "--users", type=Path, metavar="FILE", help="MovieLens u.user: user attributes"
    )
    bench.add_argument(
        "--format", dest="file_format", choices=("uidata", "csv"), help="split file format"
    )
    bench.add_argument(
        "--protocol", choices=("topk", "loo", "rating"), default="topk", help="default: topk"
    )
    bench.add_argument(
        "--models",
        metavar="LIST",
        help=f"comma-separated, run in this order (default: every registered model that "
        f"imports; registered: {', '.join(MODELS)})",
    )
    bench.add_argument(
        "--params", type=Path, metavar="FILE", help="YAML whose models.<name> sets each model"
    )
    bench.add_argument(
        "--val-train", type=Path, metavar="FILE", help="validation training file (tuning)"
    )
    bench.add_argument(
        "--val-test", type=Path, metavar="FILE", help="validation held-out file (tuning)"
    )
    bench.add_argument(
        "--val-negatives", type=Path, metavar="FILE", help="loo: validation negatives"
    )
    bench.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="directory of <fold>.base/<fold>.test"
    )
    bench.add_argument(
        "--folds", metavar="LIST", help="comma-separated fold names, e.g. u1,u2,u3,u4,u5"
    )
    bench.add_argument("--save-models", action="store_true", help="also save OUT/<model>/model")
    bench.add_argument(
        "--n-boot", type=int, metavar="N", default=1000, help="bootstrap resamples for CIs"
    )
    bench.add_argument("--seed", type=int, metavar="N", default=0, help="bootstrap seed")
    bench.add_argument("--out", type=Path, metavar="OUT", required=True, help="output directory")
    bench.set_defaults(handler=cmd_benchmark)


def _model_stage_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser(
        "train",
        help="train one candidate model family on the processed split",
        description="Fit the candidate --model (a key of the 'models' section of the parameter "
        "file, with its settings) on the processed split's train rows, early-stopping on its "
        "validation rows, and write --out atomically: the saved model plus train.json. "
        "Exit status: 0 written, 2 bad input or configuration.",
    )
    train.add_argument("--model", required=True, help="candidate family, e.g. ease, neumf")
    train.add_argument("--in", dest="inp", type=Path, required=True, help="processed directory")
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a trained model on the processed test split (metrics JSON)",
        description="Rank every training item for each test user (seen items excluded) and "
        "write --out: metrics with 95%% bootstrap CIs, per-user values for paired tests, fit "
        "seconds, model size, p99 single-request latency and the split's checksums.",
    )
    evaluate.add_argument("--model", type=Path, required=True, help="trained model directory")
    evaluate.add_argument(
        "--in", dest="inp", type=Path, required=True, help="processed directory (its test split)"
    )
    evaluate.add_argument("--out", type=Path, required=True, help="metrics JSON file to write")
    evaluate.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap and latency-sample seed")
    evaluate.set_defaults(handler=cmd_evaluate)

    compose = commands.add_parser(
        "compose",
        help="build and score the served two-stage ranking of a trained candidate",
        description="The ranking the service answers with: retrieve M candidates per user by "
        "the retriever's vectors (exact or ANN search, `serving:` in the parameter file), then "
        "rank them by the trained candidate. Saves it as one model to --out (no training) and "
        "scores it like `recsys evaluate` on the processed test split, with the candidate's own "
        "full ranking and the ANN's recall@M beside it (the gate's two-stage budget).",
    )
    compose.add_argument("--ranker", type=Path, required=True, help="trained candidate dir")
    compose.add_argument("--retriever", type=Path, required=True, help="trained retriever dir")
    compose.add_argument(
        "--in", dest="inp", type=Path, required=True, help="processed directory (its test split)"
    )
    compose.add_argument("--out", type=Path, required=True, help="two-stage model dir to write")
    compose.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    compose.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    compose.set_defaults(handler=cmd_compose)

    gate_run = commands.add_parser(
        "gate-candidates",
        help="register every served ranking, gate the best against the champion",
        description="The pipeline's gate step (recsys.promotion.gate_candidates): register each "
        "candidate's served ranking (models/twostage-<family>, written by `recsys compose`) in "
        "the BentoML store once per content, pick the best on the gate's primary metric, "
        "re-evaluate the champion on the same split, decide (the 'gate' section) and record "
        "the decision in the registry. --out gets the outcome as JSON. Exit status: 0 the "
        "challenger may be promoted, 1 it may not (rejected, already champion or already "
        "rejected), 2 bad input.",
    )
    gate_run.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    gate_run.add_argument("--models", type=Path, default=Path("models"), help="models directory")
    gate_run.add_argument(
        "--in", dest="inp", type=Path, required=True, help="processed directory (its test split)"
    )
    gate_run.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry dir")
    gate_run.add_argument(
        "--data-version", required=True, help="version of the processed data (its DVC hash)"
    )
    gate_run.add_argument("--out", type=Path, required=True, help="outcome JSON to write")
    gate_run.set_defaults(handler=cmd_gate_candidates)


GATE_DESCRIPTION = """\
Decide whether a challenger may replace the champion (recsys.gate.decide, the 'gate'
section of the parameter file). Fails closed: no thresholds, an empty test set or a
missing/NaN metric rejects; absolute thresholds always apply; against a champion evaluated
on the same split the challenger must beat it on the primary metric by the margin, with the
paired-bootstrap CI of the gain above 0; slices and the latency/size budgets must hold.
EVAL.json: the metrics file of `recsys evaluate` (give --challenger-tag, the model's
registry tag) or ModelEvaluation.to_dict(). Writes the decision with every reason to --out.

Exit status: 0 promoted, 1 rejected (every reason is printed), 2 bad input."""


def _registry_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate = commands.add_parser(
        "gate",
        help="decide whether a challenger may replace the champion",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=GATE_DESCRIPTION,
    )
    gate.add_argument("--challenger", type=Path, required=True, metavar="EVAL.json")
    gate.add_argument("--champion", type=Path, metavar="EVAL.json", help="omit on the first run")
    gate.add_argument("--challenger-tag", metavar="TAG", help="registry tag of the challenger")
    gate.add_argument("--champion-tag", metavar="TAG", help="registry tag of the champion")
    gate.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    gate.add_argument("--out", type=Path, required=True, metavar="DECISION.json")
    gate.add_argument(
        "--registry", type=Path, metavar="DIR", help="also record the decision in this registry"
    )
    gate.set_defaults(handler=cmd_gate)

    registry_help = f"registry directory (default: {DEFAULT_REGISTRY})"
    champion = commands.add_parser(
        "champion",
        help="show the current champion and its recent history",
        description="Print the champion model's tag and the last promotions and rollbacks.",
    )
    champion.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help=registry_help)
    champion.add_argument("--history", type=int, default=5, metavar="N", help="entries shown")
    champion.set_defaults(handler=cmd_champion)

    promote = commands.add_parser(
        "promote",
        help="make a gated model the champion",
        description="Make TAG (a model in the BentoML store, $BENTOML_HOME) the champion. The "
        "recorded gate decision for that exact tag is re-checked: it must bless the model, on "
        "the split the model was saved with, against the champion that is current now. "
        "Promoting the current champion again changes nothing. Exit status: 0 promoted (or "
        "already champion), 1 refused, 2 bad input.",
    )
    promote.add_argument("tag", metavar="TAG", help="name:version (or name:latest)")
    promote.add_argument(
        "--decision",
        type=Path,
        metavar="FILE",
        help="the gate decision (default: the one recorded in the registry)",
    )
    promote.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help=registry_help)
    promote.set_defaults(handler=cmd_promote)

    rollback = commands.add_parser(
        "rollback",
        help="repoint the champion to the previous blessed model",
        description="Make the previous champion the champion again and record the rollback. "
        "Exit status: 0 rolled back, 1 refused, 2 nothing to roll back to.",
    )
    rollback.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help=registry_help)
    rollback.set_defaults(handler=cmd_rollback)


BENTO_BUILD_DESCRIPTION = """\
Build a bento of the recommendation service (`bentoml build` over bentofile.yaml; no
Docker needed) around two models of the BentoML store ($BENTOML_HOME): the champion, a
gated two-stage model (default: the registry's champion; retrieval, index settings, M and
ranker are inside it, as the gate measured them), and the item catalogue (--catalogue TAG,
or --processed DIR to store it from processed data). The tags, the service settings
(`serving:` in the parameter file) and the champion's lineage (data version, params hash,
gate decision) are baked into the bento as bento arguments. Prints the bento tag.

Exit status: 0 built; 2 bad input (unknown tag, no champion, build failed)."""


def _bento_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bento = commands.add_parser("bento", help="build and validate the serving bento")
    bento_commands = bento.add_subparsers(title="bento commands", metavar="COMMAND")
    bento.set_defaults(handler=lambda _: _help(bento))

    build = bento_commands.add_parser(
        "build",
        help="bentoml build around the champion and the two-tower retriever",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=BENTO_BUILD_DESCRIPTION,
    )
    build.add_argument(
        "--champion", metavar="TAG", help="two-stage model (default: the registry's champion)"
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalogue", metavar="TAG", help="stored item catalogue")
    source.add_argument("--processed", type=Path, metavar="DIR", help="store it from here")
    build.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry dir")
    build.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    build.add_argument("--version", help="bento version (default: generated)")
    build.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the result (tags, lineage) as JSON"
    )
    build.add_argument(
        "--reuse",
        action="store_true",
        help="keep the bento of --out when it packaged the same champion and still exists",
    )
    build.set_defaults(handler=cmd_bento_build)

    validate = bento_commands.add_parser(
        "validate",
        help="serve a bento on 127.0.0.1, probe it, stop it; mark it deployable if it passed",
        description="Infra validation: `bentoml serve TAG` on 127.0.0.1 and a free port, wait "
        "for /readyz, send one sample request per endpoint (and a bad one per error kind), "
        "check /metrics, stop the server. The report goes to REGISTRY/bentos/; a passing "
        "bento becomes REGISTRY/deployable.json. Exit status: 0 deployable, 1 not, 2 bad input.",
    )
    validate.add_argument("tag", metavar="TAG", help="bento tag, e.g. recsys:abc123")
    validate.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry dir")
    validate.add_argument("--timeout", type=float, default=180.0, help="seconds to get ready")
    validate.set_defaults(handler=cmd_bento_validate)


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the champion's deployable bento (bentoml serve)",
        description="`bentoml serve` the bento that REGISTRY/deployable.json names (the last "
        "one `recsys bento validate` passed), after checking it was built around the "
        "registry's champion; --bento TAG serves that bento instead. The command becomes the "
        "server process (Ctrl-C or SIGTERM stops it). Exit status: the server's; 2 when there "
        "is no champion or no deployable bento for it.",
    )
    serve.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry dir")
    serve.add_argument("--bento", metavar="TAG", help="serve this bento instead")
    serve.add_argument(
        "--host", help="address to listen on (default: BentoML's api_server.http.host, 0.0.0.0)"
    )
    serve.add_argument(
        "--port", type=int, help="port (default: BentoML's api_server.http.port, 3000)"
    )
    serve.set_defaults(handler=cmd_serve)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=get_args(SourceName),
        help="data source (default: data.source in the parameter file)",
    )
    parser.add_argument(
        "--path", type=Path, help="directory (movielens) or file (csv) to read (default: data.path)"
    )
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORTS,
        help="where validation reports are kept (default: %(default)s)",
    )


def _params(path: Path) -> Params:
    # A missing default params.yaml means "library defaults"; a missing explicit one is an error.
    if path == DEFAULT_PARAMS and not path.exists():
        return Params()
    return load_params(path)


def _load_and_validate(
    args: argparse.Namespace, previous_dir: Path | None
) -> tuple[Params, Dataset, ValidationReport, Path]:
    """Read the source, validate it and write the report.

    Returns (params, dataset, report, report_dir); the report is written whatever its verdict.
    """
    from recsys.data import io, sources, validation

    params = _params(args.params)
    data_cfg = params.data
    if args.source:
        data_cfg = dataclasses.replace(data_cfg, source=args.source)
    if args.path:
        data_cfg = dataclasses.replace(data_cfg, path=str(args.path))
    if data_cfg.source != "synthetic" and not data_cfg.path:
        raise ConfigError(
            f"source '{data_cfg.source}' needs a path", fix="pass --path or set data.path"
        )
    dataset = sources.load_source(data_cfg)
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
    return params, dataset, report, report_dir


def cmd_validate(args: argparse.Namespace) -> int:
    _, _, report, _ = _load_and_validate(args, args.against)
    return 0 if report.success else 1


def cmd_prepare(args: argparse.Namespace) -> int:
    from recsys.data import io, validation

    params, dataset, report, report_dir = _load_and_validate(args, args.out)
    if not report.success:
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
    profile = validation.profile(dataset)
    io.save_dataset(dataset, args.out, extra_files={PROFILE_FILE: profile})
    rows = ", ".join(f"{name} {len(t):,}" for name, t in dataset.tables().items())
    print(f"prepared {dataset.name}: {rows} -> {args.out}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from recsys.data import io, preprocess, sources

    params = _params(args.params)
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
    from recsys.data import sources

    kwargs = {"base_url": args.base_url} if args.base_url else {}
    target = sources.download_movielens(args.dataset, args.dest, **kwargs)
    print(f"downloaded and verified {args.dataset} -> {target}")
    return 0


def cmd_data_docs(args: argparse.Namespace) -> int:
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


def cmd_benchmark(args: argparse.Namespace) -> int:
    from recsys import benchmark as bm

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
        save_models=args.save_models, n_boot=args.n_boot, seed=args.seed,
    )  # fmt: skip
    report = bm.run_benchmark(
        cfg, args.out, log=print, warn=lambda m: print(f"warning: {m}", file=sys.stderr)
    )
    print(f"{len(report.models)} model(s) -> {args.out / bm.RESULTS_MD}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from recsys import pipeline

    summary = pipeline.train_candidate(args.model, args.inp, args.out, _params(args.params))
    train = summary.train
    print(
        f"trained {args.model}: {train['fit_seconds']:.1f} s, {train['epochs']} epoch(s), "
        f"{train['n_parameters']:,} parameters on {train['device']}, "
        f"{summary.size_bytes / 1e6:.2f} MB -> {args.out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys import pipeline

    report = pipeline.evaluate_candidate(
        args.model, args.inp, args.out, n_boot=args.n_boot, seed=args.seed
    )
    m, ci = report["metrics"], report["ci"]["ndcg@10"]
    print(
        f"evaluated {report['family']} on {report['n_users']:,} test users: NDCG@10 "
        f"{m['ndcg@10']:.4f} ({ci[0]:.4f}-{ci[1]:.4f}), recall@10 {m['recall@10']:.4f}, "
        f"p99 {report['latency_ms']['p99']:.2f} ms -> {args.out}"
    )
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    from recsys import pipeline

    params = _params(args.params)
    pipeline.check_candidates(params.models, params.serving)
    summary = pipeline.compose_candidate(args.ranker, args.retriever, args.inp, args.out, params)
    report = pipeline.evaluate_candidate(args.out, args.inp, args.metrics)
    two = report["two_stage"]
    primary = params.gate.primary_metric
    print(
        f"composed {summary.family} (M={two['rerank_top']}, {two['index']} index, recall@M "
        f"{two['recall@M']:.4f}): {primary} {report['metrics'][primary]:.4f} served, "
        f"{two['ranker_metrics'][primary]:.4f} ranking every item -> {args.out}, {args.metrics}"
    )
    return 0


def cmd_gate_candidates(args: argparse.Namespace) -> int:
    from recsys import promotion
    from recsys.data import io
    from recsys.serving.store import Registry

    outcome = promotion.gate_candidates(
        args.models,
        args.inp,
        _params(args.params),
        Registry(args.registry),
        data_version=args.data_version,
        work_dir=args.out.parent,
    )
    io.write_json(outcome.to_dict(), args.out)
    print(outcome.report)
    return 0 if outcome.promote else 1


def cmd_gate(args: argparse.Namespace) -> int:
    from recsys import gate
    from recsys.data import io

    def evaluation(path: Path, tag: str | None) -> gate.ModelEvaluation:
        return gate.ModelEvaluation.from_dict(io.read_json(path), str(path), tag=tag)

    challenger = evaluation(args.challenger, args.challenger_tag)
    champion = None if args.champion is None else evaluation(args.champion, args.champion_tag)
    decision = gate.decide(challenger, champion, _params(args.params).gate)
    io.write_json(decision.to_dict(), args.out)
    if args.registry is not None:
        from recsys.serving.store import Registry

        print(f"recorded: {Registry(args.registry).record_decision(decision)}")
    print(decision.report())
    print(f"decision: {args.out}")
    return 0 if decision.promote else 1


def cmd_champion(args: argparse.Namespace) -> int:
    from recsys.serving.store import Registry, describe

    print(describe(Registry(args.registry), history=args.history))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from recsys.serving.store import Registry

    result = Registry(args.registry).promote(args.tag, decision_file=args.decision)
    if result.changed:
        previous = result.record.previous[0] if result.record.previous else "none"
        print(f"promoted {result.record.tag} (previous champion: {previous})")
    else:
        print(f"{result.record.tag} already is the champion: nothing changed")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from recsys.serving.store import Registry

    record = Registry(args.registry).rollback()
    print(f"rolled back: champion is {record.tag} again ({record.reasons[0]})")
    return 0


def cmd_bento_build(args: argparse.Namespace) -> int:
    from recsys.data import io
    from recsys.serving import package

    previous = None
    if args.reuse and args.out is not None and args.out.is_file():
        previous = package.BentoResult.read(args.out)
    result = package.build_champion_bento(
        registry=args.registry,
        serving=_params(args.params).serving,
        champion=args.champion,
        catalogue=args.catalogue,
        processed=args.processed,
        version=args.version,
        previous=previous,
    )
    if args.out is not None:
        io.write_json(result.to_dict(), args.out)
    verb = "reused" if result.reused else "built"
    print(f"{verb} bento {result.bento} (champion {result.champion})")
    return 0


def cmd_bento_validate(args: argparse.Namespace) -> int:
    from recsys.serving import package

    report = package.validate_bento(args.tag, registry=args.registry, timeout_s=args.timeout)
    print(report.summary())
    if not report.deployable:
        print(report.log_tail, file=sys.stderr)
    return 0 if report.deployable else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from recsys.serving import serve
    from recsys.serving.store import Registry

    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    serve.bento_champion(tag)  # fails with a fix when the bento is not in the store
    cmd = serve.serve_command(tag, host=args.host, port=args.port)
    print(f"serving {tag}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    serve.exec_serve(cmd)


if __name__ == "__main__":
    sys.exit(main())
