"""Preprocessing: exact results on hand-built frames, split properties on random ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import (
    INDEXED_COLUMNS,
    ITEM_IDX,
    OOV_ID,
    PAIR_COLUMNS,
    USER_IDX,
    InteractionSplit,
    Vocabulary,
    build_features,
    deduplicate,
    global_temporal,
    index_interactions,
    kcore,
    kcore_mask,
    kfold,
    leave_one_out,
    load_processed,
    predefined,
    preprocess,
    random_holdout,
    sample_negatives,
    save_processed,
    split_interactions,
    temporal_holdout,
    to_implicit,
)
from recsys.errors import ConfigError, DataError
from recsys.schema import (
    EXPLICIT,
    IMPLICIT,
    INTERACTION_DTYPES,
    ITEM_ID,
    RATING,
    TIMESTAMP,
    USER_ID,
    Dataset,
)

NO_KCORE = {"min_user_interactions": 1, "min_item_interactions": 1}


def frame(rows: list[tuple[int, int, float, int]]) -> pd.DataFrame:
    """(user_id, item_id, rating, timestamp) tuples -> canonical interactions."""
    df = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID, RATING, TIMESTAMP])
    return df.astype(INTERACTION_DTYPES)


def tuples(df: pd.DataFrame, cols: tuple[str, ...] = (USER_ID, ITEM_ID)) -> list[tuple]:
    return [tuple(r) for r in df.loc[:, list(cols)].itertuples(index=False)]


def indexed(df: pd.DataFrame) -> pd.DataFrame:
    return index_interactions(df, Vocabulary.build(df))


def random_interactions(seed: int = 0, n_users: int = 60, n_items: int = 80) -> pd.DataFrame:
    """Unique (user, item) pairs; 1..30 rows per user; timestamps from a small range (ties)."""
    rng = np.random.default_rng(seed)
    per_user = rng.integers(1, 31, n_users)
    users = np.repeat(np.arange(n_users) + 1000, per_user)
    # distinct items per user: the first k of a random permutation (vectorized via argsort)
    perms = np.argsort(rng.random((n_users, n_items)), axis=1)
    pos = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    items = perms[users - 1000, pos] + 1
    return pd.DataFrame(
        {
            USER_ID: users,
            ITEM_ID: items,
            RATING: rng.integers(1, 6, len(users)).astype(float),
            TIMESTAMP: rng.integers(0, 40, len(users)) + 1_000_000,
        }
    ).astype(INTERACTION_DTYPES)


# --- cleaning -------------------------------------------------------------------------------
DUPS = [
    (1, 10, 3.0, 100),
    (1, 10, 5.0, 200),  # latest of (1, 10)
    (1, 11, 4.0, 50),
    (2, 10, 1.0, 300),
    (2, 10, 2.0, 300),  # exact tie with the row above: the later row in the file wins
    (1, 10, 4.0, 150),
]


def test_deduplicate_explicit_keeps_latest_then_last_in_file() -> None:
    out, removed = deduplicate(frame(DUPS), EXPLICIT)
    assert removed == 3
    assert tuples(out, (USER_ID, ITEM_ID, RATING, TIMESTAMP)) == [
        (1, 10, 5.0, 200),
        (1, 11, 4.0, 50),
        (2, 10, 2.0, 300),
    ]
    assert list(out.index) == [0, 1, 2]


def test_deduplicate_implicit_sums_counts_at_latest_time() -> None:
    out, removed = deduplicate(frame(DUPS), IMPLICIT)
    assert removed == 3
    assert tuples(out, (USER_ID, ITEM_ID, RATING, TIMESTAMP)) == [
        (1, 10, 12.0, 200),
        (1, 11, 4.0, 50),
        (2, 10, 3.0, 300),
    ]


def test_deduplicate_does_not_depend_on_row_order_except_exact_ties() -> None:
    rows = [r for r in DUPS if r[:2] != (2, 10)]
    a, _ = deduplicate(frame(rows), EXPLICIT)
    b, _ = deduplicate(frame(rows[::-1]), EXPLICIT)
    assert sorted(tuples(a, (USER_ID, ITEM_ID, RATING))) == sorted(
        tuples(b, (USER_ID, ITEM_ID, RATING))
    )


def test_deduplicate_empty_and_bad_feedback() -> None:
    out, removed = deduplicate(frame([]), EXPLICIT)
    assert (len(out), removed) == (0, 0)
    with pytest.raises(ConfigError, match="feedback"):
        deduplicate(frame(DUPS), "ratings")


def test_to_implicit_keeps_ratings_at_or_above_threshold_as_one() -> None:
    df = frame([(1, 1, 1.0, 1), (1, 2, 3.0, 2), (1, 3, 4.0, 3), (2, 1, 5.0, 4), (2, 2, 3.5, 5)])
    out = to_implicit(df, 4.0)
    assert tuples(out, (USER_ID, ITEM_ID, RATING)) == [(1, 3, 1.0), (2, 1, 1.0)]
    assert len(df) - len(out) == 3


def test_kcore_iterates_to_fixed_point() -> None:
    # Pass 1 removes item 12 (one row); that leaves user 3 with one row, removed in pass 2.
    df = frame([(1, 10, 1, 1), (1, 11, 1, 2), (2, 10, 1, 3), (2, 11, 1, 4), (3, 11, 1, 5),
                (3, 12, 1, 6)])  # fmt: skip
    out = kcore(df, 2, 2)
    assert tuples(out) == [(1, 10), (1, 11), (2, 10), (2, 11)]
    mask, passes = kcore_mask(df[USER_ID].to_numpy(), df[ITEM_ID].to_numpy(), 2, 2)
    assert passes == 2
    assert mask.tolist() == [True, True, True, True, False, False]
    assert len(kcore(df, 1, 1)) == len(df)
    assert len(kcore(df, 3, 1)) == 0


# --- vocabulary -----------------------------------------------------------------------------
def test_vocabulary_encode_decode() -> None:
    df = frame([(30, 7, 1, 1), (10, 5, 1, 2), (20, 7, 1, 3)])
    vocab = Vocabulary.build(df, items=pd.DataFrame({ITEM_ID: [9, 5]}))
    assert vocab.user_ids.tolist() == [10, 20, 30]
    assert vocab.item_ids.tolist() == [5, 7, 9]  # item 9: only in the items table
    assert vocab.encode_users([30, 10, 99]).tolist() == [2, 0, -1]
    assert vocab.encode_users([30]).dtype == np.int64
    assert vocab.encode_items(np.array([9, 6, 5])).tolist() == [2, -1, 0]
    assert vocab.decode_users([0, 2]).tolist() == [10, 30]
    assert vocab.decode_items([1]).tolist() == [7]
    for bad in ([-1], [3]):
        with pytest.raises(IndexError):
            vocab.decode_items(bad)
    assert Vocabulary.from_frames(*vocab.to_frames()).equals(vocab)
    assert not vocab.equals(Vocabulary(np.array([10, 20]), vocab.item_ids))
    with pytest.raises(DataError, match="sorted"):
        Vocabulary(np.array([2, 1]), np.array([1]))
    with pytest.raises(ValueError):
        vocab.user_ids[0] = 5  # read-only: frozen all the way down


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(-1000, 1000),
    n=st.integers(1, 50),
    gap=st.booleans(),
    queries=st.lists(st.integers(-1100, 1100), max_size=30),
)
def test_vocabulary_encoding_with_and_without_gaps(
    start: int, n: int, gap: bool, queries: list[int]
) -> None:
    """Contiguous ids take the offset path, ids with a gap the binary search: both must give
    every id its position and -1 to everything else (negative, past the end, in the gap)."""
    ids = np.arange(start, start + n, dtype=np.int64)
    if gap:
        ids = np.r_[ids, start + n + 7]
    vocab = Vocabulary(ids, ids)
    raw = np.asarray(queries, dtype=np.int64)
    expected = [int(np.flatnonzero(ids == q)[0]) if q in ids else -1 for q in queries]
    assert vocab.encode_items(raw).tolist() == expected
    assert vocab.encode_users(raw.astype(np.int32)).tolist() == expected
    assert vocab.encode_items(ids).tolist() == list(range(len(ids)))


def test_index_interactions_sorts_and_indexes() -> None:
    df = frame([(20, 5, 1, 3), (10, 7, 1, 9), (10, 5, 1, 9), (10, 9, 1, 1)])
    out = indexed(df)
    assert list(out.columns) == list(INDEXED_COLUMNS)
    assert tuples(out, (USER_ID, ITEM_ID, USER_IDX, ITEM_IDX)) == [
        (10, 9, 0, 2),
        (10, 5, 0, 0),
        (10, 7, 0, 1),
        (20, 5, 1, 0),
    ]
    with pytest.raises(DataError, match="unknown"):
        index_interactions(df, Vocabulary(np.array([10]), np.array([5, 7, 9])))


# --- content features -----------------------------------------------------------------------
ITEMS = pd.DataFrame(
    {
        ITEM_ID: [30, 10, 20],
        "title": ["Heat", "Toy Story (1995)", "The Toy (1982) "],
        "genres": ["", "Animation|Comedy", "Comedy"],
    }
)
USERS = pd.DataFrame(
    {
        USER_ID: [1, 2, 4],
        "age": [24.0, 56.0, np.nan],
        "gender": ["M", "F", "F"],
        "occupation": ["writer", None, "artist"],
    }
)


def test_content_features_exact() -> None:
    df = frame([(1, 10, 1, 1), (2, 20, 1, 2), (3, 40, 1, 3)])  # item 40, user 3: no side rows
    vocab = Vocabulary.build(df, ITEMS, USERS)
    assert vocab.item_ids.tolist() == [10, 20, 30, 40]
    assert vocab.user_ids.tolist() == [1, 2, 3, 4]
    f = build_features(
        vocab, ITEMS, USERS, PreprocessConfig(max_title_tokens=2, max_vocab_tokens=5)
    )
    assert f.genre_names == ("Animation", "Comedy")
    np.testing.assert_array_equal(f.item_genres, [[1, 1], [0, 1], [0, 0], [0, 0]])
    assert f.item_genres.dtype == np.float32
    # counts: toy 2, heat 1, story 1, the 1 -> ties by string; cap 5 ids = 2 reserved + 3
    assert f.tokens == ("", "[UNK]", "toy", "heat", "story")
    np.testing.assert_array_equal(f.item_tokens, [[2, 4], [OOV_ID, 2], [3, 0], [0, 0]])
    assert f.item_tokens.dtype == np.int32
    np.testing.assert_array_equal(f.item_year, [1995, 1982, np.nan, np.nan])
    assert f.item_year.dtype == np.float32
    assert f.user_feature_names == (
        "age=<18", "age=18-24", "age=25-34", "age=35-44", "age=45-49", "age=50-55", "age=56+",
        "gender=F", "gender=M", "occupation=artist", "occupation=writer",
    )  # fmt: skip
    expected = np.zeros((4, 11), dtype=np.float32)
    expected[0, [1, 8, 10]] = 1  # 24, M, writer
    expected[1, [6, 7]] = 1  # 56, F, occupation missing
    expected[3, [7, 9]] = 1  # age missing, F, artist; row 2 (user 3): not in the table
    np.testing.assert_array_equal(f.user_features, expected)
    # serving-time encoding uses the same code and vocabularies
    tokens, years = f.encode_texts(pd.Series(["Toy Heat (2001)", None]))
    np.testing.assert_array_equal(tokens, [[2, 3], [0, 0]])
    np.testing.assert_array_equal(years, [2001, np.nan])
    np.testing.assert_array_equal(f.encode_genres(pd.Series(["Comedy|Western"])), [[0, 1]])
    np.testing.assert_array_equal(f.encode_user_attributes(USERS.iloc[[0]]), expected[[0]])


def test_content_features_without_side_tables() -> None:
    vocab = Vocabulary.build(frame([(1, 10, 1, 1)]))
    f = build_features(vocab, None, None, PreprocessConfig(max_title_tokens=3))
    assert f.item_genres.shape == (1, 0)
    assert f.item_tokens.shape == (1, 3)
    assert f.user_features.shape == (1, 0)
    assert np.isnan(f.item_year).all()
    assert f.tokens == ("", "[UNK]")


# --- splits: exact on a tiny example --------------------------------------------------------
def tiny() -> pd.DataFrame:
    rows = [(1, i, 1.0, t) for i, t in zip(range(100, 110), range(1, 11), strict=True)]
    rows += [(2, 200 + k, 1.0, 100 + k) for k in range(5)]
    rows += [(3, 100, 1.0, 7), (3, 101, 1.0, 8)]
    rows += [(4, 100, 1.0, 1)]
    return indexed(frame(rows))


def by_user(df: pd.DataFrame, col: str = TIMESTAMP) -> dict[int, list[int]]:
    return {int(u): sorted(g[col].tolist()) for u, g in df.groupby(USER_ID)}


def test_temporal_holdout_exact() -> None:
    s = temporal_holdout(tiny(), SplitConfig(test_fraction=0.2, val_fraction=0.25))
    assert by_user(s.test) == {1: [9, 10], 2: [104], 3: [8]}
    assert by_user(s.val) == {1: [7, 8], 2: [103]}
    assert by_user(s.train) == {1: [1, 2, 3, 4, 5, 6], 2: [100, 101, 102], 3: [7], 4: [1]}
    assert s.method == "temporal_holdout"
    assert (s.info["n_train"], s.info["n_val"], s.info["n_test"]) == (11, 3, 4)
    assert s.negatives is None
    assert list(s.train.columns) == list(INDEXED_COLUMNS)


def test_random_holdout_counts_match_the_rule() -> None:
    s = random_holdout(tiny(), SplitConfig(method="random_holdout", val_fraction=0.25))
    assert {u: len(v) for u, v in by_user(s.test).items()} == {1: 2, 2: 1, 3: 1}
    assert {u: len(v) for u, v in by_user(s.val).items()} == {1: 2, 2: 1}
    assert_partition(tiny(), s)


def test_global_temporal_exact_with_ties_on_one_side() -> None:
    ts = [1, 2, 3, 4, 5, 6, 7, 8, 8, 8]
    df = indexed(frame([(k % 3, k, 1.0, t) for k, t in enumerate(ts)]))
    s = global_temporal(
        df, SplitConfig(method="global_temporal", test_fraction=0.2, val_fraction=0)
    )
    assert sorted(s.test[TIMESTAMP]) == [8, 8, 8]  # target 2 rows; the tie at 8 stays together
    assert s.info["cutoff_timestamp"] == 8
    assert len(s.val) == 0
    s = global_temporal(df, SplitConfig(test_fraction=0.2, val_fraction=0.3))
    assert sorted(s.val[TIMESTAMP]) == [6, 7]  # round(0.3 * 7) = 2 latest remaining
    assert sorted(s.train[TIMESTAMP]) == [1, 2, 3, 4, 5]
    assert s.info["val_cutoff_timestamp"] == 6
    with pytest.raises(DataError, match="same timestamp"):
        global_temporal(indexed(frame([(1, 1, 1, 5), (2, 2, 1, 5)])), SplitConfig())


def test_leave_one_out_exact() -> None:
    df = tiny()
    cfg = SplitConfig(method="leave_one_out", n_negatives=3, val_fraction=0.1)
    s = leave_one_out(df, cfg)
    assert by_user(s.test) == {1: [10], 2: [104], 3: [8]}
    assert by_user(s.val) == {1: [9], 2: [103]}  # user 3 has 2 rows: test + train, no val
    assert by_user(s.train)[4] == [1]  # a single-row user only trains
    assert s.negatives is not None and s.val_negatives is not None
    assert list(s.negatives.columns) == list(PAIR_COLUMNS)
    assert s.negatives.groupby(USER_ID).size().to_dict() == {1: 3, 2: 3, 3: 3}
    assert s.val_negatives.groupby(USER_ID).size().to_dict() == {1: 3, 2: 3}
    assert_negatives(df, s.negatives, 3)
    assert_negatives(df, s.val_negatives, 3)
    no_val = leave_one_out(df, SplitConfig(method="leave_one_out", n_negatives=3, val_fraction=0))
    assert len(no_val.val) == 0 and no_val.val_negatives is None


def test_predefined_exact_and_reports_missing_pairs() -> None:
    df = tiny()
    pairs = pd.DataFrame({USER_ID: [1, 2, 2, 9], ITEM_ID: [105, 200, 200, 1]})
    s = predefined(df, pairs, SplitConfig(method="predefined", val_fraction=0))
    assert tuples(s.test) == [(1, 105), (2, 200)]
    assert len(s.train) == len(df) - 2
    assert (s.info["test_pairs"], s.info["test_pairs_not_found"]) == (3, 1)


def test_kfold_every_row_tested_exactly_once() -> None:
    df = indexed(random_interactions(1))
    cfg = SplitConfig(method="kfold", n_folds=4, val_fraction=0.2)
    folds = kfold(df, cfg)
    assert [f.info["fold"] for f in folds] == [0, 1, 2, 3]
    seen = pd.concat([f.test for f in folds])
    assert sorted(tuples(seen)) == sorted(tuples(df))  # each row in exactly one test fold
    per_fold = np.stack([f.test.groupby(USER_IDX).size().reindex(range(60), fill_value=0)
                         for f in folds])  # fmt: skip
    assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all()  # spread evenly
    for f in folds:
        assert_partition(df, f)
        assert_keeps_train_row(df, f)


# --- splits: properties on random data ------------------------------------------------------
def assert_partition(df: pd.DataFrame, s: InteractionSplit) -> None:
    parts = [tuples(x) for x in (s.train, s.val, s.test)]
    flat = [p for part in parts for p in part]
    assert len(flat) == len(set(flat)) == len(df)  # disjoint
    assert set(flat) == set(tuples(df))  # union = all
    for x in (s.train, s.val, s.test):
        assert list(x.columns) == list(INDEXED_COLUMNS)
        assert x.index.equals(pd.RangeIndex(len(x)))


def assert_keeps_train_row(df: pd.DataFrame, s: InteractionSplit) -> None:
    counts = df.groupby(USER_ID).size()
    multi = set(counts[counts >= 2].index)
    assert multi <= set(s.train[USER_ID])


def assert_negatives(df: pd.DataFrame, neg: pd.DataFrame, n: int) -> None:
    assert (neg.groupby(USER_IDX).size() == n).all()
    assert not neg.duplicated([USER_IDX, ITEM_IDX]).any()
    assert not set(tuples(neg, (USER_IDX, ITEM_IDX))) & set(tuples(df, (USER_IDX, ITEM_IDX)))
    assert set(neg[ITEM_IDX]) <= set(df[ITEM_IDX])  # drawn from the data set's items
    pairs = df.drop_duplicates(ITEM_IDX).set_index(ITEM_IDX)[ITEM_ID]
    assert (neg[ITEM_ID].to_numpy() == pairs.loc[neg[ITEM_IDX]].to_numpy()).all()


@pytest.mark.parametrize("method", ["random_holdout", "temporal_holdout", "leave_one_out"])
@pytest.mark.parametrize("fractions", [(0.2, 0.1), (0.9, 0.9), (0.5, 0.0)])
def test_per_user_splits_partition_and_keep_a_train_row(
    method: str, fractions: tuple[float, float]
) -> None:
    df = indexed(random_interactions(2))
    cfg = SplitConfig(
        method=method, test_fraction=fractions[0], val_fraction=fractions[1], n_negatives=5
    )
    (s,) = split_interactions(df, cfg)
    assert_partition(df, s)
    assert_keeps_train_row(df, s)
    counts = df.groupby(USER_ID).size()
    assert set(s.test[USER_ID]) == set(counts[counts >= 2].index)  # every such user is tested
    if method != "random_holdout":  # per user: train <= val <= test in time
        lo = {
            name: part.groupby(USER_ID)[TIMESTAMP].agg(["min", "max"])
            for name, part in (("train", s.train), ("val", s.val), ("test", s.test))
        }
        for early, late in (("train", "val"), ("val", "test"), ("train", "test")):
            j = lo[early].join(lo[late], suffixes=("_e", "_l"), how="inner")
            assert (j["max_e"] <= j["min_l"]).all()
    if method == "leave_one_out":
        assert s.test.groupby(USER_ID).size().eq(1).all()
        assert s.negatives is not None
        assert_negatives(df, s.negatives, 5)


def test_global_temporal_no_leakage_on_random_data() -> None:
    df = indexed(random_interactions(3))
    s = global_temporal(df, SplitConfig(method="global_temporal", val_fraction=0.2))
    assert_partition(df, s)
    assert s.train[TIMESTAMP].max() < s.val[TIMESTAMP].min()
    assert s.val[TIMESTAMP].max() < s.test[TIMESTAMP].min() == s.info["cutoff_timestamp"]
    assert abs(len(s.test) / len(df) - 0.2) < 0.05
    cold = set(s.test[USER_ID]) - set(s.train[USER_ID])
    assert s.info["cold_test_users"] == len(cold)


def test_sample_negatives_exact_count_unique_unseen() -> None:
    rng = np.random.default_rng(5)
    n_items, n = 300, 50
    seen_u = np.repeat(np.arange(40), 30)
    seen_i = rng.integers(0, n_items, len(seen_u))
    dense = np.arange(240)  # user 40 saw 240 of 300 items: the exact (dense) path
    seen_u = np.concatenate([seen_u, np.full(240, 40)])
    seen_i = np.concatenate([seen_i, dense])
    u, i = sample_negatives(np.arange(41), seen_u, seen_i, np.arange(n_items), n, rng)
    neg = pd.DataFrame({USER_IDX: u, ITEM_IDX: i})
    assert (neg.groupby(USER_IDX).size() == n).all() and neg[USER_IDX].nunique() == 41
    assert not neg.duplicated().any()
    seen = set(zip(seen_u.tolist(), seen_i.tolist(), strict=True))
    assert not seen & set(zip(u.tolist(), i.tolist(), strict=True))
    assert set(i[u == 40]) <= set(range(240, 300))
    assert np.array_equal(np.lexsort((i, u)), np.arange(len(u)))  # sorted by user, item
    with pytest.raises(DataError, match="fewer than n_negatives"):
        sample_negatives(np.array([40]), seen_u, seen_i, np.arange(n_items), 61, rng)


@pytest.mark.parametrize("n", [5, 6])  # 5: rejection path; 6: exact path (20 allowed < 4 * 6)
def test_sample_negatives_is_uniform(n: int) -> None:
    users = np.arange(3000)
    seen_u = np.repeat(users, 10)
    seen_i = np.tile(np.arange(10), len(users))
    _, i = sample_negatives(users, seen_u, seen_i, np.arange(30), n, np.random.default_rng(0))
    freq = np.bincount(i, minlength=30)
    assert (freq[:10] == 0).all()
    expected = len(users) * n / 20
    assert np.abs(freq[10:] - expected).max() < 5 * math.sqrt(expected)


# --- the stage ------------------------------------------------------------------------------
def dataset(seed: int = 0) -> Dataset:
    df = random_interactions(seed)
    item_ids = np.arange(1, 90)  # 81..89 never interacted: in the vocabulary anyway
    items = pd.DataFrame(
        {
            ITEM_ID: item_ids,
            "title": [f"Item {k % 7} Part {k % 3} ({1990 + k % 9})" for k in item_ids],
            "genres": ["Comedy|Drama" if k % 2 else "Action" for k in item_ids],
        }
    )
    users = pd.DataFrame(
        {USER_ID: np.arange(1000, 1060), "age": 20 + np.arange(60) % 40, "gender": "F"}
    )
    return Dataset(interactions=df, items=items, users=users, name="random")


METHODS = ["random_holdout", "temporal_holdout", "global_temporal", "leave_one_out", "kfold"]


def config(method: str, seed: int = 7, **kw: object) -> PreprocessConfig:
    split = SplitConfig(method=method, seed=seed, n_negatives=10, n_folds=3)
    return PreprocessConfig(**{**NO_KCORE, **kw}, split=split)


def test_preprocess_stats_and_vocabulary() -> None:
    ds = dataset()
    inter = pd.concat([ds.interactions, ds.interactions.iloc[:5]], ignore_index=True)
    p = preprocess(
        Dataset(inter, ds.items, ds.users),
        PreprocessConfig(implicit_threshold=3.0, min_user_interactions=3, min_item_interactions=2),
    )
    s = p.stats
    assert s["rows_in"] == len(inter) and s["duplicates_removed"] == 5
    kept = (ds.interactions[RATING] >= 3).sum()
    assert s["implicit_dropped"] == len(ds.interactions) - kept
    assert s["n_interactions"] == kept - s["kcore_removed_rows"] == len(p.interactions)
    assert p.feedback == IMPLICIT and (p.interactions[RATING] == 1.0).all()
    assert p.vocab.n_items == 89  # the whole items table, also k-core removed items
    assert p.vocab.n_users == 60
    assert p.features.item_genres.shape == (89, 3)
    assert p.features.user_features.shape[0] == 60
    in_train = p.split.item_in_train(p.vocab.n_items)
    assert in_train.sum() == p.split.info["n_train_items"] and not in_train[80:].any()
    assert p.folds == ()


def test_preprocess_config_errors() -> None:
    ds = dataset()
    with pytest.raises(ConfigError, match="test pairs"):
        preprocess(ds, config("predefined"))
    with pytest.raises(ConfigError, match="only used by the predefined"):
        preprocess(ds, config("random_holdout"), test_pairs=ds.interactions)
    with pytest.raises(ConfigError, match="test_fraction"):
        preprocess(ds, PreprocessConfig(split=SplitConfig(test_fraction=1.0)))
    with pytest.raises(DataError, match="no interactions left"):
        preprocess(ds, PreprocessConfig(min_user_interactions=1000))


@pytest.mark.parametrize("method", METHODS)
def test_preprocess_is_deterministic_and_ignores_row_order(method: str) -> None:
    ds = dataset()
    a = preprocess(ds, config(method))
    shuffled = ds.interactions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    b = preprocess(Dataset(shuffled, ds.items, ds.users, name="random"), config(method))
    assert a.equals(b)
    assert a.equals(preprocess(ds, config(method)))
    assert len(a.folds) == (3 if method == "kfold" else 0)


@pytest.mark.parametrize("method", ["random_holdout", "temporal_holdout", "leave_one_out", "kfold"])
def test_different_seed_gives_different_split(method: str) -> None:
    ds = dataset()
    a, b = preprocess(ds, config(method, seed=1)), preprocess(ds, config(method, seed=2))
    if method == "temporal_holdout":  # only the order of same-second rows is random
        assert not a.split.test.equals(b.split.test) or not a.split.val.equals(b.split.val)
    else:
        assert not a.split.test.equals(b.split.test)


def test_temporal_ties_are_broken_by_seed() -> None:
    df = indexed(frame([(1, k, 1.0, 50) for k in range(6)]))
    picks = {
        tuple(temporal_holdout(df, SplitConfig(seed=s, val_fraction=0)).test[ITEM_ID])
        for s in range(10)
    }
    assert len(picks) > 1


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("method", ["leave_one_out", "kfold", "temporal_holdout"])
def test_save_load_round_trip_and_identical_bytes(tmp_path: Path, method: str) -> None:
    p = preprocess(dataset(), config(method))
    save_processed(p, tmp_path / "a")
    save_processed(preprocess(dataset(), config(method)), tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    loaded = load_processed(tmp_path / "a")
    assert loaded.equals(p)
    names = set(files(tmp_path / "a"))
    assert {"meta.json", "interactions.parquet", "vocab/users.parquet", "vocab/items.parquet",
            "split/train.parquet", "split/val.parquet", "split/test.parquet",
            "features/item_tokens.npy", "features/names.json"} <= names  # fmt: skip
    assert ("split/negatives.parquet" in names) == (method == "leave_one_out")
    assert ("folds/2/test.parquet" in names) == (method == "kfold")


def test_save_replaces_previous_output_atomically(tmp_path: Path) -> None:
    out = tmp_path / "processed"
    save_processed(preprocess(dataset(), config("leave_one_out")), out)
    p = preprocess(dataset(), config("temporal_holdout"))
    save_processed(p, out)
    assert not (out / "split" / "negatives.parquet").exists()
    assert load_processed(out).equals(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["processed"]


def test_load_missing_directory_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_processed(tmp_path / "nope")


# --- string ids (issue 17) ------------------------------------------------------------------
def as_text(ds: Dataset) -> Dataset:
    """``ds`` with every id written as text whose order differs from the numbers' (10 < 9)."""

    def users(col: pd.Series) -> pd.Series:
        return col.map(lambda u: f"user-{u}-x").astype("str")

    def items(col: pd.Series) -> pd.Series:
        return col.map(lambda i: f"SKU-{i}-B").astype("str")

    assert ds.items is not None and ds.users is not None
    inter = ds.interactions.assign(
        user_id=users(ds.interactions[USER_ID]), item_id=items(ds.interactions[ITEM_ID])
    )
    return Dataset(
        inter,
        ds.items.assign(item_id=items(ds.items[ITEM_ID])),
        ds.users.assign(user_id=users(ds.users[USER_ID])),
        name=ds.name,
    )


