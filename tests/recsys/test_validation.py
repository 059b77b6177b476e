"""GX validation suites: valid data passes; each corruption fails the right check, naming the
column and the offending rows; drift warns without blocking; quarantine; report files."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys.config import CsvConfig, DataConfig, DriftConfig, ValidationConfig
from recsys.data.io import read_json, read_yaml
from recsys.data.sources import read_movielens
from recsys.data.validation import (
    ExpectationOutcome,
    ValidationReport,
    drift,
    profile,
    split_quarantine,
    total_variation,
    validate,
)
from recsys.data.validation_verdict import (
    PACKAGE_ROOT,
    ValidationResult,
    code_files,
    reusable_verdict,
    validation_key,
)
from recsys.errors import DataError, ValidationFailed
from recsys.schema import IMPLICIT, Dataset
from tests.conftest import REPO
from tests.params import complete_params
from tests.recsys.test_preprocess import as_text

NOW = 1_700_000_000.0  # 2023-11-14; every tiny timestamp is in 1998
T0 = 900_000_000
CFG = ValidationConfig(min_interactions_per_user=2, min_interactions_per_item=2, sample_rows=3)
LOOSE = ValidationConfig(sample_rows=3)  # minimum 1 per user/item: adding an id fails nothing else


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """4 users x 3 ratings each over 4 items (3 ratings each); rows 1..12 in (user, item) order."""
    rows = [
        (1, 10, 4.0),
        (1, 11, 3.0),
        (1, 12, 5.0),
        (2, 10, 2.0),
        (2, 11, 4.5),
        (2, 13, 1.0),
        (3, 10, 5.0),
        (3, 12, 3.5),
        (3, 13, 4.0),
        (4, 11, 2.5),
        (4, 12, 4.0),
        (4, 13, 3.0),
    ]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    interactions["timestamp"] = T0 + 60 * np.arange(len(rows), dtype="int64")
    items = pd.DataFrame(
        {
            "item_id": [10, 11, 12, 13],
            "title": ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Babe (1995)"],
            "genres": ["Animation|Comedy", "Action|Crime", "Crime|Drama", ""],
        }
    )
    users = pd.DataFrame({"user_id": [1, 2, 3, 4], "age": [24, 53, 23, 33]})
    return Dataset(interactions=interactions, items=items, users=users, name="tiny")


@pytest.fixture(scope="module")
def tiny_report(tiny: Dataset) -> ValidationReport:
    return validate(tiny, CFG, now=NOW)


def with_interactions(ds: Dataset, interactions: pd.DataFrame) -> Dataset:
    return dataclasses.replace(ds, interactions=interactions.reset_index(drop=True))


def edit(ds: Dataset, row: int, column: str, value: object) -> Dataset:
    """Copy of ``ds`` with interaction ``row`` (1-based) set to ``value`` in ``column``."""
    inter = ds.interactions.copy()
    inter.loc[row - 1, column] = value
    return with_interactions(ds, inter)


def failure(report: ValidationReport, check: str) -> ExpectationOutcome:
    found = [o for o in report.failures if o.check == check]
    assert len(found) == 1, f"{check} did not fail once:\n{report.summary()}"
    return found[0]


def failed_checks(report: ValidationReport) -> set[str]:
    return {o.check for o in report.failures}


# --- the valid data set ---------------------------------------------------------------------
def test_valid_data_passes(tiny_report: ValidationReport) -> None:
    assert tiny_report.success, tiny_report.summary()
    assert tiny_report.failures == () and tiny_report.warnings == ()
    assert tiny_report.row_counts == {"interactions": 12, "items": 4, "users": 4}
    assert tiny_report.dataset == "tiny" and tiny_report.gx_version.startswith("1.")
    tables = {o.table for o in tiny_report.outcomes}
    assert tables == {"interactions", "items", "users", "user_counts", "item_counts"}
    checks = {o.check for o in tiny_report.outcomes}
    assert {"rating_range", "timestamp_future", "item_id_known", "user_id_known"} <= checks
    assert all(o.severity == "error" for o in tiny_report.outcomes)
    assert not tiny_report.row_mask("interactions").any()


def test_a_log_without_timestamps_passes_without_time_checks(tiny: Dataset) -> None:
    """Every timestamp 0 (a play-count log has none): no timestamp_min to fail; one 0 among
    real timestamps is still caught (the "1970" corruption below)."""
    inter = tiny.interactions.assign(timestamp=0)
    report = validate(with_interactions(tiny, inter), CFG, now=NOW)
    assert report.success, report.summary()
    assert not {"timestamp_min", "timestamp_future"} & {o.check for o in report.outcomes}
    assert "timestamp_min" in failed_checks(validate(edit(tiny, 3, "timestamp", 0), CFG, now=NOW))


def test_gx_is_imported_lazily() -> None:
    code = "import sys, recsys.data.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_validation_is_quiet(tiny: Dataset, capfd: pytest.CaptureFixture[str]) -> None:
    validate(tiny, CFG, now=NOW)
    out, err = capfd.readouterr()
    assert out == "" and "Calculating Metrics" not in err and err == ""


# --- corruptions: (corrupt, failing checks, the check to inspect, its columns, rows) ---------
def _duplicate_first(ds: Dataset) -> Dataset:
    return with_interactions(ds, pd.concat([ds.interactions, ds.interactions.iloc[[0]]]))


def _drop_rows(*rows: int) -> Callable[[Dataset], Dataset]:
    return lambda ds: with_interactions(ds, ds.interactions.drop(index=[r - 1 for r in rows]))


CORRUPTIONS: dict[str, tuple[Callable[[Dataset], Dataset], set[str], str, tuple[str, ...]]] = {
    "rating out of range": (
        lambda ds: edit(ds, 3, "rating", 7.0),
        {"rating_range"},
        "rating_range",
        ("rating",),
    ),
    "rating below range": (
        lambda ds: edit(ds, 2, "rating", 0.0),
        {"rating_range"},
        "rating_range",
        ("rating",),
    ),
    "NaN rating": (
        lambda ds: edit(ds, 5, "rating", np.nan),
        {"rating_not_null"},
        "rating_not_null",
        ("rating",),
    ),
    # int64 cannot hold a null: the column becomes float64, so the dtype check fails too.
    "null user_id": (
        lambda ds: edit(ds, 2, "user_id", np.nan),
        {"user_id_not_null", "user_id_type"},
        "user_id_not_null",
        ("user_id",),
    ),
    "future timestamp": (
        lambda ds: edit(ds, 4, "timestamp", int(NOW) + 3600),
        {"timestamp_future"},
        "timestamp_future",
        ("timestamp",),
    ),
    "timestamp before 1995": (
        lambda ds: edit(ds, 6, "timestamp", 700_000_000),
        {"timestamp_min"},
        "timestamp_min",
        ("timestamp",),
    ),
    "unknown item": (
        lambda ds: edit(ds, 7, "item_id", 99),
        {"item_id_known"},
        "item_id_known",
        ("item_id",),
    ),
    "unknown user": (
        lambda ds: edit(ds, 8, "user_id", 77),
        {"user_id_known"},
        "user_id_known",
        ("user_id",),
    ),
}
EXPECTED_ROWS = {
    "rating out of range": [3],
    "rating below range": [2],
    "NaN rating": [5],
    "null user_id": [2],
    "future timestamp": [4],
    "timestamp before 1995": [6],
    "unknown item": [7],
    "unknown user": [8],
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_row_corruption_fails_on_the_right_check(tiny: Dataset, name: str) -> None:
    corrupt, expected, check, columns = CORRUPTIONS[name]
    bad = corrupt(tiny)
    report = validate(bad, LOOSE, now=NOW)
    assert not report.success
    assert failed_checks(report) == expected, report.summary()
    out = failure(report, check)
    assert out.table == "interactions" and out.columns == columns
    assert out.unexpected_count == len(EXPECTED_ROWS[name])
    rows = EXPECTED_ROWS[name]
    assert [r["row"] for r in out.sample_rows] == rows
    # The sample is the offending row itself, all its columns, in JSON terms.
    offending = bad.interactions.iloc[rows[0] - 1].to_dict()
    sample = out.sample_rows[0]
    for col, value in offending.items():
        assert sample[col] == (None if pd.isna(value) else value), (col, sample)
    assert np.flatnonzero(report.row_mask("interactions")).tolist() == [r - 1 for r in rows]


def test_duplicate_event_names_both_copies(tiny: Dataset) -> None:
    report = validate(_duplicate_first(tiny), LOOSE, now=NOW)
    assert failed_checks(report) == {"unique_events"}
    out = failure(report, "unique_events")
    assert out.columns == ("user_id", "item_id", "timestamp")
    assert out.expectation == "expect_compound_columns_to_be_unique"
    assert [r["row"] for r in out.sample_rows] == [1, 13]
    assert out.sample_rows[0] == {
        "row": 1,
        "user_id": 1,
        "item_id": 10,
        "rating": 4.0,
        "timestamp": T0,
    }


def test_renamed_column_names_it(tiny: Dataset) -> None:
    bad = with_interactions(tiny, tiny.interactions.rename(columns={"rating": "score"}))
    report = validate(bad, LOOSE, now=NOW)
    assert failed_checks(report) == {"columns", "rating_exists"}
    assert failure(report, "rating_exists").columns == ("rating",)
    assert failure(report, "rating_exists").expectation == "expect_column_to_exist"
    mismatch = failure(report, "columns")
    assert mismatch.columns == ("rating", "score")
    assert mismatch.observed["mismatched"] == {"missing": ["rating"], "unexpected": ["score"]}


def test_missing_and_extra_columns(tiny: Dataset) -> None:
    report = validate(with_interactions(tiny, tiny.interactions.drop(columns="timestamp")), LOOSE)
    assert failed_checks(report) == {"columns", "timestamp_exists"}
    extra = tiny.interactions.assign(source="web")
    report = validate(with_interactions(tiny, extra), LOOSE, now=NOW)
    assert failed_checks(report) == {"columns"}
    assert failure(report, "columns").columns == ("source",)


def test_string_ratings_fail_the_dtype_check(tiny: Dataset) -> None:
    bad = with_interactions(tiny, tiny.interactions.astype({"rating": "str"}))
    report = validate(bad, LOOSE, now=NOW)
    assert failed_checks(report) == {"rating_type"}
    out = failure(report, "rating_type")
    assert out.columns == ("rating",) and out.expectation == "expect_column_values_to_be_of_type"
    assert out.observed["observed_value"] == "str"


def test_user_below_min_interactions(tiny: Dataset) -> None:
    report = validate(_drop_rows(10, 11)(tiny), CFG, now=NOW)  # user 4 keeps 1 rating
    assert failed_checks(report) == {"user_min_interactions"}
    out = failure(report, "user_min_interactions")
    assert out.table == "user_counts" and out.columns == ("n_interactions",)
    assert out.sample_rows == ({"row": 4, "user_id": 4, "n_interactions": 1},)


def test_item_below_min_interactions(tiny: Dataset) -> None:
    report = validate(_drop_rows(6, 9)(tiny), CFG, now=NOW)  # item 13 keeps 1 rating
    assert failed_checks(report) == {"item_min_interactions"}
    out = failure(report, "item_min_interactions")
    assert out.table == "item_counts"
    assert out.sample_rows == ({"row": 4, "item_id": 13, "n_interactions": 1},)


def test_side_table_problems(tiny: Dataset) -> None:
    items = pd.concat([tiny.items, tiny.items.iloc[[1]]], ignore_index=True)
    users = tiny.users.rename(columns={"user_id": "uid"})
    report = validate(dataclasses.replace(tiny, items=items, users=users), LOOSE, now=NOW)
    assert failed_checks(report) == {"item_id_unique", "user_id_exists"}
    assert [r["row"] for r in failure(report, "item_id_unique").sample_rows] == [2, 5]
    assert failure(report, "user_id_exists").table == "users"


def test_empty_interactions_fail(tiny: Dataset) -> None:
    report = validate(with_interactions(tiny, tiny.interactions.iloc[:0]), LOOSE, now=NOW)
    assert failed_checks(report) == {"not_empty"}


def test_rating_bounds_follow_config_then_scale_then_implicit(tiny: Dataset) -> None:
    strict = dataclasses.replace(LOOSE, rating_max=4.5)
    assert [
        r["row"] for r in failure(validate(tiny, strict, now=NOW), "rating_range").sample_rows
    ] == [3, 7]
    implicit = dataclasses.replace(tiny, feedback=IMPLICIT, rating_scale=None)
    counts = edit(implicit, 1, "rating", 250.0)
    assert validate(counts, LOOSE, now=NOW).success
    negative = edit(implicit, 1, "rating", -1.0)
    assert failed_checks(validate(negative, LOOSE, now=NOW)) == {"rating_range"}


def test_clock_skew_and_default_now(tiny: Dataset) -> None:
    soon = edit(tiny, 1, "timestamp", int(NOW) + 30)
    assert not validate(soon, LOOSE, now=NOW).success
    assert validate(soon, dataclasses.replace(LOOSE, max_future_seconds=60), now=NOW).success
    assert validate(tiny, LOOSE).success  # now = time.time()


def test_rows_are_positions_even_with_a_custom_index(tiny: Dataset) -> None:
    inter = tiny.interactions.copy()
    inter.loc[2, "rating"] = 7.0  # row 3 in file order
    shuffled = dataclasses.replace(tiny, interactions=inter.set_axis(inter.index * 10 + 5))
    report = validate(shuffled, LOOSE, now=NOW)
    assert [r["row"] for r in failure(report, "rating_range").sample_rows] == [3]
    kept, quarantined = split_quarantine(shuffled, report)
    assert quarantined["row"].tolist() == [3] and quarantined["rating"].tolist() == [7.0]
    assert len(kept.interactions) == 11


# --- drift ----------------------------------------------------------------------------------
def test_profile_is_compact_json(tiny: Dataset) -> None:
    prof = profile(tiny)
    assert json.loads(json.dumps(prof)) == prof
    assert prof["rows"] == {"interactions": 12, "items": 4, "users": 4}
    assert prof["rating"]["binning"] == "exact"
    assert prof["rating"]["histogram"]["4"] == 3
    assert prof["item_popularity"]["top"] == {"10": 3, "11": 3, "12": 3, "13": 3}
    assert prof["timestamp"] == {"min": T0, "max": T0 + 660}


def test_total_variation() -> None:
    assert total_variation({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0
    assert total_variation({"a": 1}, {"b": 5}) == 1.0
    assert total_variation({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)


def test_drift_within_tolerance_gives_no_warning(tiny: Dataset) -> None:
    report = validate(tiny, CFG, previous_profile=profile(tiny), now=NOW)
    assert report.success and report.warnings == ()
    drift_checks = {o.check: o for o in report.outcomes if o.table == "drift"}
    assert set(drift_checks) == {"rating_histogram_drift", "item_popularity_drift"}
    assert all(o.severity == "warning" and o.success for o in drift_checks.values())


def test_rating_drift_warns_but_does_not_block(tiny: Dataset) -> None:
    shifted = with_interactions(tiny, tiny.interactions.assign(rating=1.0))
    report = validate(shifted, CFG, previous_profile=profile(tiny), now=NOW)
    assert report.success and report.failures == ()
    (warning,) = report.warnings
    assert warning.check == "rating_histogram_drift" and warning.severity == "warning"
    assert warning.observed["observed_value"] == pytest.approx(11 / 12)  # only 1 of 12 was 1.0
    assert "WARNING" in report.summary() and "rating_histogram" in report.summary()


def test_popularity_drift_warns(tiny: Dataset) -> None:
    previous = profile(tiny)
    previous["item_popularity"]["top"] = {"10": 90, "11": 5, "12": 3, "13": 2}
    report = validate(tiny, CFG, previous_profile=previous, now=NOW)
    assert report.success
    assert [w.check for w in report.warnings] == ["item_popularity_drift"]
    assert report.warnings[0].observed["shared_items"] == 4
    tolerant = dataclasses.replace(CFG, drift=DriftConfig(max_popularity_tvd=0.9))
    assert validate(tiny, tolerant, previous_profile=previous, now=NOW).warnings == ()


def test_partial_previous_profile_skips_missing_parts(tiny: Dataset) -> None:
    previous = {k: v for k, v in profile(tiny).items() if k != "rating"}
    report = validate(tiny, CFG, previous_profile=previous, now=NOW)
    assert report.success
    assert [o.check for o in report.outcomes if o.table == "drift"] == ["item_popularity_drift"]


def test_drift_on_implicit_counts_uses_log2_buckets(tiny: Dataset) -> None:
    implicit = dataclasses.replace(tiny, feedback=IMPLICIT, rating_scale=None)
    prof = profile(implicit)
    assert prof["rating"]["binning"] == "log2"
    assert drift(prof, prof)["rating_histogram_tvd"]["tvd"] == 0.0


# --- quarantine -----------------------------------------------------------------------------
def test_quarantine_splits_exactly_the_bad_rows(tiny: Dataset) -> None:
    bad = edit(tiny, 3, "rating", 9.0)
    bad = edit(bad, 4, "timestamp", int(NOW) + 10)
    bad = edit(bad, 5, "rating", np.nan)
    bad = edit(bad, 7, "item_id", 99)
    bad = edit(bad, 9, "rating", 9.0)  # two failures on one row: listed once, both named
    bad = edit(bad, 9, "user_id", 77)
    bad = _duplicate_first(bad)
    report = validate(bad, LOOSE, now=NOW)
    assert not report.success and report.quarantinable
    kept, quarantined = split_quarantine(bad, report)
    assert quarantined["row"].tolist() == [1, 3, 4, 5, 7, 9, 13]
    assert quarantined["failed_expectations"].tolist() == [
        "unique_events",
        "rating_range",
        "timestamp_future",
        "rating_not_null",
        "item_id_known",
        "rating_range;user_id_known",
        "unique_events",
    ]
    pd.testing.assert_frame_equal(
        quarantined.drop(columns=["row", "failed_expectations"]),
        bad.interactions.iloc[[0, 2, 3, 4, 6, 8, 12]].reset_index(drop=True),
    )
    expected_kept = bad.interactions.iloc[[1, 5, 7, 9, 10, 11]].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept.interactions, expected_kept)
    assert kept.items is tiny.items and kept.users is tiny.users
    assert validate(kept, LOOSE, now=NOW).success


def test_quarantine_refuses_table_level_failures(tiny: Dataset) -> None:
    bad = with_interactions(tiny, tiny.interactions.rename(columns={"rating": "score"}))
    report = validate(bad, LOOSE, now=NOW)
    assert not report.quarantinable
    with pytest.raises(ValidationFailed, match="rating_exists"):
        split_quarantine(bad, report)
    with pytest.raises(ValueError, match="report covers"):
        split_quarantine(_duplicate_first(tiny), validate(tiny, LOOSE, now=NOW))


# --- report output --------------------------------------------------------------------------
def test_summary_names_expectation_column_and_samples(tiny: Dataset) -> None:
    report = validate(edit(tiny, 3, "rating", 7.0), LOOSE, now=NOW)
    text = report.summary()
    lines = text.splitlines()
    assert "FAILED" in lines[0]
    (line,) = [ln for ln in lines if "rating_range" in ln]
    assert "interactions.rating" in line and "expect_column_values_to_be_between" in line
    assert "1 unexpected" in line and "row 3 (user_id=1, item_id=12, rating=7.0" in line
    assert lines[-1].startswith("total: 1 failed, 0 warning(s)")
    assert lines[-2].startswith("(row N = ")  # the legend comes with any failure
    assert len(lines) == 4
    assert "passed" in validate(tiny, LOOSE, now=NOW).summary().splitlines()[0]


def test_write_report_and_data_docs(tiny: Dataset, tmp_path: Path) -> None:
    bad = edit(tiny, 5, "rating", np.nan)  # a NaN must come out as JSON null
    report = validate(bad, CFG, previous_profile=profile(tiny), now=NOW)
    report.write(tmp_path / "report")
    loaded = read_json(tmp_path / "report" / "report.json")
    assert loaded == report.to_dict()
    assert loaded["success"] is False and loaded["statistics"]["failures"] == 1
    nan_row = failure(report, "rating_not_null").to_dict()["sample_rows"][0]
    assert nan_row == {"row": 5, "user_id": 2, "item_id": 11, "rating": None, "timestamp": T0 + 240}
    docs = tmp_path / "report" / "data_docs"
    index = (docs / "index.html").read_text(encoding="utf-8")
    pages = sorted(docs.glob("validations/**/*.html"))
    assert {p.parent.parent.parent.name for p in pages} == {
        "interactions",
        "interaction_refs",
        "items",
        "users",
        "user_counts",
        "item_counts",
        "drift",
    }
    assert all(str(p.relative_to(docs)) in index for p in pages)
    page = next(p for p in pages if "interactions/" in str(p.relative_to(docs)))
    assert "interactions.rating has no nulls" in page.read_text(encoding="utf-8")
    # Writing again replaces the site atomically and leaves no temporary directories.
    report.write(tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["data_docs", "report.json"]


_REMOTE_ASSET = re.compile(r"<(?:link|script|img)\b[^>]*(?:href|src)\s*=\s*[\"']https?://", re.I)


def test_written_docs_open_without_network(tiny: Dataset, tmp_path: Path) -> None:
    """Issue #16: no page loads CSS, JS or images from a CDN; report.html holds the findings."""
    bad = edit(tiny, 3, "rating", 7.0)
    validate(bad, CFG, now=NOW).write(tmp_path / "report")
    docs = tmp_path / "report" / "data_docs"
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) > 5
    for page in pages:
        assert not _REMOTE_ASSET.search(page.read_text(encoding="utf-8")), page
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert "href='report.html'" in index  # the plain page list, readable without JavaScript
    summary = (docs / "report.html").read_text(encoding="utf-8")
    assert "rating_range" in summary and "expect_column_values_to_be_between" in summary
    assert "<td>7.0</td>" in summary  # the offending row itself


