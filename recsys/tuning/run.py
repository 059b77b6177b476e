"""``tune_models``: one study per model on one validation split, then the report files.

The validation split comes from a benchmark's validation files (``load_split`` of
``--val-train``/``--val-test``/``--val-negatives``) or from the pipeline's processed data
(``validation_from_processed``: its ``train`` rows to fit, its ``val`` rows to score; the
``test`` rows are never read).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.benchmark.config import TUNE_METRIC, Log, quiet
from recsys.benchmark.run import resolve_models, skip_unable
from recsys.benchmark.splits import SplitData
from recsys.data import io
from recsys.data.preprocess import load_processed
from recsys.errors import ConfigError, location
from recsys.evaluation.harness import ProtocolName
from recsys.models.ensemble import with_member_settings
from recsys.tuning.report import ModelStudy, TuneReport, write_report
from recsys.tuning.study import TuneSettings, tune_model

__all__ = ["pipeline_protocol", "skip_report", "tune_models", "validation_from_processed"]

PIPELINE_SPLIT_TABLES = ("train", "val")
"""The processed split tables tuning reads (never ``test``)."""


def validation_from_processed(processed_dir: Path) -> SplitData:
    """The processed data's validation split as a ``SplitData``: fit on ``train``, score on
    ``val`` (with ``val_negatives`` under leave-one-out). The test rows are left out of it.

    Raises:
      ConfigError: the split holds no validation rows.
    """
    directory = Path(processed_dir)
    data = load_processed(directory)
    split = data.split
    if split.val.empty:
        raise ConfigError(
            "the processed split has no validation rows to tune on",
            where=location(directory),
            fix="set preprocess.split.val_fraction > 0 and re-run the preprocess stage",
        )
    as_test = dataclasses.replace(
        split,
        test=split.val,
        val=split.val.iloc[:0],
        negatives=split.val_negatives,
        val_negatives=None,
    )
    val_data = dataclasses.replace(
        data, interactions=pd.concat([split.train, split.val], ignore_index=True), split=as_test
    )
    files = {
        name: {
            "path": str(directory / "split" / f"{name}.parquet"),
            "sha256": io.sha256_file(directory / "split" / f"{name}.parquet"),
            "rows": len(getattr(split, name)),
        }
        for name in PIPELINE_SPLIT_TABLES
    }
    return SplitData("validation", val_data, split.val, split.val_negatives, files)


def pipeline_protocol(val: SplitData) -> ProtocolName:
    """``loo`` for a leave-one-out split (it has sampled negatives), else ``topk``."""
    return "loo" if val.negatives is not None else "topk"


def tune_models(
    names: Sequence[str],
    given: Mapping[str, Mapping[str, Any]],
    val: SplitData,
    protocol: ProtocolName,
    settings: TuneSettings,
    out: Path,
    *,
    log: Log = quiet,
    warn: Log = quiet,
) -> TuneReport:
    """Tune each model (``names``; empty: every registered one) on ``val``; write the report.

    ``given``: the starting settings per model (``models:`` of a params file). Models that
    declare no search space keep their given settings (``skipped`` says so); an ensemble
    whose members were tuned in the same run gets their tuned settings as its members'.

    Raises:
      ConfigError: an unknown model, a starting setting a model rejects, bad storage.
    """
    if protocol not in TUNE_METRIC:
        raise ConfigError(f"unknown protocol '{protocol}'", fix=f"use one of {tuple(TUNE_METRIC)}")
    classes, _ = resolve_models(names, warn)
    # A bad starting setting fails before the first fit.
    built = {name: cls(**given.get(name, {})) for name, cls in classes.items()}
    unable: dict[str, str] = {}
    classes = skip_unable(classes, built, val, unable, warn, protocol=protocol)
    start = time.perf_counter()
    metric = TUNE_METRIC[protocol]
    studies = {  # a model the data cannot train keeps its settings, with the reason
        n: ModelStudy(n, "", metric, dict(given.get(n, {})), "params", skipped=reason)
        for n, reason in unable.items()
    }
    for name, cls in classes.items():
        log(f"{name}: tuning ({settings.trials} trials, {settings.timeout_s} s budget)")
        study = tune_model(name, cls, given.get(name, {}), val, protocol, settings, log=log)
        studies[name] = study
        log(f"{name}: {study.source} {study.skipped or study.settings}")
    tuned = {n: study.settings for n, study in studies.items() if study.source == "tuned"}
    for name, study in studies.items():
        with_members = (
            with_member_settings(study.settings, tuned)
            if study.skipped and name not in unable and "members" in built[name].config_dict()
            else None
        )
        if with_members is not None:
            studies[name] = dataclasses.replace(
                study, settings=with_members, source="members tuned"
            )
    report = TuneReport(
        protocol=protocol,
        metric=TUNE_METRIC[protocol],
        models=studies,
        files=val.files,
        budget={
            "trials": settings.trials,
            "timeout_s": settings.timeout_s,
            "pruner": settings.pruner,
            "seed": settings.seed,
        },
        storage=settings.storage,
        seconds=round(time.perf_counter() - start, 3),
        kept={n: dict(v) for n, v in given.items() if n not in studies},
    )
    write_report(report, Path(out))
    return report


def skip_report(
    names: Sequence[str],
    given: Mapping[str, Mapping[str, Any]],
    val: SplitData,
    protocol: ProtocolName,
    reason: str,
    out: Path,
) -> TuneReport:
    """The report of a run that tuned nothing (``tuning.enabled`` false): every model keeps
    its given settings (``source: params``), so what reads ``params.yaml`` reads them."""
    metric = TUNE_METRIC[protocol]
    studies = {
        n: ModelStudy(n, "", metric, dict(given.get(n, {})), "params", skipped=reason)
        for n in names
    }
    report = TuneReport(protocol, metric, studies, val.files, {"enabled": False}, "", 0.0)
    write_report(report, Path(out))
    return report
