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
telemetry, progress bars and INFO logs off.
"""

from __future__ import annotations

import dataclasses
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
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from recsys.config import ValidationConfig
from recsys.data.io import atomic_dir, write_json
from recsys.errors import ConfigError, ValidationFailed
from recsys.schema import (
    GENRES,
    IMPLICIT,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_ID,
    ITEM_REQUIRED,
    RATING,
    TIMESTAMP,
    TITLE,
    USER_ID,
    USER_REQUIRED,
    Dataset,
)

Severity = Literal["error", "warning"]

PROFILE_VERSION: Final = 1
TOP_ITEMS: Final = 1000
"""Items kept in a profile's popularity counts (the most popular first)."""
MAX_EXACT_RATINGS: Final = 100
"""Explicit ratings with at most this many distinct values get an exact histogram."""
RATING_BINS: Final = 20
DOCS_SAMPLE: Final = 20
"""Unexpected values/indices kept per expectation in the Data Docs copy of the results."""
N_INTERACTIONS: Final = "n_interactions"

# Per-row problems on a table: the rows can be quarantined instead of blocking the data set.
# Everything else (schema, per-user/item counts, emptiness) describes the table as a whole.
ROW_LEVEL_CHECKS: Final = frozenset(
    {
        "user_id_not_null",
        "item_id_not_null",
        "rating_not_null",
        "timestamp_not_null",
        "rating_range",
        "timestamp_min",
        "timestamp_future",
        "unique_events",
        "item_id_known",
        "user_id_known",
    }
)

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