def test_recsys_data_docs_serves_the_report(tiny: Dataset, tmp_path: Path) -> None:
    validate(tiny, CFG, now=NOW).write(tmp_path / "run-1")
    cmd = [str(Path(sys.executable).parent / "recsys"), "data", "docs", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--reports", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline())
        assert url is not None
        with urllib.request.urlopen(url.group(0) + "run-1/data_docs/report.html", timeout=10) as r:
            assert r.status == 200
            assert "Validation of <code>tiny</code>" in r.read().decode("utf-8")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- MovieLens 100K -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path) -> Dataset:
    """The canonical tables as the pipeline reads them."""
    return read_movielens(ml100k_dir)


def test_ml100k_passes(ml100k: Dataset) -> None:
    assert ml100k.interactions.shape == (100_000, 4) and len(ml100k.items) == 1682
    # Every MovieLens user has rated at least 20 movies.
    cfg = ValidationConfig(min_interactions_per_user=20)
    report = validate(ml100k, cfg, previous_profile=profile(ml100k))
    assert report.success and report.warnings == (), report.summary()
    assert failed_checks(validate(ml100k, ValidationConfig(min_interactions_per_user=21))) == {
        "user_min_interactions"
    }


def _ml_corruptions(now: float) -> dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]]:
    """Name -> (corrupt a copy of the interactions, the check that must fail)."""

    def at(row: int, column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
        def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame.copy()
            frame.loc[row, column] = value
            return frame

        return corrupt

    return {
        "rating 6": (at(17, "rating", 6.0), "rating_range"),
        "rating 0": (at(99_999, "rating", 0.0), "rating_range"),
        "NaN rating": (at(500, "rating", np.nan), "rating_not_null"),
        "null item_id": (at(42, "item_id", np.nan), "item_id_not_null"),
        "future": (at(1000, "timestamp", int(now) + 86_400), "timestamp_future"),
        "1970": (at(7, "timestamp", 0), "timestamp_min"),
        "duplicate": (lambda f: pd.concat([f, f.iloc[[123]]], ignore_index=True), "unique_events"),
        "unknown item": (at(2024, "item_id", 1683), "item_id_known"),
        "unknown user": (at(31_337, "user_id", 944), "user_id_known"),
        "renamed timestamp": (
            lambda f: f.rename(columns={"timestamp": "time"}),
            "timestamp_exists",
        ),
        "string ratings": (lambda f: f.astype({"rating": "str"}), "rating_type"),
        "int ratings": (lambda f: f.astype({"rating": "int64"}), "rating_type"),
        "extra column": (lambda f: f.assign(tag="x"), "columns"),
    }


def test_ml100k_corruptions_fail_on_the_right_check(ml100k: Dataset) -> None:
    now = 1_000_000_000.0  # 2001: MovieLens 100K was collected 1997-98
    corruptions = _ml_corruptions(now)
    assert len(corruptions) >= 10
    for name, (corrupt, check) in corruptions.items():
        report = validate(
            dataclasses.replace(ml100k, interactions=corrupt(ml100k.interactions)),
            ValidationConfig(),
            now=now,
        )
        assert not report.success, name
        assert check in failed_checks(report), f"{name}:\n{report.summary()}"
        out = failure(report, check)
        if out.row_level:
            assert out.sample_rows, name
            for sample in out.sample_rows:  # the samples are really the offending rows
                assert sample["row"] - 1 in np.flatnonzero(report.row_mask("interactions"))


# --- the verdict key and its reuse (issue #16, part 2) ---------------------------------------
def copy_package(dest: Path) -> Path:
    shutil.copytree(PACKAGE_ROOT, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_any_validation_code_change_changes_the_key(tmp_path: Path) -> None:
    code = copy_package(tmp_path / "recsys")
    data, cfg = DataConfig(), ValidationConfig()

    def key() -> str:
        return validation_key(data, cfg, baseline=None, code_root=code)

    before = key()
    assert key() == before  # deterministic
    for changed in (
        "data/validation_suites.py",
        "data/validation_drift.py",
        "data/validation_verdict.py",
        "data/sources/csv_source.py",
        "data/synthetic/latent.py",
        "schema.py",
    ):
        with (code / changed).open("a") as fh:
            fh.write("\n# changed\n")
        assert key() != before, changed
        before = key()
    (code / "data" / "sources" / "parquet_source.py").write_text("# a new reader\n")
    assert key() != before
    before = key()
    with (code / "models" / "base.py").open("a") as fh:  # not validation code
        fh.write("\n# changed\n")
    assert key() == before


def test_key_follows_input_params_and_baseline(tmp_path: Path) -> None:
    log, items, baseline = tmp_path / "log.csv", tmp_path / "items.csv", tmp_path / "profile.json"
    log.write_text("user_id,item_id\n1,2\n")
    items.write_text("item_id,title\n2,Heat\n")
    data = DataConfig(source="csv", path=str(log), csv=CsvConfig(items_path="items.csv"))
    cfg = ValidationConfig()
    first = validation_key(data, cfg, baseline=baseline)
    baseline.write_text("{}")
    with_baseline = validation_key(data, cfg, baseline=baseline)
    assert with_baseline != first
    items.write_text("item_id,title\n2,Fargo\n")  # the side table, found beside the log
    assert validation_key(data, cfg, baseline=baseline) != with_baseline
    stricter = dataclasses.replace(cfg, min_interactions_per_user=9)
    assert validation_key(data, stricter, baseline=baseline) != validation_key(
        data, cfg, baseline=baseline
    )
    log.write_text("user_id,item_id\n1,3\n")
    assert validation_key(data, cfg, baseline=baseline) != with_baseline


def test_key_covers_the_code_the_prepare_stage_depends_on() -> None:
    """dvc.yaml re-runs `prepare` when these change; the verdict must not outlive them either."""
    stage = read_yaml(REPO / "dvc.yaml")["stages"]["prepare"]
    named = {name for name, _ in code_files()}
    for dep in stage["deps"]:
        if not dep.startswith("recsys/") or dep.startswith("recsys/cli"):
            continue  # the CLI only reads options into the params the key holds
        rel = Path(dep).relative_to("recsys")
        under = PACKAGE_ROOT / rel
        files = (
            [rel.as_posix()]
            if under.is_file()
            else [
                (rel / f.relative_to(under)).as_posix()
                for f in under.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts
            ]
        )
        assert files and set(files) <= named, dep
    assert {f.name for f in (PACKAGE_ROOT / "data").glob("validation*.py")} <= {
        Path(n).name for n in named
    }


def test_result_round_trip_and_malformed(tmp_path: Path) -> None:
    result = ValidationResult(
        key="k", passed=True, failures=0, warnings=1, report="r/report.json",
        data_docs="r/data_docs/index.html", dataset="tiny",
    )  # fmt: skip
    result.write(tmp_path / "result.json")
    assert ValidationResult.read(tmp_path / "result.json") == result
    (tmp_path / "bad.json").write_text(json.dumps({**result.to_dict(), "extra": 1}))
    with pytest.raises(DataError, match="unknown"):
        ValidationResult.read(tmp_path / "bad.json")
    # A recorded pass is reused only for the same key and while its report exists.
    assert reusable_verdict(tmp_path / "result.json", "k") is None  # no report file
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text("{}")
    result = dataclasses.replace(result, report=str(tmp_path / "r" / "report.json"))
    result.write(tmp_path / "result.json")
    reused = reusable_verdict(tmp_path / "result.json", "k")
    assert reused is not None and reused.reused and reused.report == result.report
    assert reusable_verdict(tmp_path / "result.json", "other") is None
    assert reusable_verdict(tmp_path / "bad.json", "k") is None
    assert reusable_verdict(None, "k") is None


def test_prepare_reuses_the_verdict_of_validate_once(
    tiny: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recsys data validate` then `recsys data prepare` on the same input: one validation
    (one report directory); a changed input is validated again and, failing, writes nothing."""
    from recsys.cli import main

    monkeypatch.chdir(tmp_path)
    tiny.interactions.to_csv("log.csv", index=False)
    params = complete_params(
        {
            "data": {
                "source": "csv",
                "path": "log.csv",
                "csv": {"implicit": False, "rating_scale": [1.0, 5.0]},
            },
            "validation": {"min_interactions_per_user": 2, "min_interactions_per_item": 2},
        }
    )
    Path("params.yaml").write_text(yaml.safe_dump(params))
    verdict = Path("reports/last_pass.json")
    common = ["--params", "params.yaml", "--report-dir", "reports", "--reuse-verdict", str(verdict)]
    assert main(["data", "validate", *common, "--against", "prepared", "--result", "v.json"]) == 0
    validated = ValidationResult.read(Path("v.json"))
    assert validated.passed and not validated.reused and validated.failures == 0
    assert ValidationResult.read(verdict) == validated
    assert Path(validated.report).is_file() and Path(validated.data_docs).is_file()

    assert main(["data", "prepare", *common, "--out", "prepared", "--result", "p.json"]) == 0
    prepared = ValidationResult.read(Path("p.json"))
    assert prepared.reused and prepared.key == validated.key
    assert prepared.report == validated.report
    assert len([d for d in Path("reports").iterdir() if d.is_dir()]) == 1  # validated once
    assert Path("prepared/profile.json").is_file()
    written = Path("prepared/interactions.parquet").read_bytes()

    bad = tiny.interactions.copy()
    bad.loc[0, "rating"] = 9.0  # outside the rating scale: a blocking failure
    bad.to_csv("log.csv", index=False)
    assert main(["data", "prepare", *common, "--out", "prepared", "--result", "p.json"]) == 1
    failed = ValidationResult.read(Path("p.json"))
    assert not failed.passed and not failed.reused and failed.failures >= 1
    assert failed.key != validated.key
    assert Path("prepared/interactions.parquet").read_bytes() == written  # nothing overwritten
    assert ValidationResult.read(verdict) == validated  # a failure is not recorded as a pass


# --- string ids (issue 17) ------------------------------------------------------------------
def test_string_ids_pass_and_blank_or_mismatched_ones_fail(tiny: Dataset) -> None:
    text = as_text(tiny)
    report = validate(text, CFG, now=NOW)
    assert report.success, report.summary()
    checks = {o.check for o in report.outcomes}
    assert {"user_id_type", "item_id_not_blank", "item_id_known"} <= checks
    blank = validate(edit(text, 2, "user_id", ""), CFG, now=NOW)
    assert "user_id_not_blank" in failed_checks(blank)
    assert [r["row"] for r in failure(blank, "user_id_not_blank").sample_rows] == [2]
    assert text.items is not None
    numeric_items = dataclasses.replace(text, items=tiny.items)  # 10, 11, ... vs "SKU-10-B"
    assert "item_id_known" in failed_checks(validate(numeric_items, CFG, now=NOW))
    assert "item_id_not_blank" not in {o.check for o in validate(tiny, CFG, now=NOW).outcomes}