def test_vocabulary_of_string_ids() -> None:
    v = Vocabulary(np.array(["u-10", "u-2"]), np.array(["SKU-1-B", "SKU-10-B", "SKU-2-B"]))
    assert v.user_ids.dtype == object and (v.user_kind, v.item_kind) == ("str", "str")
    with pytest.raises(DataError, match="sorted"):
        Vocabulary(np.array(["b", "a"]), np.array([1]))
    assert v.encode_items(["SKU-2-B", "SKU-1-B", "nope"]).tolist() == [2, 0, -1]
    assert v.encode_users(np.array(["u-10"], dtype=object)).tolist() == [0]
    assert v.encode_users([10, 2]).tolist() == [-1, -1]  # another kind is unknown, not cast
    assert Vocabulary(np.array([2, 10]), np.array([1])).encode_users(["2", 10]).tolist() == [-1, 1]
    assert v.decode_items([1, 2]).tolist() == ["SKU-10-B", "SKU-2-B"]
    assert v.item_grid(1, 2).tolist() == [["", ""]]
    back = Vocabulary.from_frames(*v.to_frames())
    assert back.equals(v) and back.item_ids.dtype == object


def test_vocabulary_refuses_two_id_kinds_for_one_side() -> None:
    ds = as_text(dataset())
    assert ds.items is not None
    numeric_items = ds.items.assign(item_id=np.arange(1, len(ds.items) + 1))
    with pytest.raises(DataError, match="items table's item_id values are int ids"):
        Vocabulary.build(ds.interactions, numeric_items, ds.users)


