"""Source readers: exact values on tiny hand-written files, and the errors bad input raises.

Every fixture file is written here, in ``tmp_path``, with invented values: MovieLens data must
not be copied into the repository (see ../shared/datasets/ml-100k/PROVENANCE.md). The real
ml-100k is read only from ../shared, by the tests marked ``shared``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import CsvConfig, DataConfig
from recsys.data import io
from recsys.data.sources import (
    ML100K_GENRES,
    detect_movielens_layout,
    load_source,
    read_csv_source,
    read_movielens,
    read_ratings_file,
)
from recsys.data.sources.ids import canonical_ids
from recsys.errors import ConfigError, DataError
from recsys.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_DTYPES,
    Dataset,
    split_genres,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def assert_interactions(df: pd.DataFrame, rows: list[tuple[int, int, float, int]]) -> None:
    assert list(df.columns) == list(INTERACTION_COLUMNS)
    assert df.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    got = [tuple(r) for r in df.itertuples(index=False)]
    assert len(got) == len(rows)
    for g, r in zip(got, rows, strict=True):
        assert g[:2] == r[:2] and g[3] == r[3]
        assert (math.isnan(g[2]) and math.isnan(r[2])) or g[2] == r[2]


def item_flags(genres: str, names: tuple[str, ...]) -> str:
    chosen = set(genres.split("|")) if genres else set()
    return "|".join("1" if n in chosen else "0" for n in names)


GENRE_NAMES = tuple(f"Genre{i}" for i in range(19))


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    """An ml-100k layout with invented values; u.item is latin-1."""
    d = tmp_path / "ml-100k"
    write(d / "u.data", "1\t10\t5\t881250949\n2\t20\t3\t891717742\n1\t20\t4\t878887116\n")
    write(d / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(GENRE_NAMES)) + "\n")
    write(
        d / "u.item",
        f"10|Café Test (1999)|01-Jan-1999||http://x/1|{item_flags('Genre1|Genre5', GENRE_NAMES)}\n"
        f"20|unknown|||http://x/2|{item_flags('Genre0', GENRE_NAMES)}\n"
        f"30|No Genre (2001)|02-Feb-2001||http://x/3|{item_flags('', GENRE_NAMES)}\n",
        encoding="latin-1",
    )
    write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return d


# --- ml-100k --------------------------------------------------------------------------------
def test_ml100k_exact_values(ml100k: Path) -> None:
    ds = read_movielens(ml100k)
    assert ds.name == "ml-100k"
    assert ds.feedback == "explicit" and ds.rating_scale == (1.0, 5.0)
    assert ds.source_files == {
        "interactions": str(ml100k / "u.data"),
        "items": str(ml100k / "u.item"),
        "users": str(ml100k / "u.user"),
    }
    assert_interactions(
        ds.interactions, [(1, 10, 5.0, 881250949), (2, 20, 3.0, 891717742), (1, 20, 4.0, 878887116)]
    )
    assert ds.items is not None and ds.users is not None
    assert list(ds.items.columns[:3]) == ["item_id", "title", "genres"]
    assert ds.items["item_id"].dtype == "int64"
    assert ds.items["title"].tolist() == ["Café Test (1999)", "unknown", "No Genre (2001)"]
    assert ds.items["genres"].tolist() == ["Genre1|Genre5", "Genre0", ""]
    assert ds.items["release_date"].tolist() == ["01-Jan-1999", "", "02-Feb-2001"]
    assert ds.users.to_dict("list") == {
        "user_id": [1, 2],
        "age": [24, 53],
        "gender": ["M", "F"],
        "occupation": ["technician", "other"],
        "zip_code": ["85711", "T8H1N"],
    }
    assert ds.users["user_id"].dtype == "int64" and ds.users["age"].dtype == "int64"


def test_ml100k_without_genre_file_uses_readme_names(ml100k: Path) -> None:
    (ml100k / "u.genre").unlink()
    ds = read_movielens(ml100k)
    assert ds.items is not None
    assert ds.items["genres"].tolist() == ["Action|Comedy", "unknown", ""]
    assert ML100K_GENRES[1] == "Action" and len(ML100K_GENRES) == 19


def test_ml100k_only_ratings(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "7\t8\t2\t100\n")
    ds = read_movielens(tmp_path)
    assert ds.items is None and ds.users is None
    assert_interactions(ds.interactions, [(7, 8, 2.0, 100)])


def test_detection_accepts_parent_dir_and_ratings_file(ml100k: Path) -> None:
    assert detect_movielens_layout(ml100k.parent) == ("ml-100k", ml100k)
    assert detect_movielens_layout(ml100k / "u.data") == ("ml-100k", ml100k)


def test_read_ratings_file_split_format(tmp_path: Path) -> None:
    f = write(tmp_path / "u1.base", "1\t1\t5\t874965758\r\n1\t2\t3\t876893171\r\n\n")
    assert_interactions(read_ratings_file(f), [(1, 1, 5.0, 874965758), (1, 2, 3.0, 876893171)])


# --- ml-1m ----------------------------------------------------------------------------------
def test_ml1m_exact_values(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    write(
        d / "movies.dat",
        "1193::Amélie Test (2001)::Comedy|Romance\n661::Star Test: Part II (1980)::Sci-Fi\n",
        encoding="latin-1",
    )
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::27::55455\n")
    ds = read_movielens(d)
    assert ds.name == "ml-1m" and ds.rating_scale == (1.0, 5.0)
    assert_interactions(ds.interactions, [(1, 1193, 5.0, 978300760), (2, 661, 3.0, 978302109)])
    assert ds.items is not None and ds.users is not None
    assert ds.items.to_dict("list") == {
        "item_id": [1193, 661],
        "title": ["Amélie Test (2001)", "Star Test: Part II (1980)"],
        "genres": ["Comedy|Romance", "Sci-Fi"],
    }
    assert ds.users.to_dict("list") == {
        "user_id": [1, 2, 3],
        "age": [1, 56, 25],
        "age_group": ["Under 18", "56+", "25-34"],
        "gender": ["F", "M", "M"],
        "occupation": ["K-12 student", "self-employed", "27"],  # 27: not in the README table
        "zip_code": ["48067", "70072", "55455"],
    }


# --- ml-10m ---------------------------------------------------------------------------------
def test_ml10m_half_stars_and_tags(tmp_path: Path) -> None:
    d = tmp_path / "ml-10M100K"
    write(d / "ratings.dat", "1::122::4.5::838985046\n1::185::0.5::838983525\n")
    write(
        d / "movies.dat",
        "122::Naïve Test (1992)::Comedy|Romance\n185::Nothing (2000)::(no genres listed)\n"
        "300::Untagged (1994)::Drama\n",
    )
    write(
        d / "tags.dat",
        "15::122::Funny::1215184630\n20::122::funny ::1215184631\n20::122::Dark Côte::1\n"
        "20::185::  ::1\n20::999::orphan::1\n",
    )
    ds = read_movielens(d)
    assert ds.name == "ml-10m" and ds.rating_scale == (0.5, 5.0) and ds.users is None
    assert ds.source_files["tags"] == str(d / "tags.dat")
    assert_interactions(ds.interactions, [(1, 122, 4.5, 838985046), (1, 185, 0.5, 838983525)])
    assert ds.items is not None
    assert ds.items.to_dict("list") == {
        "item_id": [122, 185, 300],
        "title": ["Naïve Test (1992)", "Nothing (2000)", "Untagged (1994)"],
        "genres": ["Comedy|Romance", "", "Drama"],
        "text": ["funny dark côte", "", ""],
    }


# --- ml-20m / ml-25m / ml-latest ------------------------------------------------------------
def test_ml_latest_small_csv(tmp_path: Path) -> None:
    d = tmp_path / "ml-latest-small"
    write(
        d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n"
    )
    write(
        d / "movies.csv",
        'movieId,title,genres\n1,"Test Story, The (1995)",Adventure|Animation\n'
        '3,"""Quoted"" Test (1996)",(no genres listed)\n',
    )
    write(d / "tags.csv", 'userId,movieId,tag,timestamp\n2,1,Pixar,1\n3,1,"fun, light",2\n')
    write(d / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n")
    ds = read_movielens(d)
    assert ds.name == "ml-latest-small" and ds.rating_scale == (0.5, 5.0)
    assert_interactions(ds.interactions, [(1, 1, 4.0, 964982703), (1, 3, 3.5, 964981247)])
    assert ds.items is not None
    assert ds.items.to_dict("list") == {
        "item_id": [1, 3],
        "title": ["Test Story, The (1995)", '"Quoted" Test (1996)'],
        "genres": ["Adventure|Animation", ""],
        "text": ["pixar fun, light", ""],
    }


def test_ratings_pass_through_unjudged(tmp_path: Path) -> None:
    """NaN, out-of-range and duplicate rows are the validation stage's business, not ours."""
    d = tmp_path / "ml-25m"
    write(
        d / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,,1\n1,1,NaN,1\n1,1,7.5,4102444800\n1,1,7.5,4102444800\n",
    )
    ds = read_movielens(d)
    assert ds.name == "ml-25m"
    assert_interactions(
        ds.interactions,
        [(1, 1, float("nan"), 1), (1, 1, float("nan"), 1)] + [(1, 1, 7.5, 4102444800)] * 2,
    )


# --- generic CSV / TSV / Parquet ------------------------------------------------------------
def test_generic_csv_explicit_with_mapping(tmp_path: Path) -> None:
    f = write(
        tmp_path / "events.csv", "uid,iid,stars,ts,extra\n5,50,2.5,1700000000,x\n6,60,4,1,y\n"
    )
    cfg = CsvConfig(
        columns={"user_id": "uid", "item_id": "iid", "rating": "stars", "timestamp": "ts"}
    )
    ds = read_csv_source(f, cfg)
    assert ds.name == "events" and ds.feedback == "explicit" and ds.rating_scale == (1.0, 5.0)
    assert ds.source_files == {"interactions": str(f)}
    assert_interactions(ds.interactions, [(5, 50, 2.5, 1700000000), (6, 60, 4.0, 1)])


def test_generic_implicit_with_count_and_without(tmp_path: Path) -> None:
    f = write(tmp_path / "plays.csv", "user_id,item_id,plays,timestamp\n1,2,7,10\n1,3,1,11\n")
    counted = read_csv_source(f, CsvConfig(implicit=True, columns={"rating": "plays"}))
    assert counted.feedback == "implicit" and counted.rating_scale is None
    assert_interactions(counted.interactions, [(1, 2, 7.0, 10), (1, 3, 1.0, 11)])
    ones = read_csv_source(f, CsvConfig(implicit=True))
    assert_interactions(ones.interactions, [(1, 2, 1.0, 10), (1, 3, 1.0, 11)])


def test_tsv_by_suffix_and_ms_timestamps(tmp_path: Path) -> None:
    f = write(tmp_path / "log.tsv", "user_id\titem_id\trating\ttimestamp\n1\t2\t3\t1700000000999\n")
    ds = read_csv_source(f, CsvConfig(timestamp_unit="ms"))
    assert_interactions(ds.interactions, [(1, 2, 3.0, 1700000000)])


def test_headerless_fields_by_position(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "100,9,1,2\n200,8,3,4\n")
    cfg = CsvConfig(header=False, columns={"timestamp": "1", "user_id": "2", "item_id": "4"})
    ds = read_csv_source(f, cfg)
    assert_interactions(ds.interactions, [(9, 2, 1.0, 100), (8, 4, 3.0, 200)])
    default = read_csv_source(write(tmp_path / "d.csv", "1,2,3.5,4\n"), CsvConfig(header=False))
    assert_interactions(default.interactions, [(1, 2, 3.5, 4)])


def test_datetime_timestamps(tmp_path: Path) -> None:
    f = write(
        tmp_path / "log.csv",
        "user_id,item_id,rating,timestamp\n"
        "1,1,1,2024-01-01T00:00:00Z\n1,2,1,2024-01-01 01:00:00\n1,3,1,2024-01-01T02:00:00+01:00\n",
    )
    ds = read_csv_source(f, CsvConfig(timestamp_unit="datetime"))
    assert ds.interactions["timestamp"].tolist() == [1704067200, 1704070800, 1704070800]
    assert ds.interactions["timestamp"].dtype == "int64"


def test_parquet_with_string_ids_and_datetimes(tmp_path: Path) -> None:
    f = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "u": ["7", "8"],
            "i": [70, 80],
            "r": [np.nan, 2.0],
            "t": pd.to_datetime(["2024-01-01T00:00:00", "2024-01-01T00:00:01"]),
        }
    ).to_parquet(f)
    cfg = CsvConfig(
        columns={"user_id": "u", "item_id": "i", "rating": "r", "timestamp": "t"},
        timestamp_unit="datetime",
    )
    ds = read_csv_source(f, cfg)
    assert_interactions(
        ds.interactions, [(7, 70, float("nan"), 1704067200), (8, 80, 2.0, 1704067201)]
    )