# --- report types ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpectationOutcome:
    """One evaluated expectation, in plain JSON-able values."""

    table: str
    """``interactions``, ``items``, ``users``, ``user_counts``, ``item_counts`` or ``drift``."""
    expectation: str
    """GX expectation type, e.g. ``expect_column_values_to_be_between``."""
    columns: tuple[str, ...]
    """The column(s) the expectation names (empty for table-level ones)."""
    success: bool
    severity: Severity
    observed: dict[str, Any]
    """GX's result without the full unexpected lists (``observed_value``, counts, ...)."""
    unexpected_count: int | None
    unexpected_percent: float | None
    sample_rows: tuple[dict[str, Any], ...]
    """Up to ``cfg.sample_rows`` offending rows; ``row`` is their 1-based position in ``table``."""
    description: str
    check: str
    """Stable short name of the check (``rating_range``, ``item_id_known``, ...)."""

    @property
    def column(self) -> str | None:
        return self.columns[0] if self.columns else None

    @property
    def row_level(self) -> bool:
        return self.check in ROW_LEVEL_CHECKS

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["row_level"] = self.row_level
        return _jsonable(out)

    def line(self) -> str:
        """One summary line: severity, table.column, expectation, counts and samples."""
        where = f"{self.table}.{','.join(self.columns)}" if self.columns else self.table
        head = f"{self.severity.upper():7} {where} {self.expectation} [{self.check}]"
        if self.unexpected_count is not None:
            pct = (
                f" ({self.unexpected_percent:.3g}%)" if self.unexpected_percent is not None else ""
            )
            head += f": {self.unexpected_count} unexpected{pct}"
        elif "exception" in self.observed:
            head += f": error: {_clip(str(self.observed['exception']), 160)}"
        elif "observed_value" in self.observed:
            head += f": observed {_clip(str(self.observed['observed_value']), 160)}"
        samples = "; ".join(_format_row(r) for r in self.sample_rows[:2])
        if samples:
            head += f"; e.g. {samples}"
        return f"{head} - {self.description}"


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of one ``validate`` call, plus what ``write`` needs to render Data Docs."""

    success: bool
    outcomes: tuple[ExpectationOutcome, ...]
    dataset: str
    row_counts: dict[str, int]
    created_at: str
    gx_version: str
    row_failures: dict[str, dict[str, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )
    """table -> check -> 0-based positions of the rows failing that row-level check."""
    gx_results: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)
    """GX suite-validation results (bulky lists trimmed) and their suites, for Data Docs."""

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success and o.severity == "error")

    @property
    def warnings(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success and o.severity == "warning")

    @property
    def quarantinable(self) -> bool:
        """True when every failure is a row-level one on the interactions (or none failed)."""
        return all(o.table == "interactions" and o.row_level for o in self.failures)

    def row_mask(self, table: str) -> np.ndarray:
        """[n_rows] bool: rows of ``table`` that fail at least one row-level expectation."""
        mask = np.zeros(self.row_counts.get(table, 0), dtype=bool)
        for positions in self.row_failures.get(table, {}).values():
            mask[positions] = True
        return mask

    def failed_checks(self, table: str) -> pd.Series:
        """[n_rows] str: ``;``-joined row-level checks each row fails ("" when none)."""
        names = np.full(self.row_counts.get(table, 0), "", dtype=object)
        for check, positions in sorted(self.row_failures.get(table, {}).items()):
            names[positions] = [f"{n};{check}" if n else check for n in names[positions]]
        return pd.Series(names, dtype=object)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "success": self.success,
                "dataset": self.dataset,
                "row_counts": self.row_counts,
                "created_at": self.created_at,
                "gx_version": self.gx_version,
                "statistics": {
                    "evaluated": len(self.outcomes),
                    "failures": len(self.failures),
                    "warnings": len(self.warnings),
                },
                "outcomes": [o.to_dict() for o in self.outcomes],
            }
        )

    def summary(self) -> str:
        """A few lines for a terminal: one per failure or warning, then a total."""
        verdict = "passed" if self.success else "FAILED"
        lines = [f"validation of '{self.dataset}' {verdict}"]
        lines += ["  " + o.line() for o in (*self.failures, *self.warnings)]
        if self.failures or self.warnings:
            lines.append(
                "(row N = the N-th row of that table as read, 1-based; for the per-user and "
                "per-item count tables, the N-th id in ascending order)"
            )
        lines.append(
            f"total: {len(self.failures)} failed, {len(self.warnings)} warning(s) of "
            f"{len(self.outcomes)} expectations; rows: "
            + ", ".join(f"{t}={n}" for t, n in self.row_counts.items())
        )
        return "\n".join(lines)

    def write(self, out_dir: Path) -> None:
        """Write ``out_dir/report.json`` and GX Data Docs under ``out_dir/data_docs/``.

        Data Docs are rendered by a file-backed GX context in a temporary directory (an
        ephemeral context would put them in a directory removed on exit) and the built site is
        swapped in atomically; ``report.json`` is written last, also atomically.
        """
        out_dir = Path(out_dir)
        with atomic_dir(out_dir / "data_docs") as site:
            _build_data_docs(self, site)
        write_json(self.to_dict(), out_dir / "report.json")


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
    plans = _plans(dataset, cfg, previous_profile, now)
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


def split_quarantine(dataset: Dataset, report: ValidationReport) -> tuple[Dataset, pd.DataFrame]:
    """Split off the interactions that fail row-level expectations.

    Returns the data set without those rows (index reset) and the removed rows with two added
    columns: ``row`` (1-based position in the validated interactions) and
    ``failed_expectations`` (``;``-joined check names). Removing rows can push a user or item
    under its minimum count, so validate the kept data set again before accepting it.

    Raises:
      ValidationFailed: a failure is not row-level (schema, counts, side tables), so removing
        rows cannot make the data acceptable.
      ValueError: ``report`` was not produced from this data set's interactions.
    """
    blocking = [o for o in report.failures if not (o.table == "interactions" and o.row_level)]
    if blocking:
        names = ", ".join(f"{o.table}:{o.check}" for o in blocking)
        raise ValidationFailed(
            f"quarantine cannot fix failures that are not row-level: {names}", report=report
        )
    inter = dataset.interactions
    if report.row_counts.get("interactions") != len(inter):
        raise ValueError(
            f"report covers {report.row_counts.get('interactions')} interactions, "
            f"data set has {len(inter)}"
        )
    mask = report.row_mask("interactions")
    bad = inter.iloc[np.flatnonzero(mask)].copy()
    bad.insert(0, "row", np.flatnonzero(mask) + 1)
    bad["failed_expectations"] = report.failed_checks("interactions").to_numpy()[mask]
    kept = inter.iloc[np.flatnonzero(~mask)].reset_index(drop=True)
    return dataclasses.replace(dataset, interactions=kept), bad.reset_index(drop=True)


def profile(dataset: Dataset, *, top_items: int = TOP_ITEMS) -> dict[str, Any]:
    """A compact, JSON-serializable summary to store with an accepted version (drift base).

    Holds row counts, distinct users/items, the timestamp range, a rating histogram (exact
    values for explicit ratings with few distinct values, else fixed bins) and the interaction
    counts of the ``top_items`` most popular items.
    """
    inter = dataset.interactions
    out: dict[str, Any] = {
        "version": PROFILE_VERSION,
        "dataset": dataset.name,
        "feedback": dataset.feedback,
        "rows": {name: len(t) for name, t in dataset.tables().items()},
    }
    if USER_ID in inter:
        out["n_users"] = int(inter[USER_ID].nunique())
    if ITEM_ID in inter:
        counts = inter[ITEM_ID].value_counts()
        counts = counts.iloc[np.lexsort((counts.index.astype(str), -counts.to_numpy()))]
        out["n_items"] = len(counts)
        out["item_popularity"] = {
            "total": int(counts.sum()),
            "top": {_key(k): int(v) for k, v in counts.iloc[:top_items].items()},
        }
    if TIMESTAMP in inter and pd.api.types.is_numeric_dtype(inter[TIMESTAMP]):
        ts = inter[TIMESTAMP].dropna()
        out["timestamp"] = (
            {"min": int(ts.min()), "max": int(ts.max())} if len(ts) else {"min": None, "max": None}
        )
    if RATING in inter and pd.api.types.is_numeric_dtype(inter[RATING]):
        ratings = inter[RATING].dropna()
        binning, hist = _rating_histogram(ratings, dataset)
        out["rating"] = {
            "min": float(ratings.min()) if len(ratings) else None,
            "max": float(ratings.max()) if len(ratings) else None,
            "mean": float(ratings.mean()) if len(ratings) else None,
            "binning": binning,
            "histogram": hist,
        }
    return _jsonable(out)


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """0.5 * sum |p - q| over the union of keys, after normalizing each side to sum 1."""
    sp, sq = sum(p.values()), sum(q.values())
    if sp <= 0 or sq <= 0:
        return 0.0 if sp == sq else 1.0
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) / sp - q.get(k, 0.0) / sq) for k in keys)


def drift(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rating-histogram and item-popularity TVD between two profiles, with their context.

    Popularity is compared on the items present in both profiles' top lists, each side
    renormalized over them; ``new_item_share`` reports how much of the current top list falls
    on items the previous one did not hold.
    """
    out: dict[str, dict[str, Any]] = {}
    # A profile without a part (an older format, a data set without ratings) skips that part.
    prev_r, cur_r = previous.get("rating") or {}, current.get("rating") or {}
    if "histogram" in prev_r and "histogram" in cur_r:
        out["rating_histogram_tvd"] = {
            "tvd": total_variation(prev_r["histogram"], cur_r["histogram"]),
            "binning": cur_r.get("binning"),
            "previous_binning": prev_r.get("binning"),
        }
    prev_p, cur_p = previous.get("item_popularity") or {}, current.get("item_popularity") or {}
    if "top" in prev_p and "top" in cur_p:
        shared = set(prev_p["top"]) & set(cur_p["top"])
        cur_top = sum(cur_p["top"].values())
        out["item_popularity_tvd"] = {
            "tvd": total_variation(
                {k: prev_p["top"][k] for k in shared}, {k: cur_p["top"][k] for k in shared}
            )
            if shared
            else 1.0,
            "shared_items": len(shared),
            # Interactions of the current top list on items outside the previous one.
            "new_item_share": (
                sum(v for k, v in cur_p["top"].items() if k not in shared) / cur_top
                if cur_top
                else 0.0
            ),
        }
    return out


