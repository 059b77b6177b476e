"""``run_benchmark``: every model tuned (on validation), fitted and scored per split, files written.

Each fold is one ``recsys.evaluation.harness.run_trial`` (the fit and the scoring every caller
shares); this module adds the protocol's output files, the per-model ``metrics.json`` and the
atomic swap of ``OUT`` once every model finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.benchmark.config import (
    LIST_LENGTH,
    LOO_KS,
    MARKDOWN_COLUMNS,
    METRICS_FILE,
    MODEL_DIR,
    OUTPUT_FILES,
    RESULTS_JSON,
    RESULTS_MD,
    STUDY_DB,
    TOPK_KS,
    BenchmarkConfig,
    Log,
    check_config,
    quiet,
)
from recsys.benchmark.report import (
    BenchmarkReport,
    FoldOutcome,
    ModelOutcome,
    cold_start_counts,
    library_versions,
)
from recsys.benchmark.schedule import (
    model_groups,
    resolve_jobs,
    run_order,
    worker_env,
    worker_pool,
    worker_threads,
)
from recsys.benchmark.splits import SplitData, load_split, read_side_tables
from recsys.benchmark.tuning import study_tuning, tune_model
from recsys.data import io
from recsys.errors import ConfigError, location
from recsys.evaluation.evaluate import (
    LooResult,
    TopKResult,
)
from recsys.evaluation.harness import (
    ProtocolName,
    fold_statistics,
    run_trial,
    score,
)
from recsys.evaluation.results import Evaluation
from recsys.hardware import hardware
from recsys.models import registry
from recsys.models.base import Recommender
from recsys.models.fit_cache import remember, shared_fits
from recsys.models.requirements import skip_reason
from recsys.schema import (
    ITEM_ID,
)


def resolve_models(
    names: Sequence[str], warn: Log = quiet
) -> tuple[dict[str, type[Recommender]], dict[str, str]]:
    """Registry classes for ``names``; empty: every registered model that imports.

    Returns:
      ({name: class} in run order, {name: why it was skipped} for the default list).

    Raises:
      ConfigError: an unknown name (the message lists the valid ones), or a requested model
        whose module cannot be imported.
    """
    out: dict[str, type[Recommender]] = {}
    skipped: dict[str, str] = {}
    requested = list(dict.fromkeys(names))
    for name in requested or registry.MODELS:
        try:
            out[name] = registry.model_class(name)
        except (ImportError, AttributeError) as exc:
            if requested:
                raise ConfigError(
                    f"model '{name}' is registered but cannot be imported: {exc}",
                    fix="install what it needs, or leave it out of --models",
                ) from exc
            skipped[name] = str(exc)
            warn(f"skipping model '{name}': {exc}")
    if not out:
        raise ConfigError("no registered model could be imported")
    return out, skipped


def score_options(protocol: ProtocolName) -> dict[str, Any]:
    """The cut-offs (and, for ``topk``, the list length) a benchmark scores ``protocol`` with."""
    if protocol == "topk":
        return {"ks": TOPK_KS, "list_length": LIST_LENGTH}
    return {"ks": LOO_KS} if protocol == "loo" else {}


def evaluate_split(
    model: Recommender, split: SplitData, protocol: ProtocolName, *, n_boot: int, seed: int
) -> Evaluation:
    """Score a fitted model on a split's test file under ``protocol``."""
    options = score_options(protocol)
    return score(model, split.heldout(), protocol, n_boot=n_boot, seed=seed, **options)


def output_frame(evaluation: Evaluation) -> pd.DataFrame:
    """The rows of the protocol's output file (PROTOCOL.md headers, original ids)."""
    if isinstance(evaluation, TopKResult):
        return evaluation.recommendations()
    if isinstance(evaluation, LooResult):
        return evaluation.scores
    return evaluation.predictions