def test_side_tables_with_mapping(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "user_id,item_id,rating,timestamp\n1,10,5,1\n")
    write(tmp_path / "items.tsv", "sku\tname\tbrand\n10\tBlue Shoe\tAcme\n11\tRed Hat\tZed\n")
    write(tmp_path / "users.csv", "user_id,age,country\n1,31,NO\n")
    cfg = CsvConfig(
        items_path="items.tsv",
        users_path="users.csv",
        item_columns={"item_id": "sku", "title": "name", "brand": "brand"},
        user_columns={"country": "country"},
    )
    ds = read_csv_source(f, cfg)
    assert ds.items is not None and ds.users is not None
    assert ds.items.to_dict("list") == {
        "item_id": [10, 11],
        "title": ["Blue Shoe", "Red Hat"],
        "genres": ["", ""],
        "text": ["", ""],
        "brand": ["Acme", "Zed"],
    }
    assert ds.users.to_dict("list") == {"user_id": [1], "age": [31], "country": ["NO"]}
    assert ds.users["age"].dtype == "int64"
    assert ds.source_files["items"] == str(tmp_path / "items.tsv")


def test_string_ids_through_load_source(tmp_path: Path) -> None:
    """Issue 17: SKUs and user keys reach the canonical tables as written."""
    f = write(
        tmp_path / "shop.csv",
        "user_id,item_id,rating,timestamp\nuser-00001-x,SKU-1-B,1,5\nuser-00002-y,00042,1,6\n",
    )
    write(tmp_path / "items.csv", "item_id,title\nSKU-1-B,Blue\n00042,Lamp\nSKU-9,Unsold\n")
    ds = load_source(DataConfig(source="csv", csv=CsvConfig(items_path="items.csv")), f)
    assert ds.interactions["user_id"].tolist() == ["user-00001-x", "user-00002-y"]
    assert ds.interactions["item_id"].tolist() == ["SKU-1-B", "00042"]
    assert ds.interactions["item_id"].dtype == "str" and ds.interactions["rating"].dtype == float
    assert ds.items is not None and ds.items["item_id"].tolist() == ["SKU-1-B", "00042", "SKU-9"]