# --- suites ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Check:
    check: str
    table: str
    """Table the outcome is reported against (row positions index into it)."""
    columns: tuple[str, ...]
    description: str
    expectation: Any
    """The GX ``Expectation`` object."""
    severity: str = "critical"
    """GX ``FailureSeverity`` value; ``warning`` never fails ``report.success``."""


@dataclass(frozen=True)
class _Plan:
    suite: str
    frame: pd.DataFrame
    """What GX validates; RangeIndex, so GX's index lists are 0-based positions."""
    samples: pd.DataFrame
    """Where sample rows are read from (same positions as ``frame``)."""
    checks: tuple[_Check, ...]


def _plans(
    dataset: Dataset, cfg: ValidationConfig, previous_profile: dict[str, Any] | None, now: float
) -> list[_Plan]:
    gxe = _import_gx().expectations
    inter = _positional(dataset.interactions)
    plans: list[_Plan] = []

    checks: list[_Check] = [
        _Check(
            "columns",
            "interactions",
            tuple(INTERACTION_COLUMNS),
            "interactions have exactly the canonical columns",
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(INTERACTION_COLUMNS), exact_match=True
            ),
        ),
        _Check(
            "not_empty",
            "interactions",
            (),
            "interactions are not empty",
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
        ),
    ]
    checks += _schema_checks("interactions", inter, INTERACTION_DTYPES, gxe)
    for col in INTERACTION_COLUMNS:
        if col in inter:
            checks.append(_not_null("interactions", col, gxe))
    lo, hi = _rating_bounds(dataset, cfg)
    if _numeric(inter, RATING) and (lo is not None or hi is not None):
        checks.append(
            _Check(
                "rating_range",
                "interactions",
                (RATING,),
                f"rating within [{_fmt(lo, '-inf')}, {_fmt(hi, 'inf')}]",
                gxe.ExpectColumnValuesToBeBetween(column=RATING, min_value=lo, max_value=hi),
            )
        )
    if _numeric(inter, TIMESTAMP):
        min_ts = _min_timestamp(cfg)
        max_ts = math.floor(now + cfg.max_future_seconds)
        checks += [
            _Check(
                "timestamp_min",
                "interactions",
                (TIMESTAMP,),
                f"timestamp not before {cfg.min_timestamp} ({min_ts})",
                gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, min_value=min_ts),
            ),
            _Check(
                "timestamp_future",
                "interactions",
                (TIMESTAMP,),
                f"timestamp not in the future (<= now + {cfg.max_future_seconds} s = {max_ts})",
                gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, max_value=max_ts),
            ),
        ]
    event_key = [USER_ID, ITEM_ID, TIMESTAMP]
    if all(c in inter for c in event_key):
        checks.append(
            _Check(
                "unique_events",
                "interactions",
                tuple(event_key),
                "(user_id, item_id, timestamp) is unique",
                gxe.ExpectCompoundColumnsToBeUnique(column_list=event_key),
            )
        )
    plans.append(_Plan("interactions", inter, inter, tuple(checks)))

    # Referential integrity as booleans aligned with the interactions (see module docstring).
    refs: dict[str, pd.Series] = {}
    ref_checks: list[_Check] = []
    for col, side_name, side in (
        (ITEM_ID, "items", dataset.items),
        (USER_ID, "users", dataset.users),
    ):
        if side is None or col not in inter or col not in side:
            continue
        known = f"{col}_known"
        values = inter[col]
        # Null ids are reported by *_not_null; don't count them twice here.
        refs[known] = values.isin(side[col].dropna().unique()) | values.isna()
        ref_checks.append(
            _Check(
                known,
                "interactions",
                (col,),
                f"every interaction's {col} exists in {side_name}",
                gxe.ExpectColumnValuesToBeInSet(column=known, value_set=[True]),
            )
        )
    if ref_checks:
        plans.append(_Plan("interaction_refs", pd.DataFrame(refs), inter, tuple(ref_checks)))

    # Per-user / per-item counts: the offending rows are ids with their counts.
    for col, table, minimum in (
        (USER_ID, "user_counts", cfg.min_interactions_per_user),
        (ITEM_ID, "item_counts", cfg.min_interactions_per_item),
    ):
        if col not in inter:
            continue
        counts = inter.groupby(col, sort=True).size().rename(N_INTERACTIONS).reset_index()
        who = "user" if col == USER_ID else "item"
        check = _Check(
            f"{who}_min_interactions",
            table,
            (N_INTERACTIONS,),
            f"every {who} has at least {minimum} interaction(s)",
            gxe.ExpectColumnValuesToBeBetween(column=N_INTERACTIONS, min_value=minimum),
        )
        plans.append(_Plan(table, counts, counts, (check,)))

    for name, side, required, dtypes in (
        ("items", dataset.items, ITEM_REQUIRED, {ITEM_ID: "int64", TITLE: "str", GENRES: "str"}),
        ("users", dataset.users, USER_REQUIRED, {USER_ID: "int64"}),
    ):
        if side is None:
            continue
        side = _positional(side)
        key = required[0]
        side_checks = _schema_checks(name, side, dtypes, gxe)
        if key in side:
            side_checks += [
                _not_null(name, key, gxe),
                _Check(
                    f"{key}_unique",
                    name,
                    (key,),
                    f"{key} is unique in {name}",
                    gxe.ExpectColumnValuesToBeUnique(column=key),
                ),
            ]
        plans.append(_Plan(name, side, side, tuple(side_checks)))

    if previous_profile is not None and _numeric(inter, RATING) and ITEM_ID in inter:
        plans += _drift_plan(dataset, cfg, previous_profile, gxe)
    return plans