def run_model(
    name: str,
    cls: type[Recommender],
    fields: Mapping[str, Any],
    splits: Sequence[SplitData],
    cfg: BenchmarkConfig,
    out: Path,
    *,
    val: SplitData | None = None,
    log: Log = quiet,
) -> ModelOutcome:
    """Tune (on ``val``), then fit and evaluate a fresh model per split; write its files."""
    source = "params" if name in cfg.model_params else "defaults"
    tuning = None
    if val is not None and cfg.tune is not None:  # an Optuna study, where a space is declared
        tuning = study_tuning(name, cls, fields, val, cfg.protocol, cfg.tune, log=log)
    if val is not None and tuning is None:
        tuning = tune_model(cls, fields, val, cfg.protocol)
    if tuning is not None:
        fields, source = {**fields, **tuning.chosen}, "tuned"
        log(f"{name}: tuned on validation ({tuning.metric}): {tuning.chosen}")
    folds: list[FoldOutcome] = []
    for split in splits:
        model = cls(**fields)  # a fresh model per fold
        fit_data = split.fit_data()
        trial = run_trial(
            model,
            fit_data,
            split.heldout(),
            cfg.protocol,
            n_boot=cfg.n_boot,
            seed=cfg.seed,
            **score_options(cfg.protocol),
        )
        remember(model, fit_data, fit_data.split)  # an ensemble or two-stage part reuses it
        directory = out / split.name if split.name else out
        io.write_csv(output_frame(trial.evaluation), directory / OUTPUT_FILES[cfg.protocol])
        if cfg.save_models:
            model.save(directory / MODEL_DIR)
        fold = FoldOutcome(trial.config, trial.train, trial.evaluation, name=split.name)
        if split.name:
            io.write_json(fold.summary(), directory / METRICS_FILE)
        folds.append(fold)
    mean, std = fold_statistics([f.evaluation.metrics for f in folds])
    outcome = ModelOutcome(name, cfg.protocol, source, tuning, tuple(folds), mean, std)
    io.write_json(outcome.summary(), out / METRICS_FILE)
    return outcome


@dataclass(frozen=True)
class _Work:
    """What every group of models needs (pickled to a worker process)."""

    fields: Mapping[str, Mapping[str, Any]]
    splits: tuple[SplitData, ...]
    val: SplitData | None
    cfg: BenchmarkConfig
    out: Path
    verbose: bool


def run_group(
    names: Sequence[str], work: _Work, *, log: Log | None = None
) -> dict[str, ModelOutcome]:
    """Run ``names`` one after the other, in this process, their fits shared
    (``fit_cache``). A composite model (ensemble, two-stage) is built from its components as
    they ran here: their configured settings and what tuning chose for them."""
    if log is None:
        log = _print if work.verbose else quiet
    outcomes: dict[str, ModelOutcome] = {}
    with shared_fits():
        for name in names:
            cls = registry.model_class(name)
            ran = {
                n: {**work.fields[n], **(o.tuning.chosen if o.tuning else {})}
                for n, o in outcomes.items()
            }
            given = cls.with_component_settings(work.fields[name], ran)
            outcome = run_model(
                name,
                cls,
                work.fields[name] if given is None else given,
                work.splits,
                work.cfg,
                work.out / name,
                val=work.val,
                log=log,
            )
            outcomes[name] = outcome
            main = MARKDOWN_COLUMNS[work.cfg.protocol][0]
            log(
                f"{name}: {main[0]} {outcome.mean[main[1]]:.4f}, fit {outcome.fit_seconds:.3f} s,"
                f" recommend {outcome.recommend_seconds:.3f} s"
            )
    return outcomes


def _print(message: str) -> None:
    print(message, flush=True)


def _run_parallel(
    groups: Sequence[Sequence[str]], work: _Work, jobs: int, threads: int
) -> dict[str, ModelOutcome]:
    """``run_group`` of each group in ``jobs`` worker processes of ``threads`` threads
    (``schedule``), the costliest groups first; the first failure ends every worker and is
    raised here."""
    outcomes: dict[str, ModelOutcome] = {}
    with worker_env(threads), worker_pool(jobs) as pool:
        futures = [pool.submit(run_group, list(group), work) for group in groups]
        for future in as_completed(futures):
            outcomes.update(future.result())
    return outcomes


