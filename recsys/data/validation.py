"""Great Expectations suites for the canonical tables, built in code; ``validate`` -> report.

One suite per table (``interactions``, ``items``, ``users`` when present) plus suites on small
derived frames, so that every check is a GX expectation whose offending "rows" mean something:

* ``interaction_refs``: ``item_id_known`` / ``user_id_known`` booleans aligned row for row with
  the interactions (referential integrity without a 1e5-element ``value_set``, which GX
  evaluates in ~10 s per 1e6 rows and renders in full into Data Docs);
* ``user_counts`` / ``item_counts``: one row per id with its number of interactions;
* ``drift``: one row of total-variation distances against the previous accepted version's
  ``profile``; these expectations have GX severity ``warning`` and never block.

``report.success`` is False only when an *error*-severity expectation fails. Rows failing a
row-level expectation on the interactions (null, range, timestamp, duplicate, unknown id) can be
split off with ``split_quarantine`` when ``ValidationConfig.quarantine`` is on.

This is the only module that imports ``great_expectations``; it does so lazily (~2 s), with
telemetry, progress bars and INFO logs off. It runs the suites and renders Data Docs; the rest
lives beside it:

=====================  ==========================================================================
validation_suites      which expectation checks what (``build_plans``)
validation_report      ``ExpectationOutcome``, ``ValidationReport``, ``split_quarantine``
validation_drift       ``profile``, ``drift``, ``total_variation``
validation_docs        the offline HTML report and the offline copy of the GX site
=====================  ==========================================================================

Their public names are re-exported here, so ``from recsys.data.validation import X`` keeps
working.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from recsys.config import ValidationConfig
from recsys.data.validation_docs import clip
from recsys.data.validation_drift import (
    MAX_EXACT_RATINGS,
    PROFILE_VERSION,
    RATING_BINS,
    TOP_ITEMS,
    drift,
    profile,
    total_variation,
)
from recsys.data.validation_report import (
    ROW_LEVEL_CHECKS,
    ExpectationOutcome,
    Severity,
    ValidationReport,
    jsonable,
    split_quarantine,
)
from recsys.data.validation_suites import N_INTERACTIONS, Check, Plan, build_plans, tag
from recsys.schema import Dataset

__all__ = [
    "DOCS_SAMPLE",
    "MAX_EXACT_RATINGS",
    "N_INTERACTIONS",
    "PROFILE_VERSION",
    "RATING_BINS",
    "ROW_LEVEL_CHECKS",
    "TOP_ITEMS",
    "ExpectationOutcome",
    "Severity",
    "ValidationReport",
    "build_data_docs",
    "drift",
    "profile",
    "split_quarantine",
    "total_variation",
    "validate",
]

DOCS_SAMPLE: Final = 20
"""Unexpected values/indices kept per expectation in the Data Docs copy of the results."""

_GX_LOCK = threading.Lock()
"""GX 1.x routes stores through a process-global ``project_manager`` bound to the latest
context, so two validations in parallel threads would interfere: one at a time."""

# Result keys too large to keep (full lists) or redundant with our own fields.
_BULKY_RESULT_KEYS: Final = frozenset(
    {
        "unexpected_list",
        "unexpected_index_list",
        "partial_unexpected_index_list",
        "unexpected_index_query",
        "unexpected_rows",
        "details",
    }
)


# --- public API -----------------------------------------------------------------------------
def validate(
    dataset: Dataset,
    cfg: ValidationConfig,
    *,
    previous_profile: dict[str, Any] | None = None,
    now: float | None = None,
) -> ValidationReport:
    """Run the GX suites on ``dataset``; drift is checked when ``previous_profile`` is given.

    Args:
      dataset: canonical tables (``recsys.schema``).
      cfg: thresholds; rating bounds fall back to ``dataset.rating_scale``, then >= 0 for
        implicit feedback.
      previous_profile: ``profile()`` of the last accepted version, as stored with it.
      now: Unix seconds that "the future" is measured from (default: ``time.time()``).
    """
    now = time.time() if now is None else float(now)
    plans = build_plans(dataset, cfg, previous_profile, now, _import_gx().expectations)
    gx, results = _run(plans, cfg)
    outcomes: list[ExpectationOutcome] = []
    row_failures: dict[str, dict[str, np.ndarray]] = {}
    for plan in plans:
        # GX returns results grouped by metric, not in suite order: match them by our tag.
        by_check = {r.expectation_config.meta["check"]: r for r in results[plan.suite].results}
        for spec in plan.checks:
            outcome, positions = _outcome(spec, by_check[spec.check], plan, cfg.sample_rows)
            outcomes.append(outcome)
            if positions is not None and spec.check in ROW_LEVEL_CHECKS:
                row_failures.setdefault(spec.table, {})[spec.check] = positions
    return ValidationReport(
        success=not any(not o.success and o.severity == "error" for o in outcomes),
        outcomes=tuple(outcomes),
        dataset=dataset.name,
        row_counts={name: len(t) for name, t in dataset.tables().items()},
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        gx_version=str(gx.__version__),
        row_failures=row_failures,
        gx_results=tuple(_docs_payload(p.suite, results[p.suite]) for p in plans),
    )


# --- running GX -----------------------------------------------------------------------------
def _import_gx() -> ModuleType:
    """Import GX with telemetry off (unless the caller chose otherwise) and INFO logs muted."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import great_expectations.expectations  # binds gx.expectations explicitly

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return gx


