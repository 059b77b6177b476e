"""The ``recsys data`` commands end to end, in-process, on small synthetic and CSV inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.cli import build_parser, main
from tests.params import complete_params

SMALL_PARAMS = {
    "data": {"source": "synthetic", "synthetic": {"n_interactions": 3000, "seed": 7}},
    "validation": {"min_interactions_per_user": 5},
    "preprocess": {
        "min_user_interactions": 3,
        "min_item_interactions": 3,
        "split": {"method": "temporal_holdout", "test_fraction": 0.2, "val_fraction": 0.1},
    },
}


def write_params(tmp_path: Path, **overrides: dict) -> Path:
    params = json.loads(json.dumps(SMALL_PARAMS))
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(complete_params(params)))
    return path


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def good_csv(path: Path) -> Path:
    rows = [
        (u, i, float(1 + (u + i) % 5), 1_600_000_000 + 60 * (u * 10 + i))
        for u in range(1, 7)
        for i in range(1, 7)
    ]
    pd.DataFrame(rows, columns=["user", "item", "stars", "ts"]).to_csv(path, index=False)
    return path


def csv_params(tmp_path: Path) -> Path:
    return write_params(
        tmp_path,
        data={
            "source": "csv",
            "csv": {
                "columns": {
                    "user_id": "user",
                    "item_id": "item",
                    "rating": "stars",
                    "timestamp": "ts",
                }
            },
        },
    )


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--help"],
        ["data", "--help"],
        ["data", "prepare", "--help"],
        ["data", "validate", "--help"],
        ["data", "preprocess", "--help"],
        ["data", "download", "--help"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: recsys"), argv
        if argv[-2:-1] in (["prepare"], ["validate"]):
            assert "--source" in out and "--params" in out
    assert "data" in build_parser().format_help()


def test_prepare_then_preprocess_synthetic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_params(tmp_path)
    prepared, processed = tmp_path / "prepared", tmp_path / "processed"
    reports = tmp_path / "reports"
    assert (
        main(
            [
                "data",
                "prepare",
                "--params",
                str(params),
                "--out",
                str(prepared),
                "--report-dir",
                str(reports),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "prepared synthetic" in out
    interactions = pd.read_parquet(prepared / "interactions.parquet")
    assert len(interactions) == 3000
    assert (prepared / "profile.json").is_file()
    [report_dir] = list(reports.iterdir())
    assert report_dir.name.endswith("-pass")
    assert json.loads((report_dir / "report.json").read_text())["success"] is True
    assert (report_dir / "data_docs" / "index.html").is_file()

    assert (
        main(
            [
                "data",
                "preprocess",
                "--params",
                str(params),
                "--in",
                str(prepared),
                "--out",
                str(processed),
            ]
        )
        == 0
    )
    assert "temporal_holdout split" in capsys.readouterr().out
    assert (processed / "meta.json").is_file()


def test_prepare_is_deterministic(tmp_path: Path) -> None:
    params = write_params(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert (
            main(
                [
                    "data",
                    "prepare",
                    "--params",
                    str(params),
                    "--out",
                    str(out),
                    "--report-dir",
                    str(tmp_path / "r"),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "data",
                    "preprocess",
                    "--params",
                    str(params),
                    "--in",
                    str(out),
                    "--out",
                    str(out) + "-p",
                ]
            )
            == 0
        )
    assert tree_bytes(a) == tree_bytes(b)
    assert tree_bytes(Path(str(a) + "-p")) == tree_bytes(Path(str(b) + "-p"))


def test_validate_csv_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = csv_params(tmp_path)
    good = good_csv(tmp_path / "log.csv")
    reports = tmp_path / "reports"
    assert (
        main(
            [
                "data",
                "validate",
                "--params",
                str(params),
                "--path",
                str(good),
                "--report-dir",
                str(reports),
            ]
        )
        == 0
    )

    bad = tmp_path / "bad.csv"
    df = pd.read_csv(good)
    df.loc[3, "stars"] = 9.0
    df.to_csv(bad, index=False)
    capsys.readouterr()
    assert (
        main(
            [
                "data",
                "validate",
                "--params",
                str(params),
                "--path",
                str(bad),
                "--report-dir",
                str(reports),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "rating" in out and "expect_column_values_to_be_between" in out
    assert "9.0" in out  # the offending row is shown
    fail_dirs = [d for d in reports.iterdir() if d.name.endswith("-fail")]
    assert len(fail_dirs) == 1 and (fail_dirs[0] / "report.json").is_file()


def test_failed_validation_keeps_previous_good_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = csv_params(tmp_path)
    good = good_csv(tmp_path / "log.csv")
    out = tmp_path / "prepared"
    assert (
        main(
            [
                "data",
                "prepare",
                "--params",
                str(params),
                "--path",
                str(good),
                "--out",
                str(out),
                "--report-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    before = tree_bytes(out)

    bad = tmp_path / "bad.csv"
    df = pd.read_csv(good)
    df.loc[0, "ts"] = 4_000_000_000  # year 2096: in the future
    df.to_csv(bad, index=False)
    code = main(
        [
            "data",
            "prepare",
            "--params",
            str(params),
            "--path",
            str(bad),
            "--out",
            str(out),
            "--report-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "nothing was written" in captured.err
    assert "timestamp" in captured.out
    assert tree_bytes(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared")]  # no temp debris


def test_unreadable_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = csv_params(tmp_path)
    missing = tmp_path / "nope.csv"
    code = main(
        [
            "data",
            "prepare",
            "--params",
            str(params),
            "--path",
            str(missing),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.csv" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_params_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  sauce: synthetic\n")
    assert main(["data", "validate", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "sauce" in err and "data" in err


def test_quarantine_when_params_ask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(
        tmp_path,
        data={
            "source": "csv",
            "csv": {
                "columns": {
                    "user_id": "user",
                    "item_id": "item",
                    "rating": "stars",
                    "timestamp": "ts",
                }
            },
        },
        validation={"quarantine": True},
    )
    good = good_csv(tmp_path / "log.csv")
    df = pd.read_csv(good)
    df.loc[5, "stars"] = -1.0
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    reports = tmp_path / "reports"
    out = tmp_path / "prepared"
    assert (
        main(
            [
                "data",
                "prepare",
                "--params",
                str(params),
                "--path",
                str(bad),
                "--out",
                str(out),
                "--report-dir",
                str(reports),
            ]
        )
        == 0
    )
    kept = pd.read_parquet(out / "interactions.parquet")
    assert len(kept) == len(df) - 1
    [qfile] = list(reports.rglob("quarantine*.parquet"))
    quarantined = pd.read_parquet(qfile)
    assert len(quarantined) == 1 and quarantined["rating"].iloc[0] == -1.0


def test_a_bug_exits_3_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import recsys.cli as cli

    def broken(_args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli.data, "cmd_validate", broken)
    assert cli.main(["data", "validate"]) == cli.INTERNAL_ERROR == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom" in err and "bug in recsys" in err