def test_mixed_id_kinds_and_unmatched_side_table(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "user_id,item_id,rating,timestamp\n1,SKU-1,1,5\n")
    write(tmp_path / "items.csv", "item_id,title\n1,One\n")
    with pytest.raises(DataError, match="mixed id types in 'item_id'") as exc:
        read_csv_source(f, CsvConfig(items_path="items.csv"))
    msg = str(exc.value)
    assert "items.csv" in msg and "log.csv" in msg and "'SKU-1'" in msg
    g = write(tmp_path / "ints.csv", "user_id,item_id,rating,timestamp\n1,7,1,5\n")
    write(tmp_path / "other.csv", "item_id,title\n100,A\n200,B\n")
    with pytest.raises(DataError, match=r"none of the 2 item_ids of .*other\.csv occurs") as exc:
        read_csv_source(g, CsvConfig(items_path="other.csv"))
    assert "side table that belongs to these interactions" in str(exc.value)


def test_load_source_dispatch(ml100k: Path, tmp_path: Path) -> None:
    assert load_source(DataConfig(source="movielens", path=str(ml100k))).name == "ml-100k"
    f = write(tmp_path / "x.csv", "user_id,item_id,rating,timestamp\n1,2,3,4\n")
    assert load_source(DataConfig(source="csv"), f).name == "x"
    fake = Dataset(interactions=pd.DataFrame(columns=list(INTERACTION_COLUMNS)), name="fake")
    seen = []

    def generate(cfg: object) -> Dataset:
        seen.append(cfg)
        return fake

    cfg = DataConfig(source="synthetic")
    assert load_source(cfg, synthetic_generate=generate) is fake
    assert seen == [cfg.synthetic]
    with pytest.raises(ConfigError, match=r"data\.path"):
        load_source(DataConfig(source="movielens"))


