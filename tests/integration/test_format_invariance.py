"""Format invariance (issue 17): ML-100K's u1 split, written by this test in every log format,
reads back into the same interactions and split and gives ``recsys benchmark`` the same
recommendations and metrics. Reads the real ml-100k from ../shared (marked ``shared``); nothing
derived from it is kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from recsys.benchmark import SplitFiles, load_data_csv, load_split, read_side_tables
from recsys.cli import main
from recsys.data.sources import read_ml100k_items, read_ratings_file

pytestmark = pytest.mark.shared

Writer = Callable[[pd.DataFrame, Path], Path]


def _text(frame: pd.DataFrame, path: Path, sep: str, header: list[str] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [sep.join(header)] if header else []
    lines += [
        sep.join((str(u), str(i), f"{r:g}", str(t))) for u, i, r, t in frame.itertuples(index=False)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _writer(sep: str, header: list[str] | None) -> Writer:
    return lambda frame, path: _text(frame, path, sep, header)


LOGS: dict[str, tuple[str, Writer]] = {
    "ml-dat": ("ratings.dat", _writer("::", None)),
    "ml-csv": ("ratings.csv", _writer(",", ["userId", "movieId", "rating", "timestamp"])),
    "playcount": ("plays.tsv", _writer("\t", ["user", "artist", "plays", "ts"])),
    "csv": ("log.csv", _writer(",", ["user_id", "item_id", "rating", "timestamp"])),
    "mapped": ("events.csv", _writer(",", ["visitor", "sku", "stars", "ts"])),
    "parquet": ("log.parquet", _parquet),
}
"""Format -> (file name, writer). ``mapped`` is a generic CSV read through ``data.csv``."""
MAPPING = {
    "columns": {"user_id": "visitor", "item_id": "sku", "rating": "stars", "timestamp": "ts"}
}


def write_items(items: pd.DataFrame, directory: Path, fmt: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = items[["item_id", "title", "genres"]]
    if fmt == "ml-dat":
        text = "".join(f"{i}::{t}::{g or '(no genres listed)'}\n" for i, t, g in rows.values)
        (directory / "movies.dat").write_text(text, encoding="latin-1")
        return directory / "movies.dat"
    if fmt == "parquet":
        return _parquet(rows, directory / "items.parquet")
    name, header = ("movies.csv", "movieId") if fmt == "ml-csv" else ("items.csv", "item_id")
    rows.rename(columns={"item_id": header}).to_csv(directory / name, index=False)
    return directory / name


def benchmark(out: Path, train: Path, test: Path, items: Path, *extra: object) -> dict[str, Any]:
    argv = ["benchmark", "--train", train, "--test", test, "--items", items, "--models",
            "mostpop,ease", "--n-boot", "20", "--out", out, *extra]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return json.loads((out / "results.json").read_text())


def test_every_format_gives_the_same_split_and_metrics(ml100k_dir: Path, tmp_path: Path) -> None:
    train_file, test_file = ml100k_dir / "u1.base", ml100k_dir / "u1.test"
    train, test = read_ratings_file(train_file), read_ratings_file(test_file)
    items = read_ml100k_items(ml100k_dir / "u.item")
    reference = load_split(SplitFiles(train_file, test_file), items=items)
    expected = benchmark(tmp_path / "ref", train_file, test_file, ml100k_dir / "u.item")
    expected_recs = {
        m: (tmp_path / "ref" / m / "recommendations.csv").read_bytes() for m in ("mostpop", "ease")
    }
    for fmt, (name, writer) in LOGS.items():
        d = tmp_path / fmt
        files = SplitFiles(writer(train, d / "train" / name), writer(test, d / "test" / name))
        item_fmt = {"playcount": "ml-dat", "mapped": "csv"}.get(fmt, fmt)
        item_file = write_items(items, d / "items", item_fmt)
        extra: list[object] = []
        csv_cfg = None
        if fmt == "mapped":
            (d / "params.yaml").write_text(yaml.safe_dump({"data": {"csv": MAPPING}}))
            extra = ["--params", d / "params.yaml", "--format", "csv"]
            csv_cfg = load_data_csv(d / "params.yaml")
        side, _ = read_side_tables(item_file, None)
        split = load_split(files, items=side, file_format=extra[-1] if extra else None,
                           csv_cfg=csv_cfg)  # fmt: skip
        pd.testing.assert_frame_equal(split.train, reference.train, obj=f"{fmt} train")
        pd.testing.assert_frame_equal(split.test, reference.test, obj=f"{fmt} test")
        pd.testing.assert_frame_equal(
            split.data.split.test, reference.data.split.test, obj=f"{fmt} split"
        )
        assert split.data.feedback == ("implicit" if fmt == "playcount" else "explicit")
        got = benchmark(d / "out", files.train, files.test, item_file, *extra)
        for model in ("mostpop", "ease"):
            assert got["models"][model]["metrics"] == expected["models"][model]["metrics"], fmt
            recs = (d / "out" / model / "recommendations.csv").read_bytes()
            assert recs == expected_recs[model], f"{fmt}: {model} recommendations differ"
