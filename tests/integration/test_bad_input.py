"""Every kind of bad input through ``recsys data prepare``: a clear error or a failed expectation
that names the file / column / row, no partial output, and the previous good artifacts intact
(RELIABILITY.md items 1-3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from recsys.cli import main
from tests.params import complete_params

HEADER = "user,item,stars,ts\n"
GOOD_ROWS = [
    f"{u},{i},{1 + (u * 7 + i) % 5},{1_600_000_000 + 3600 * (u * 10 + i)}\n"
    for u in range(1, 7)
    for i in range(1, 7)
]
ITEMS = "item_id,title,genres\n" + "".join(f"{i},Movie {i},Drama\n" for i in range(1, 7))


def rows_with(line_no: int, row: str) -> str:
    """The good file with data row ``line_no`` (1-based, header excluded) replaced."""
    rows = list(GOOD_ROWS)
    rows[line_no - 1] = row
    return HEADER + "".join(rows)


# name -> (file content (str or bytes), exit code, substrings the output must contain)
CASES: dict[str, tuple[Callable[[], str | bytes | None], int, tuple[str, ...]]] = {
    "missing_file": (lambda: None, 2, ("not found", "log.csv")),
    "empty_file": (lambda: "", 2, ("empty", "log.csv")),
    "wrong_separator": (
        lambda: (HEADER + "".join(GOOD_ROWS)).replace(",", ";"),
        2,
        ("separator", "';'", "log.csv"),
    ),
    "wrong_encoding": (
        lambda: (HEADER + "".join(GOOD_ROWS)).encode() + b"7,1,4,1600000000\xe9\n",
        2,
        ("utf-8", "line 38", "latin-1"),
    ),
    "malformed_line": (lambda: rows_with(4, "1,4,3,1600000000,extra\n"), 2, ("line 5", "fields")),
    "mixed_id_types": (  # issue 17: text ids are fine, but not against an integer item table
        lambda: rows_with(2, "1,SKU-2,3,1600000000\n"),
        2,
        ("mixed id types in 'item_id'", "log.csv", "items.csv", "'SKU-2'"),
    ),
    "empty_id": (
        lambda: rows_with(2, ",2,3,1600000000\n"),
        2,
        ("column 'user'", "line 3", "empty"),
    ),
    "side_table_matches_nothing": (
        lambda: HEADER + "".join(r.replace(",", ",10", 1) for r in GOOD_ROWS),
        2,
        ("none of the 6 item_ids", "items.csv", "belongs to these interactions"),
    ),
    "renamed_column": (
        lambda: HEADER.replace("stars", "score") + "".join(GOOD_ROWS),
        2,
        ("'stars'", "score", "log.csv"),
    ),
    "rating_out_of_range": (
        lambda: rows_with(3, "1,3,7,1600000000\n"),
        1,
        ("rating", "expect_column_values_to_be_between", "7.0"),
    ),
    "rating_nan": (
        lambda: rows_with(3, "1,3,,1600000000\n"),
        1,
        ("rating", "expect_column_values_to_not_be_null", "row"),
    ),
    "future_timestamp": (
        lambda: rows_with(3, "1,3,4,4102444800\n"),
        1,
        ("timestamp", "4102444800"),
    ),
    "duplicate_rows": (
        lambda: HEADER + "".join(GOOD_ROWS) + GOOD_ROWS[0],
        1,
        ("expect_compound_columns_to_be_unique", "user_id", "item_id"),
    ),
    "unknown_item": (
        lambda: HEADER + "".join(GOOD_ROWS) + "2,99,4,1600000000\n",
        1,
        ("item_id", "99"),
    ),
}


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "items.csv").write_text(ITEMS)
    params = {
        "data": {
            "source": "csv",
            "csv": {
                "columns": {
                    "user_id": "user",
                    "item_id": "item",
                    "rating": "stars",
                    "timestamp": "ts",
                },
                "items_path": "items.csv",
            },
        },
        "validation": {"min_interactions_per_user": 1},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(complete_params(params)))
    (tmp_path / "log.csv").write_text(HEADER + "".join(GOOD_ROWS))
    assert prepare(tmp_path) == 0, "the good file must pass"
    assert (tmp_path / "last_pass.json").is_file()  # its passing verdict, recorded
    return tmp_path


def prepare(project: Path) -> int:
    """``recsys data prepare`` as dvc.yaml runs it: with the verdict the good file recorded
    (issue #16, part 2), which must not let any other input through unvalidated."""
    return main(
        [
            "data", "prepare",
            "--params", str(project / "params.yaml"),
            "--path", str(project / "log.csv"),
            "--out", str(project / "prepared"),
            "--report-dir", str(project / "reports"),
            "--reuse-verdict", str(project / "last_pass.json"),
        ]
    )  # fmt: skip


def test_the_cases_cover_the_issue_list() -> None:
    assert len(CASES) >= 13


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_reported_and_keeps_good_data(
    case: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, expected_code, needles = CASES[case]
    before = tree_bytes(project / "prepared")
    content = make()
    log = project / "log.csv"
    if content is None:
        log.unlink()
    elif isinstance(content, bytes):
        log.write_bytes(content)
    else:
        log.write_text(content)
    capsys.readouterr()

    code = prepare(project)

    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == expected_code, text
    for needle in needles:
        assert needle in text, f"{case}: {needle!r} missing from:\n{text}"
    assert "Traceback" not in text
    assert tree_bytes(project / "prepared") == before
    debris = [p.name for p in project.iterdir() if p.name.startswith(".prepared")]
    assert debris == []
    if expected_code == 1:  # a failed expectation: the report is kept for inspection
        failed = [d for d in (project / "reports").iterdir() if d.name.endswith("-fail")]
        assert len(failed) == 1 and (failed[0] / "report.json").is_file()