# --- bad input ------------------------------------------------------------------------------
def test_missing_directory_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as exc:
        read_movielens(tmp_path / "nope")
    assert "nope" in str(exc.value)
    with pytest.raises(DataError, match="not found") as exc:
        read_csv_source(tmp_path / "missing.csv", CsvConfig())
    assert "missing.csv" in str(exc.value)


def test_directory_without_movielens_files(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "x")
    with pytest.raises(DataError, match=r"u\.data.*found: \['notes.txt'\]"):
        read_movielens(tmp_path)


def test_empty_files(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "")
    with pytest.raises(DataError, match="empty") as exc:
        read_movielens(tmp_path)
    assert "u.data" in str(exc.value)
    header_only = write(tmp_path / "h.csv", "user_id,item_id,rating,timestamp\n")
    with pytest.raises(DataError, match="no interactions") as exc:
        read_csv_source(header_only, CsvConfig())
    assert "h.csv" in str(exc.value)


def test_wrong_separator_names_line_and_guess(tmp_path: Path) -> None:
    f = write(tmp_path / "u.data", "1,10,5,881250949\n2,20,3,891717742\n")
    with pytest.raises(DataError) as exc:
        read_movielens(tmp_path)
    msg = str(exc.value)
    assert "expected 4 tab-separated fields, found 1 on line 1; is the separator ','?" in msg
    assert f"file '{f}', line 1" in msg


