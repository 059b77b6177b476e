"""The real MovieLens 100K through the CLI: it validates, prepares, and its official u1 split
reproduces the benchmark split counts (skips when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.cli import main
from tests.params import complete_params


@pytest.fixture(scope="module")
def prepared(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ml100k")
    params = {
        "data": {"source": "movielens"},
        "validation": {"min_interactions_per_user": 20},
        "preprocess": {
            "min_user_interactions": 1,
            "min_item_interactions": 1,
            "split": {"method": "predefined", "test_file": str(ml100k_dir / "u1.test")},
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(complete_params(params)))
    argv = ["--params", str(root / "params.yaml"), "--report-dir", str(root / "reports")]
    code = main(["data", "prepare", *argv, "--path", str(ml100k_dir), "--out", str(root / "prep")])
    assert code == 0
    return root


def test_prepared_tables(prepared: Path) -> None:
    meta = json.loads((prepared / "prep" / "dataset.json").read_text())
    assert meta["name"] == "ml-100k"
    assert meta["rows"] == {"interactions": 100_000, "items": 1682, "users": 943}
    items = pd.read_parquet(prepared / "prep" / "items.parquet")
    assert items.loc[items["item_id"] == 267, "title"].item() == "unknown"
    report = json.loads(next((prepared / "reports").glob("*-pass/report.json")).read_text())
    assert report["success"] is True


def test_predefined_u1_split_matches_the_benchmark(prepared: Path, bench_splits_dir: Path) -> None:
    out = prepared / "proc"
    code = main(
        ["data", "preprocess", "--params", str(prepared / "params.yaml"),
         "--in", str(prepared / "prep"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    expected = json.loads((bench_splits_dir / "ml100k-u1" / "split.json").read_text())
    split = {
        name: pd.read_parquet(out / "split" / f"{name}.parquet")
        for name in ("train", "val", "test")
    }
    assert len(split["test"]) == expected["n_test"]
    assert len(split["train"]) + len(split["val"]) == expected["n_train"]
    assert split["test"]["user_id"].nunique() == expected["n_users_test"]
    in_train = set(pd.concat([split["train"], split["val"]])["item_id"])
    cold = (~split["test"]["item_id"].isin(in_train)).sum()
    assert cold == expected["test_rows_item_not_in_train"]