def _drift_plan(
    dataset: Dataset, cfg: ValidationConfig, previous_profile: dict[str, Any], gxe: Any
) -> list[_Plan]:
    found = drift(previous_profile, profile(dataset))
    limits = {
        "rating_histogram_tvd": cfg.drift.max_rating_tvd,
        "item_popularity_tvd": cfg.drift.max_popularity_tvd,
    }
    what = {
        "rating_histogram_tvd": "rating histogram",
        "item_popularity_tvd": "item popularity (shared top items)",
    }
    checks = []
    for metric, info in found.items():
        expectation = gxe.ExpectColumnMaxToBeBetween(column=metric, max_value=limits[metric])
        expectation.meta = {"context": _jsonable(info)}
        checks.append(
            _Check(
                metric.removesuffix("_tvd") + "_drift",
                "drift",
                (metric,),
                f"{what[metric]} total-variation distance to the previous version "
                f"<= {limits[metric]}",
                expectation,
                severity="warning",
            )
        )
    if not checks:
        return []
    frame = pd.DataFrame({m: [info["tvd"]] for m, info in found.items()})
    return [_Plan("drift", frame, frame, tuple(checks))]


def _schema_checks(
    table: str, frame: pd.DataFrame, dtypes: dict[str, str], gxe: Any
) -> list[_Check]:
    checks = []
    for col, dtype in dtypes.items():
        checks.append(
            _Check(
                f"{col}_exists",
                table,
                (col,),
                f"column '{col}' exists in {table}",
                gxe.ExpectColumnToExist(column=col),
            )
        )
        if col not in frame:
            continue  # a type check on a missing column only repeats the failure above
        # type_="str" accepts pandas 3 ``str``, ``string`` (python or pyarrow) and object
        # columns holding only str values (checked value by value).
        expectation = gxe.ExpectColumnValuesToBeOfType(column=col, type_=dtype)
        checks.append(
            _Check(f"{col}_type", table, (col,), f"{table}.{col} has dtype {dtype}", expectation)
        )
    return checks