def test_wrong_separator_in_header(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "user_id;item_id;rating;timestamp\n1;2;3;4\n")
    with pytest.raises(DataError, match=r"is the separator ';' rather than ','\?") as exc:
        read_csv_source(f, CsvConfig())
    assert "column 'user_id'" in str(exc.value)


def test_malformed_line_reports_its_number(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t1\t5\t1\n\n1\t2\t3\t1\t99\n")
    with pytest.raises(DataError, match="found 5 on line 3") as exc:
        read_movielens(tmp_path)
    assert "u.data', line 3" in str(exc.value)
    write(tmp_path / "u.data", "1\t1\t5\t1\n1\t2\t3\n")
    with pytest.raises(DataError, match="expected 4 tab-separated fields, found 3 on line 2"):
        read_movielens(tmp_path)


def test_malformed_item_line(ml100k: Path) -> None:
    with (ml100k / "u.item").open("ab") as fh:
        fh.write(b"40|Short|line\n")
    msg = "expected 24 '|'-separated fields, found 3 on line 4"
    with pytest.raises(DataError, match=re.escape(msg)):
        read_movielens(ml100k)


def test_text_ids_are_kept_verbatim(tmp_path: Path) -> None:
    """Issue 17: ids may be SKUs or names; a column with one non-integer id is all text."""
    write(tmp_path / "u.data", "1\t007\t5\t1\nabc\t 2\t3\t1\n")
    ds = read_movielens(tmp_path)
    assert ds.interactions["user_id"].dtype == "str"
    assert ds.interactions["user_id"].tolist() == ["1", "abc"]
    assert ds.interactions["item_id"].tolist() == ["007", " 2"]  # nothing stripped
    d = tmp_path / "ml-latest"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n2,x9,4,1\n")
    ds = read_movielens(d)
    assert ds.interactions["user_id"].dtype == "int64"
    assert ds.interactions["item_id"].tolist() == ["1", "x9"]


def test_empty_id_and_non_numeric_rating(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t1\t5\t1\n\t2\t3\t1\n")
    with pytest.raises(DataError, match="found an empty one") as exc:
        read_movielens(tmp_path)
    assert "column 'user_id', line 2" in str(exc.value)
    write(tmp_path / "u.data", "1\t1\t4,5\t1\n")
    with pytest.raises(DataError, match="column 'rating' must be numeric, but line 1 holds '4,5'"):
        read_movielens(tmp_path)


def test_invalid_utf8_names_line_and_byte(tmp_path: Path) -> None:
    d = tmp_path / "ml-20m"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n")
    movies = d / "movies.csv"
    movies.write_bytes(b"movieId,title,genres\n1,Ok (1995),Drama\n2,Caf\xe9 (1996),Drama\n")
    with pytest.raises(DataError) as exc:
        read_movielens(d)
    msg = str(exc.value)
    assert "not valid utf-8: byte 0xe9" in msg and "line 3" in msg and "movies.csv" in msg
    assert "latin-1" in msg  # the suggested fix


def test_invalid_utf8_in_generic_csv_suggests_encoding(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_bytes(b"user_id,item_id,rating,timestamp,note\n1,2,3,4,caf\xe9\n")
    with pytest.raises(DataError, match="line 2"):
        read_csv_source(f, CsvConfig(columns={"user_id": "user_id"}, encoding="utf-8"))
    # Unread columns are not decoded; a latin-1 file declared as such reads fine.
    ok = read_csv_source(f, CsvConfig(encoding="latin-1"))
    assert_interactions(ok.interactions, [(1, 2, 3.0, 4)])


def test_renamed_column_lists_columns_found(tmp_path: Path) -> None:
    d = tmp_path / "ml-25m"
    write(d / "ratings.csv", "user,movieId,rating,timestamp\n1,1,4,1\n")
    with pytest.raises(DataError) as exc:
        read_movielens(d)
    msg = str(exc.value)
    assert "expected column 'userId' not found" in msg
    assert "columns found: ['user', 'movieId', 'rating', 'timestamp']" in msg
    assert "ratings.csv" in msg
    f = write(tmp_path / "log.csv", "uid,item_id,rating,timestamp\n1,1,4,1\n")
    with pytest.raises(DataError, match="expected column 'user_id' not found"):
        read_csv_source(f, CsvConfig())
    parquet = tmp_path / "log.parquet"
    pd.DataFrame({"uid": [1], "item_id": [1], "rating": [4.0], "timestamp": [1]}).to_parquet(
        parquet
    )
    with pytest.raises(DataError, match=r"'user_id' not found; columns found: \['uid'"):
        read_csv_source(parquet, CsvConfig())


def test_bad_datetime_line_counts_blank_and_quoted_lines(tmp_path: Path) -> None:
    f = write(
        tmp_path / "log.csv",
        'user_id,item_id,rating,timestamp,note\n1,1,1,2024-01-01,"two\nlines"\n\n'
        "1,2,1,yesterday,x\n",
    )
    with pytest.raises(DataError) as exc:
        read_csv_source(f, CsvConfig(timestamp_unit="datetime"))
    msg = str(exc.value)
    assert "'yesterday'" in msg and "column 'timestamp', line 5" in msg


def test_missing_timestamp_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "user_id,item_id,rating,timestamp\n1,1,1,5\n1,2,1,\n")
    with pytest.raises(DataError, match="needs a timestamp") as exc:
        read_csv_source(f, CsvConfig())
    assert "column 'timestamp', line 3" in str(exc.value)


def test_object_column_mixing_ints_and_text_is_refused(tmp_path: Path) -> None:
    # pyarrow will not write such a column to Parquet, but pandas frames (and other writers)
    # hold them; the id contract refuses them wherever they come from.
    mixed = pd.Series([1, "u2", 3], dtype=object)
    with pytest.raises(DataError, match="mixes id types") as exc:
        canonical_ids(mixed, "user_id", lambda i: f"file 'x.parquet', row {i + 1}")
    assert "row 2" in str(exc.value) and "astype(str)" in str(exc.value)
    ints = canonical_ids(pd.Series([1, 2], dtype=object), "u", str)
    assert ints.dtype == "int64" and ints.tolist() == [1, 2]
    g = tmp_path / "text.parquet"
    pd.DataFrame(
        {"user_id": ["1", "u2"], "item_id": [1, 2], "rating": [1.0, 2.0], "timestamp": [1, 2]}
    ).to_parquet(g)
    assert read_csv_source(g, CsvConfig()).interactions["user_id"].tolist() == ["1", "u2"]


def test_config_mistakes(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "1,2,3\n")
    with pytest.raises(ConfigError, match="usr_id"):
        read_csv_source(f, CsvConfig(columns={"usr_id": "a"}))
    with pytest.raises(
        DataError, match="'timestamp' is mapped to field 4, but the first line has 3"
    ):
        read_csv_source(f, CsvConfig(header=False))
    with pytest.raises(DataError, match="items_path not found"):
        read_csv_source(
            write(tmp_path / "ok.csv", "user_id,item_id,rating,timestamp\n1,2,3,4\n"),
            CsvConfig(items_path="nope.csv"),
        )


def test_read_delimited_typed_empty_and_strings(tmp_path: Path) -> None:
    f = write(tmp_path / "x.txt", "\n\n")
    empty = io.read_delimited(f, ["a", "b"], sep="|", integer=["a"])
    assert empty.empty and empty.dtypes.astype(str).tolist() == ["int64", "str"]
    g = write(tmp_path / "y.txt", "1|NA\n2|\n")
    strings = io.read_delimited(g, ["a", "b"], sep="|", integer=["a"])
    assert strings["b"].tolist() == ["NA", ""]  # strings are never read as missing


# --- the real MovieLens 100K (read-only, from ../shared) ------------------------------------
@pytest.mark.shared
def test_real_ml100k(ml100k_dir: Path) -> None:
    ds = read_movielens(ml100k_dir)
    inter = ds.interactions
    assert len(inter) == 100_000
    assert inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1682
    assert inter.dtypes.astype(str).to_dict() == INTERACTION_DTYPES
    assert inter["rating"].value_counts().sort_index().tolist() == [
        6110,
        11370,
        27145,
        34174,
        21201,
    ]
    assert ds.items is not None and ds.users is not None
    assert len(ds.items) == 1682 and len(ds.users) == 943
    genres = {g for gs in split_genres(ds.items["genres"]) for g in gs}
    assert len(genres) == 19
    titles = ds.items.set_index("item_id")["title"]
    assert titles[267] == "unknown"
    assert titles[543] == "Mis\u00e9rables, Les (1995)"  # latin-1 byte 0xE9 decoded
    assert titles[1633] == "\u00c1 k\u00f6ldum klaka (Cold Fever) (1994)"


@pytest.mark.shared
def test_real_splits(ml100k_dir: Path, bench_splits_dir: Path) -> None:
    base = read_ratings_file(ml100k_dir / "u1.base")
    assert len(base) == 80_000
    train = read_ratings_file(bench_splits_dir / "ml100k-u1" / "train.tsv")
    pd.testing.assert_frame_equal(train, base)
    negatives = read_ratings_file(bench_splits_dir / "ml100k-loo" / "negatives.tsv")
    assert len(negatives) == 93_357 and (negatives["rating"] == 0).all()