def _quiet(context: Any) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)


def _run(plans: Sequence[Plan], cfg: ValidationConfig) -> tuple[ModuleType, dict[str, Any]]:
    gx = _import_gx()
    result_format = {
        # COMPLETE: the full index list of offending rows (for quarantine); the index query
        # (a string listing every index) is dropped, and so are bulky lists after the run.
        "result_format": "COMPLETE",
        "partial_unexpected_count": max(cfg.sample_rows, DOCS_SAMPLE),
        "return_unexpected_index_query": False,
    }
    results: dict[str, Any] = {}
    with _GX_LOCK:
        context = gx.get_context(mode="ephemeral")
        _quiet(context)
        source = context.data_sources.add_pandas("recsys")
        for plan in plans:
            batch = source.add_dataframe_asset(plan.suite).add_batch_definition_whole_dataframe(
                plan.suite
            )
            suite = context.suites.add(
                gx.ExpectationSuite(name=plan.suite, expectations=[tag(c) for c in plan.checks])
            )
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=plan.suite, data=batch, suite=suite)
            )
            results[plan.suite] = definition.run(
                batch_parameters={"dataframe": plan.frame}, result_format=result_format
            )
    return gx, results


def _outcome(
    spec: Check, res: Any, plan: Plan, n_samples: int
) -> tuple[ExpectationOutcome, np.ndarray | None]:
    raw: dict[str, Any] = dict(res.result or {})
    positions: np.ndarray | None = None
    if not res.success and raw.get("unexpected_index_list") is not None:
        positions = np.asarray(raw["unexpected_index_list"], dtype=np.int64)
    observed = {k: v for k, v in raw.items() if k not in _BULKY_RESULT_KEYS}
    if "partial_unexpected_list" in observed:
        observed["partial_unexpected_list"] = observed["partial_unexpected_list"][:n_samples]
    if "partial_unexpected_counts" in observed:
        observed["partial_unexpected_counts"] = observed["partial_unexpected_counts"][:n_samples]
    if res.exception_info and res.exception_info.get("raised_exception"):
        observed["exception"] = res.exception_info.get("exception_message")
    if "details" in raw and isinstance(raw["details"], dict) and "mismatched" in raw["details"]:
        observed["mismatched"] = raw["details"]["mismatched"]
    context = (res.expectation_config.meta or {}).get("context")
    if context:
        observed.update(context)
    samples: list[dict[str, Any]] = []
    if positions is not None and len(positions):
        head = positions[:n_samples]
        rows = plan.samples.iloc[head].to_dict("records")
        samples = [{"row": int(p) + 1, **_clip_row(r)} for p, r in zip(head, rows, strict=True)]
    elif not res.success and plan.suite == "drift":
        samples = [{"row": 1, **plan.samples.iloc[0].to_dict()}]
    columns = spec.columns
    mismatched = observed.get("mismatched") or {}
    if not res.success and mismatched:  # name the missing / unexpected columns themselves
        columns = tuple(mismatched.get("missing", [])) + tuple(mismatched.get("unexpected", []))
    severity = str(getattr(res.expectation_config.severity, "value", "critical"))
    outcome = ExpectationOutcome(
        table=spec.table,
        expectation=str(res.expectation_config.type),
        columns=columns,
        success=bool(res.success),
        severity="warning" if severity == "warning" else "error",
        observed=jsonable(observed),
        unexpected_count=_opt_int(raw.get("unexpected_count")),
        unexpected_percent=_opt_float(raw.get("unexpected_percent")),
        sample_rows=tuple(jsonable(samples)),
        description=spec.description,
        check=spec.check,
    )
    return outcome, positions


def _docs_payload(suite: str, result: Any) -> dict[str, Any]:
    for res in result.results:
        r = res.result or {}
        for key in ("unexpected_list", "unexpected_index_list"):
            if isinstance(r.get(key), list):
                r[key] = r[key][:DOCS_SAMPLE]
    return {"suite_name": suite, "result": result.to_json_dict()}


def build_data_docs(report: ValidationReport, site: Path) -> None:
    """Render ``report.gx_results`` with a throw-away file context; copy the site to ``site``."""
    gx = _import_gx()
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_time = datetime.datetime.fromisoformat(report.created_at)
    run_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.dataset) or "dataset"
    with _GX_LOCK, tempfile.TemporaryDirectory(prefix="recsys-gx-") as tmp:
        context = gx.get_context(mode="file", project_root_dir=tmp)
        _quiet(context)
        schema = ExpectationSuiteValidationResultSchema()
        for payload in report.gx_results:
            result_json = payload["result"]
            suite_name = payload["suite_name"]
            configs = [dict(r["expectation_config"]) for r in result_json["results"]]
            for config in configs:  # the batch id is run-time, not part of a suite
                config["kwargs"] = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
            context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=configs))
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
                run_id=RunIdentifier(run_name=run_name, run_time=run_time),
                batch_identifier=f"{run_name}-{suite_name}",
            )
            context.validation_results_store.set(key, schema.load(result_json))
        sites = context.build_data_docs()
        built = Path(str(sites["local_site"]).removeprefix("file://")).parent
        shutil.copytree(built, site, dirs_exist_ok=True)


def _clip_row(row: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): clip(v, 80) if isinstance(v, str) else v for k, v in row.items()}


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