def _not_null(table: str, col: str, gxe: Any) -> _Check:
    return _Check(
        f"{col}_not_null",
        table,
        (col,),
        f"{table}.{col} has no nulls",
        gxe.ExpectColumnValuesToNotBeNull(column=col),
    )


def _tag(check: _Check) -> Any:
    """The GX expectation with our check name in ``meta`` and our description and severity."""
    expectation = check.expectation
    expectation.meta = {**(expectation.meta or {}), "check": check.check, "table": check.table}
    expectation.description = check.description
    expectation.severity = check.severity
    return expectation


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


def _run(plans: Sequence[_Plan], cfg: ValidationConfig) -> tuple[ModuleType, dict[str, Any]]:
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
                gx.ExpectationSuite(name=plan.suite, expectations=[_tag(c) for c in plan.checks])
            )
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=plan.suite, data=batch, suite=suite)
            )
            results[plan.suite] = definition.run(
                batch_parameters={"dataframe": plan.frame}, result_format=result_format
            )
    return gx, results


def _outcome(
    spec: _Check, res: Any, plan: _Plan, n_samples: int
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
        observed=_jsonable(observed),
        unexpected_count=_opt_int(raw.get("unexpected_count")),
        unexpected_percent=_opt_float(raw.get("unexpected_percent")),
        sample_rows=tuple(_jsonable(samples)),
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


def _build_data_docs(report: ValidationReport, site: Path) -> None:
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


# --- helpers --------------------------------------------------------------------------------
def _positional(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a 0..n-1 RangeIndex, so GX's index lists are row positions."""
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


def _numeric(frame: pd.DataFrame, col: str) -> bool:
    return (
        col in frame
        and pd.api.types.is_numeric_dtype(frame[col].dtype)
        and not (pd.api.types.is_bool_dtype(frame[col].dtype))
    )


def _rating_bounds(dataset: Dataset, cfg: ValidationConfig) -> tuple[float | None, float | None]:
    scale = dataset.rating_scale
    lo = cfg.rating_min
    if lo is None:
        lo = scale[0] if scale else (0.0 if dataset.feedback == IMPLICIT else None)
    hi = cfg.rating_max if cfg.rating_max is not None else (scale[1] if scale else None)
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def _min_timestamp(cfg: ValidationConfig) -> int:
    try:
        ts = pd.Timestamp(cfg.min_timestamp)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"'validation.min_timestamp' = {cfg.min_timestamp!r} is not a date: {exc}",
            fix="use an ISO date such as 1995-01-01",
        ) from exc
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return math.floor(ts.timestamp())


def _rating_histogram(ratings: pd.Series, dataset: Dataset) -> tuple[str, dict[str, int]]:
    """(binning, counts): exact values, log2 buckets (implicit counts) or equal-width bins."""
    values = ratings.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if dataset.feedback == IMPLICIT:
        # 0, 1, 2-3, 4-7, ...: counts have a long tail; fixed buckets compare across versions.
        exp = np.where(values >= 1, np.floor(np.log2(np.maximum(values, 1))) + 1, 0).astype(int)
        keys, counts = np.unique(exp, return_counts=True)
        return "log2", {
            ("0" if k == 0 else f"{2 ** (k - 1):g}-{2**k - 1:g}"): int(c)
            for k, c in zip(keys, counts, strict=True)
        }
    rounded = np.round(values, 2)
    keys, counts = np.unique(rounded, return_counts=True)
    if len(keys) <= MAX_EXACT_RATINGS:
        return "exact", {f"{k:g}": int(c) for k, c in zip(keys, counts, strict=True)}
    lo, hi = dataset.rating_scale or (float(values.min()), float(values.max()))
    edges = np.linspace(lo, hi, RATING_BINS + 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, RATING_BINS - 1)
    keys, counts = np.unique(idx, return_counts=True)
    return f"bins{RATING_BINS}[{lo:g},{hi:g}]", {
        f"{edges[k]:.4g}": int(c) for k, c in zip(keys, counts, strict=True)
    }


def _key(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if hasattr(value, "item") else value)


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _clip_row(row: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): _clip(v, 80) if isinstance(v, str) else v for k, v in row.items()}


def _format_row(row: dict[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in row.items() if k != "row")
    return f"row {row.get('row')} ({fields})"


def _fmt(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