@pytest.mark.parametrize("method", ["leave_one_out", "kfold", "temporal_holdout"])
def test_string_ids_preprocess_round_trip_and_keep_their_text(tmp_path: Path, method: str) -> None:
    """Text ids give the same cleaning and split sizes as the same data with integer ids, the
    indices decode to the very text of each row, and the output is saved losslessly (same bytes
    twice, equal when loaded)."""
    ints, texts = dataset(), as_text(dataset())
    a, p = preprocess(ints, config(method)), preprocess(texts, config(method))
    assert p.stats == a.stats
    assert (len(p.split.train), len(p.split.test)) == (len(a.split.train), len(a.split.test))
    assert p.vocab.item_ids[:3].tolist() == ["SKU-1-B", "SKU-10-B", "SKU-11-B"]
    for frame in (p.interactions, p.split.train, p.split.test, p.split.negatives):
        if frame is not None:
            assert str(frame[USER_ID].dtype) == "str"
            np.testing.assert_array_equal(p.vocab.decode_users(frame[USER_IDX]), frame[USER_ID])
            np.testing.assert_array_equal(p.vocab.decode_items(frame[ITEM_IDX]), frame[ITEM_ID])
    np.testing.assert_array_equal(p.features.item_genres.sum(0), a.features.item_genres.sum(0))
    save_processed(p, tmp_path / "a")
    save_processed(preprocess(texts, config(method)), tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert load_processed(tmp_path / "a").equals(p)
