"""The single-file reader layer (``recsys.data.sources.formats``) and the benchmark's use of it.

One invented table of interactions, items and users is written here in every format; each must
read back into the same canonical rows (issue 17). Bad input names the file, line and column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.benchmark import SplitFiles, load_split, read_side_tables
from recsys.config import CsvConfig, DataConfig
from recsys.data.sources import formats, load_source
from recsys.errors import ConfigError, DataError

# (user, item, rating, timestamp): users 1..4, items 10..15, invented values
ROWS = [
    (1, 10, 4.0, 881250949), (1, 11, 3.0, 881250950), (2, 10, 5.0, 891717742),
    (2, 12, 1.0, 891717743), (3, 13, 2.0, 878887116), (4, 14, 5.0, 878887117),
    (4, 15, 3.0, 878887118), (3, 10, 4.0, 878887119),
]  # fmt: skip
TITLES = {10: "Café Test (1999)", 11: "Other, The (2001)", 12: "A", 13: "B", 14: "C", 15: "D"}
GENRES = {10: "Action|Comedy", 11: "Drama", 12: "", 13: "Drama", 14: "Action", 15: ""}
NAMES = ("unknown", "Action", "Comedy", "Drama")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def write_log(directory: Path, fmt: str, rows: list[tuple[object, ...]] = ROWS) -> Path:
    """``rows`` as the interaction file of ``fmt`` (play counts: the rating as the weight)."""
    lines = [(str(u), str(i), f"{r:g}", str(t)) for u, i, r, t in rows]
    if fmt == "ml-100k":
        return write(directory / "u.data", "".join("\t".join(f) + "\n" for f in lines))
    if fmt == "ml-dat":
        return write(directory / "ratings.dat", "".join("::".join(f) + "\n" for f in lines))
    if fmt == "ml-csv":
        body = "".join(",".join(f) + "\n" for f in lines)
        return write(directory / "ratings.csv", "userId,movieId,rating,timestamp\n" + body)
    if fmt == "playcount":
        body = "".join("\t".join(f[:3]) + "\n" for f in lines)
        return write(directory / "user_artists.dat", "userID\tartistID\tweight\n" + body)
    if fmt == "csv":
        body = "".join(",".join(f) + "\n" for f in lines)
        return write(directory / "log.csv", "user_id,item_id,rating,timestamp\n" + body)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "log.parquet")
    return directory / "log.parquet"


def write_items(directory: Path, fmt: str) -> Path:
    ids = sorted(TITLES)
    if fmt == "ml-100k":
        write(directory / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(NAMES)))
        lines = []
        for i in ids:
            flags = "|".join("1" if g in GENRES[i].split("|") else "0" for g in NAMES)
            lines.append(f"{i}|{TITLES[i]}|01-Jan-1999||http://x/{i}|{flags}\n")
        return write(directory / "u.item", "".join(lines), encoding="latin-1")
    if fmt == "ml-dat":
        body = "".join(f"{i}::{TITLES[i]}::{GENRES[i] or '(no genres listed)'}\n" for i in ids)
        return write(directory / "movies.dat", body, encoding="latin-1")
    quoted = {i: f'"{t}"' if "," in t else t for i, t in TITLES.items()}
    if fmt == "ml-csv":
        body = "".join(f"{i},{quoted[i]},{GENRES[i] or '(no genres listed)'}\n" for i in ids)
        return write(directory / "movies.csv", "movieId,title,genres\n" + body)
    body = "".join(f"{i},{quoted[i]},{GENRES[i]}\n" for i in ids)
    return write(directory / "items.csv", "item_id,title,genres\n" + body)


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-dat", "ml-csv", "csv", "parquet"])
def test_every_rating_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    path = write_log(tmp_path / fmt, fmt)
    assert formats.detect_format(path) == fmt
    log = formats.read_log_file(path)
    assert log.feedback == "explicit" and log.format == fmt
    assert [tuple(r) for r in log.interactions.itertuples(index=False)] == ROWS
    assert log.interactions.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]


def test_play_counts_are_implicit_weights(tmp_path: Path) -> None:
    path = write_log(tmp_path, "playcount")  # a header, no timestamp (hetrec's user_artists)
    assert formats.detect_format(path) == "playcount"
    log = formats.read_log_file(path)
    assert log.feedback == "implicit"
    expected = [(u, i, r, 0) for u, i, r, _ in ROWS]
    assert [tuple(r) for r in log.interactions.itertuples(index=False)] == expected
    # without a header, with a timestamp: u.data-like unless named playcount
    bare = write(tmp_path / "plays.tsv", "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in ROWS))
    assert formats.read_log_file(bare).feedback == "explicit"
    named = formats.read_log_file(bare, "playcount")
    assert named.feedback == "implicit"
    assert [tuple(r) for r in named.interactions.itertuples(index=False)] == ROWS
    weights = write(tmp_path / "w.csv", "user_id,item_id,weight\n1,10,7\n")
    assert formats.read_log_file(weights).feedback == "implicit"
    assert formats.read_log_file(weights).interactions["rating"].tolist() == [7.0]


def test_text_ids_in_every_format(tmp_path: Path) -> None:
    rows = [("user-00001-x", "Björk", 12.0, 5), ("user-00002-y", "SKU-1-B", 3.0, 6)]
    for fmt in ("ml-100k", "ml-dat", "csv", "parquet"):
        log = formats.read_log_file(write_log(tmp_path / fmt, fmt, rows))  # type: ignore[arg-type]
        assert log.interactions["user_id"].tolist() == ["user-00001-x", "user-00002-y"], fmt
        assert log.interactions["item_id"].tolist() == ["Björk", "SKU-1-B"], fmt
        assert log.interactions["item_id"].dtype == "str"


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-dat", "ml-csv", "csv"])
def test_every_item_format_reads_the_same_table(tmp_path: Path, fmt: str) -> None:
    path = write_items(tmp_path / fmt, fmt)
    assert formats.detect_format(path, "items") == fmt
    items = formats.read_items_file(path)
    assert items["item_id"].tolist() == sorted(TITLES)
    assert items["title"].tolist() == [TITLES[i] for i in sorted(TITLES)]
    assert items["genres"].tolist() == [GENRES[i] for i in sorted(TITLES)]


def test_tags_beside_the_movies_file_become_text(tmp_path: Path) -> None:
    movies = write_items(tmp_path, "ml-dat")
    write(tmp_path / "tags.dat", "1::10::Funny::5\n2::10::dark::6\n")
    assert formats.read_items_file(movies)["text"].tolist()[:2] == ["funny dark", ""]


def test_named_text_categorical_and_numeric_item_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "catalogue.tsv",
        "sku\tname\tblurb\tbrand\tprice\nSKU-1\tLamp\tWarm light\tAcme\t9.5\nSKU-2\tHat\t\t\t\n",
    )
    cfg = CsvConfig(
        item_columns={"item_id": "sku", "title": "name"},
        item_text=("blurb",),
        item_categorical=("brand",),
        item_numeric=("price",),
    )
    items = formats.read_items_file(path, "csv", csv_cfg=cfg)
    assert items["item_id"].tolist() == ["SKU-1", "SKU-2"]
    assert items["text"].tolist() == ["Warm light", ""]
    assert items["genres"].tolist() == ["brand=Acme", ""]
    assert items["price"].dtype == "float64" and items["price"].iloc[0] == 9.5
    assert np.isnan(items["price"].iloc[1])


def test_every_user_format(tmp_path: Path) -> None:
    u100k = write(tmp_path / "a" / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    udat = write(tmp_path / "b" / "users.dat", "1::M::25::19::85711\n2::F::50::0::T8H1N\n")
    ucsv = write(tmp_path / "c" / "users.csv", "user_id,age,gender\n1,24,M\n2,53,F\n")
    for path, fmt in ((u100k, "ml-100k"), (udat, "ml-dat"), (ucsv, "csv")):
        assert formats.detect_format(path, "users") == fmt
        users = formats.read_users_file(path)
        assert users["user_id"].tolist() == [1, 2] and users["gender"].tolist() == ["M", "F"]


# --- bad input ------------------------------------------------------------------------------
def test_unknown_and_ambiguous_formats_ask_for_the_format(tmp_path: Path) -> None:
    odd = write(tmp_path / "odd.csv", "visitor,product,when\na,b,c\n")
    with pytest.raises(ConfigError, match="names no user_id and item_id") as exc:
        formats.detect_format(odd)
    assert "odd.csv" in str(exc.value) and "--format csv" in str(exc.value)
    three = write(tmp_path / "three.tsv", "1\t10\t4\n")
    with pytest.raises(ConfigError, match="rating or a count") as exc:
        formats.detect_format(three)
    assert "--format playcount" in str(exc.value) and "line 1" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown format 'ml-2m'"):
        formats.read_log_file(three, "ml-2m")
    with pytest.raises(ConfigError, match="has no 'item_id' column"):
        formats.detect_format(write(tmp_path / "i.csv", "sku,name\n1,x\n"), "items")
    with pytest.raises(ConfigError, match="format 'playcount' has no items table"):
        formats.read_items_file(three, "playcount")


def test_wrong_separator_and_missing_column(tmp_path: Path) -> None:
    tabs = write_log(tmp_path / "t", "ml-100k")
    with pytest.raises(DataError, match="expected 4 '::'-separated fields, found 1 on line 1"):
        formats.read_log_file(tabs, "ml-dat")
    log = write_log(tmp_path / "c", "csv")
    cfg = CsvConfig(columns={"user_id": "visitor"})
    with pytest.raises(DataError, match="expected column 'visitor' not found") as exc:
        formats.read_log_file(log, "csv", csv_cfg=cfg)
    assert "log.csv" in str(exc.value) and "line 1" in str(exc.value)


def test_benchmark_split_files_must_agree(tmp_path: Path) -> None:
    train = write_log(tmp_path / "a", "ml-100k", ROWS[:6])
    test = write_log(tmp_path / "b", "ml-100k", [("x7", 10, 4.0, 1), ("x8", 11, 4.0, 1)])
    with pytest.raises(DataError, match="mixed id types in 'user_id'") as exc:
        load_split(SplitFiles(train, test))
    assert str(train) in str(exc.value) and str(test) in str(exc.value)
    plays = write(tmp_path / "p.tsv", "userID\tartistID\tweight\n1\t15\t2\n")
    with pytest.raises(ConfigError, match=r"reads as ml-100k \(explicit\)") as exc:
        load_split(SplitFiles(train, plays))
    assert "--format" in str(exc.value)


def test_benchmark_side_table_that_matches_nothing(tmp_path: Path) -> None:
    train = write_log(tmp_path / "a", "ml-100k", ROWS[:6])
    test = write_log(tmp_path / "b", "ml-dat", ROWS[6:])
    items, _ = read_side_tables(write_items(tmp_path / "i", "ml-csv"), None)
    split = load_split(SplitFiles(train, test), items=items)
    assert split.data.feedback == "explicit" and len(split.test) == 2
    other = write(tmp_path / "o" / "movies.csv", "movieId,title,genres\n900,X,Drama\n")
    items, _ = read_side_tables(other, None)
    with pytest.raises(DataError, match="none of the 1 item_ids") as exc:
        load_split(SplitFiles(train, test), items=items)
    assert str(other) in str(exc.value)


def test_pipeline_reads_any_format_through_data_format(tmp_path: Path) -> None:
    """``data.source: csv`` with ``data.format``: the same readers as the benchmark."""
    plays = write(
        tmp_path / "user_artists.dat",
        "userID\tartistID\tweight\n2\tBjörk\t13883\n2\tSKU-1\t11690\n3\tBjörk\t1\n",
    )
    write(tmp_path / "artists.csv", "item_id,title\nBjörk,Björk\nSKU-1,Some Band\n")
    cfg = DataConfig(source="csv", format="auto", csv=CsvConfig(items_path="artists.csv"))
    ds = load_source(cfg, plays)
    assert ds.feedback == "implicit" and ds.rating_scale is None
    assert ds.interactions["rating"].tolist() == [13883.0, 11690.0, 1.0]
    assert ds.interactions["item_id"].tolist() == ["Björk", "SKU-1", "Björk"]
    assert ds.items is not None and ds.items["title"].tolist() == ["Björk", "Some Band"]
    assert ds.source_files["items"] == str(tmp_path / "artists.csv")
    dat = write_log(tmp_path / "ml", "ml-dat")
    explicit = load_source(DataConfig(source="csv", format="ml-dat"), dat)
    assert explicit.feedback == "explicit" and explicit.rating_scale == (1.0, 5.0)
    assert [tuple(r) for r in explicit.interactions.itertuples(index=False)] == ROWS
    with pytest.raises(ConfigError, match="unknown format 'dat'"):
        load_source(DataConfig(source="csv", format="dat"), dat)