def run_benchmark(
    cfg: BenchmarkConfig, out: Path, *, log: Log = quiet, warn: Log = quiet
) -> BenchmarkReport:
    """Run every model of ``cfg`` and write ``out`` (replaced as a whole when all succeeded).

    Models and their settings are checked, and every file read, before the first fit.

    Raises:
      ConfigError: bad options, an unknown model, a model setting it rejects, or an ``out``
        that exists and is not a benchmark output (it would be replaced).
      DataError: a missing or malformed input file.
    """
    start = time.perf_counter()
    check_config(cfg)
    _check_out(Path(out))
    classes, skipped = resolve_models(cfg.models, warn)
    fields = {n: dict(cfg.model_params.get(n, {})) for n in classes}
    # A bad setting fails now, not after an hour of other models.
    built = {name: cls(**fields[name]) for name, cls in classes.items()}
    items, users = read_side_tables(
        cfg.items,
        cfg.users,
        items_format=cfg.items_format,
        users_format=cfg.users_format,
        csv_cfg=cfg.csv,
    )
    reading: dict[str, Any] = {
        "file_format": cfg.file_format, "items": items, "users": users, "csv_cfg": cfg.csv
    }  # fmt: skip
    splits = [load_split(s, **reading) for s in cfg.splits]
    classes = skip_unable(classes, built, splits[0], skipped, warn, protocol=cfg.protocol)
    val = None
    if cfg.val is not None:
        val = load_split(cfg.val, prefix="val-", **reading)
    groups = model_groups(classes, fields)
    jobs = resolve_jobs(cfg.jobs, len(groups))
    threads = worker_threads(jobs) if jobs > 1 else None  # None: one process, own pools
    order = run_order(classes, fields)
    log(
        f"benchmark {cfg.protocol}: {', '.join(order)} on {len(splits)} split(s)"
        + (f", {jobs} worker processes" if jobs > 1 else "")
    )
    with io.atomic_dir(Path(out)) as tmp:
        if cfg.tune is not None:  # the studies are kept with the results (OUT/study.db)
            storage = f"sqlite:///{(tmp / STUDY_DB).resolve()}"
            cfg = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, storage=storage))
            if jobs > 1:  # its tables exist before the workers share the file
                from recsys.tuning.study import open_storage

                open_storage(storage)
        work = _Work(fields, tuple(splits), val, cfg, tmp, verbose=log is not quiet)
        if threads is None:
            outcomes = run_group(order, work, log=log)
        else:
            outcomes = _run_parallel(groups, work, jobs, threads)
        outcomes = {name: outcomes[name] for name in order}
        split_info: dict[str, Any] = (
            splits[0].files if splits[0].name is None else {str(s.name): s.files for s in splits}
        )
        if val is not None:
            split_info = {**split_info, "validation": val.files}
        report = BenchmarkReport(
            protocol=cfg.protocol,
            split=split_info,
            models=outcomes,
            skipped=skipped,
            hardware={**hardware(), "workers": jobs, "threads_per_worker": threads},
            versions=library_versions(),
            n_items=int(splits[0].train[ITEM_ID].nunique()),
            seconds=round(time.perf_counter() - start, 3),
            cold_start={
                s.name or "test": cold_start_counts(s.train, s.test, cfg.protocol) for s in splits
            },
        )
        io.write_json(report.to_dict(), tmp / RESULTS_JSON)
        io.write_text(report.markdown(), tmp / RESULTS_MD)
    return report


def skip_unable(
    classes: dict[str, type[Recommender]],
    built: Mapping[str, Recommender],
    split: SplitData,
    skipped: dict[str, str],
    warn: Log = quiet,
    *,
    protocol: ProtocolName = "topk",
) -> dict[str, type[Recommender]]:
    """``classes`` without the models that cannot learn from ``split``'s data (content without
    item content, a rating model without ratings: ``recsys.models.requirements``); each one's
    reason goes to ``skipped`` (results.json and results.md).

    Raises:
      ConfigError: every model was skipped (nothing to benchmark).
    """
    data = split.fit_data()
    out = {}
    for name, cls in classes.items():
        reason = skip_reason(built[name], data, protocol)
        if reason is None:
            out[name] = cls
        else:
            skipped[name] = reason
            warn(f"skipping model '{name}': {reason}")
    if not out:
        raise ConfigError(
            "no model can run on this data: " + "; ".join(skipped.values()),
            fix="add the missing input (--items) or choose other --models",
        )
    return out


def _check_out(out: Path) -> None:
    """Refuse to replace a directory that is not a previous benchmark output."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / RESULTS_JSON).is_file())
    ):
        raise ConfigError(
            f"--out {out} exists and is not a benchmark output; it would be replaced",
            where=location(out),
            fix="choose a new or empty directory",
        )
