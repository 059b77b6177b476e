"""What a validation run found: ``ValidationReport`` (outcomes, terminal summary, files) and
``split_quarantine``, which removes the interactions failing row-level expectations."""

from __future__ import annotations

import dataclasses
import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from recsys.data import io
from recsys.data.validation_docs import REPORT_PAGE, clip, localize_site, render_html
from recsys.errors import ValidationFailed
from recsys.schema import Dataset

Severity = Literal["error", "warning"]

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
        return jsonable(out)

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
            head += f": error: {clip(str(self.observed['exception']), 160)}"
        elif "observed_value" in self.observed:
            head += f": observed {clip(str(self.observed['observed_value']), 160)}"
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
        return jsonable(
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
        """Write ``out_dir/report.json`` and, under ``out_dir/data_docs/``, GX Data Docs and
        ``report.html`` (``recsys.data.validation_docs``: both readable without network).

        Data Docs are rendered by a file-backed GX context in a temporary directory (an
        ephemeral context would put them in a directory removed on exit) and the built site is
        swapped in atomically; ``report.json`` is written last, also atomically.
        """
        # The renderer needs GX, which only recsys.data.validation imports (and that module
        # imports this one): imported here, when a report is written.
        from recsys.data.validation import build_data_docs

        out_dir = Path(out_dir)
        with io.atomic_dir(out_dir / "data_docs") as site:
            build_data_docs(self, site)
            localize_site(site)
            io.write_text(render_html(self), site / REPORT_PAGE)
        io.write_json(self.to_dict(), out_dir / "report.json")


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


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
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


def _format_row(row: dict[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in row.items() if k != "row")
    return f"row {row.get('row')} ({fields})"
