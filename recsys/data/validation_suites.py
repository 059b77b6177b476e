"""The expectation suites, built in code: which GX expectation checks what, on which frame.

``build_plans`` turns a ``Dataset`` into ``Plan``s: one frame each (a canonical table, or a
small derived one: ``interaction_refs``, ``user_counts`` / ``item_counts``, ``drift``) with the
``Check``s to run on it. It takes the ``great_expectations.expectations`` module as an argument,
so that only ``recsys.data.validation`` imports GX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from recsys.config import ValidationConfig
from recsys.data.validation_drift import drift, profile
from recsys.data.validation_report import jsonable
from recsys.errors import ConfigError
from recsys.schema import (
    IMPLICIT,
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    ITEM_DTYPES,
    ITEM_ID,
    ITEM_REQUIRED,
    RATING,
    TIMESTAMP,
    USER_DTYPES,
    USER_ID,
    USER_REQUIRED,
    Dataset,
    with_id_dtypes,
)

N_INTERACTIONS: Final = "n_interactions"


# --- suites ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
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
class Plan:
    suite: str
    frame: pd.DataFrame
    """What GX validates; RangeIndex, so GX's index lists are 0-based positions."""
    samples: pd.DataFrame
    """Where sample rows are read from (same positions as ``frame``)."""
    checks: tuple[Check, ...]


def build_plans(
    dataset: Dataset,
    cfg: ValidationConfig,
    previous_profile: dict[str, Any] | None,
    now: float,
    gxe: Any,
) -> list[Plan]:
    """The suites for ``dataset``, in reporting order.

    Args:
      gxe: the ``great_expectations.expectations`` module.
    """
    inter = _positional(dataset.interactions)
    plans: list[Plan] = []

    checks: list[Check] = [
        Check(
            "columns",
            "interactions",
            tuple(INTERACTION_COLUMNS),
            "interactions have exactly the canonical columns",
            gxe.ExpectTableColumnsToMatchSet(
                column_set=list(INTERACTION_COLUMNS), exact_match=True
            ),
        ),
        Check(
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
            Check(
                "rating_range",
                "interactions",
                (RATING,),
                f"rating within [{_fmt(lo, '-inf')}, {_fmt(hi, 'inf')}]",
                gxe.ExpectColumnValuesToBeBetween(column=RATING, min_value=lo, max_value=hi),
            )
        )
    # A log without timestamps (a play-count file, data.csv.timestamp_unit: none) reads as 0 on
    # every row: there is no time to check. One 0 among real timestamps still fails.
    untimed = _numeric(inter, TIMESTAMP) and len(inter) > 0 and bool((inter[TIMESTAMP] == 0).all())
    if _numeric(inter, TIMESTAMP) and not untimed:
        min_ts = _min_timestamp(cfg)
        max_ts = math.floor(now + cfg.max_future_seconds)
        checks += [
            Check(
                "timestamp_min",
                "interactions",
                (TIMESTAMP,),
                f"timestamp not before {cfg.min_timestamp} ({min_ts})",
                gxe.ExpectColumnValuesToBeBetween(column=TIMESTAMP, min_value=min_ts),
            ),
            Check(
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
            Check(
                "unique_events",
                "interactions",
                tuple(event_key),
                "(user_id, item_id, timestamp) is unique",
                gxe.ExpectCompoundColumnsToBeUnique(column_list=event_key),
            )
        )
    plans.append(Plan("interactions", inter, inter, tuple(checks)))

    # Referential integrity as booleans aligned with the interactions (see module docstring).
    refs: dict[str, pd.Series] = {}
    ref_checks: list[Check] = []
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
            Check(
                known,
                "interactions",
                (col,),
                f"every interaction's {col} exists in {side_name}",
                gxe.ExpectColumnValuesToBeInSet(column=known, value_set=[True]),
            )
        )
    if ref_checks:
        plans.append(Plan("interaction_refs", pd.DataFrame(refs), inter, tuple(ref_checks)))

    # Per-user / per-item counts: the offending rows are ids with their counts.
    for col, table, minimum in (
        (USER_ID, "user_counts", cfg.min_interactions_per_user),
        (ITEM_ID, "item_counts", cfg.min_interactions_per_item),
    ):
        if col not in inter:
            continue
        counts = inter.groupby(col, sort=True).size().rename(N_INTERACTIONS).reset_index()
        who = "user" if col == USER_ID else "item"
        check = Check(
            f"{who}_min_interactions",
            table,
            (N_INTERACTIONS,),
            f"every {who} has at least {minimum} interaction(s)",
            gxe.ExpectColumnValuesToBeBetween(column=N_INTERACTIONS, min_value=minimum),
        )
        plans.append(Plan(table, counts, counts, (check,)))

    for name, side, required, dtypes in (
        ("items", dataset.items, ITEM_REQUIRED, ITEM_DTYPES),
        ("users", dataset.users, USER_REQUIRED, USER_DTYPES),
    ):
        if side is None:
            continue
        side = _positional(side)
        key = required[0]
        side_checks = _schema_checks(name, side, dtypes, gxe)
        if key in side:
            side_checks += [
                _not_null(name, key, gxe),
                Check(
                    f"{key}_unique",
                    name,
                    (key,),
                    f"{key} is unique in {name}",
                    gxe.ExpectColumnValuesToBeUnique(column=key),
                ),
            ]
        plans.append(Plan(name, side, side, tuple(side_checks)))

    if previous_profile is not None and _numeric(inter, RATING) and ITEM_ID in inter:
        plans += _drift_plan(dataset, cfg, previous_profile, gxe)
    return plans


def _drift_plan(
    dataset: Dataset, cfg: ValidationConfig, previous_profile: dict[str, Any], gxe: Any
) -> list[Plan]:
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
        expectation.meta = {"context": jsonable(info)}
        checks.append(
            Check(
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
    return [Plan("drift", frame, frame, tuple(checks))]


def _schema_checks(
    table: str, frame: pd.DataFrame, dtypes: dict[str, str], gxe: Any
) -> list[Check]:
    checks = []
    # An id column is int64 or, as soon as one id is not a plain integer, str (schema.STR_IDS).
    for col, dtype in with_id_dtypes(dtypes, frame).items():
        checks.append(
            Check(
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
            Check(f"{col}_type", table, (col,), f"{table}.{col} has dtype {dtype}", expectation)
        )
        if col in (USER_ID, ITEM_ID) and dtype == "str":
            checks.append(
                Check(
                    f"{col}_not_blank",
                    table,
                    (col,),
                    f"{table}.{col} string ids are not empty",
                    gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=1),
                )
            )
    return checks


def _not_null(table: str, col: str, gxe: Any) -> Check:
    return Check(
        f"{col}_not_null",
        table,
        (col,),
        f"{table}.{col} has no nulls",
        gxe.ExpectColumnValuesToNotBeNull(column=col),
    )


def tag(check: Check) -> Any:
    """The GX expectation with our check name in ``meta`` and our description and severity."""
    expectation = check.expectation
    expectation.meta = {**(expectation.meta or {}), "check": check.check, "table": check.table}
    expectation.description = check.description
    expectation.severity = check.severity
    return expectation


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


def _fmt(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"
