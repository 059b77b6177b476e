"""How far can our models be combined on ml100k-u1? A learned re-ranker over all of them.

Issue #3 asks for NDCG@10 >= 0.594 on ``u1.test`` (5 % above EASE); the best blend of two
members (EASE + two-tower) reaches 0.582. This script measures whether *any* combination of the
members we have gets there, by fitting the most flexible combiner we could justify, a logistic
re-ranker, and by bounding it from above:

1. Members fitted on a split's train file: EASE (lambda 500), a time-kernel EASE (below),
   ItemKNN, the two-tower and the hybrid (the epochs ``recsys benchmark`` tuned for them), and
   two closed-form models from the user side: user-user EASE (lambda 500) and an infinitely
   wide autoencoder (kernel ridge regression over users with a one-hidden-layer ReLU neural
   tangent kernel, as in Sachdeva et al. 2022's infinite-AE).
2. Candidates: each user's top ``N_CANDIDATES`` unseen items by EASE. Features per candidate
   (27): each member's score standardized over the user's candidates and
   its log-rank among all unseen items; EASE scores from the user's liked (rating >= 4) and
   disliked (<= 2) items alone; log popularity; the user's log profile size and mean rating;
   the item's share of the ratings given within the user's active period (first to last
   training rating, +- one day); the item's mean training rating; content and demographics:
   the user's genre profile against the item's genres, the item's age at the user's ratings,
   the user's age and gender, and how the item's audience differs from the user in both.
3. A logistic model (one Keras ``Dense(1)`` on standardized features, ``SEEDS`` seeds) learns
   from a split's held-out rows which candidates were rated; for the upper bound also an MLP
   (one hidden ReLU layer of ``MLP_UNITS``), in case the signal is in interactions of features.

Rows of the report (all scored by PROTOCOL.md's NDCG@10, candidates ranked by the re-ranker):

- ``validation``: members fitted on ``val_train``, labels from ``val_test`` (PROTOCOL.md's
  validation files); the re-ranker is scored by two-fold cross-fitting over users.
- ``test``: members refitted on ``train``, the re-ranker trained on the validation files, one
  read of ``test``: what the protocol allows.
- ``test, re-ranker from a test-shaped split`` (analysis, *not* PROTOCOL.md): a split built
  from ``train`` the way ``u1.test`` is shaped (39 % of the rows of 460 users held out, where
  the validation files hold out 1/8 of every user's rows) trains the re-ranker instead.
- ``test, upper bound`` (analysis, *not* a result): the re-ranker (logistic, then MLP) trained
  on half of the test users' own test labels and scored on the other half (two-fold, twice).
  No combiner trained on these features without test labels should do better.

Time-kernel EASE: ratings were submitted in batches (61 % of ``u1.test`` rows share their
second with a training row of the same user), so item pairs rated close in time get extra
weight in EASE's Gram matrix: ``G = X'X + ALPHA * sum_u K_u``, ``K_u[i, j] = exp(-|t_ui -
t_uj| / TAU_S)``, a sum of positive-definite kernels, so ``G`` stays positive semi-definite.

    .venv/bin/python bench/u1_ceiling.py            # ~13 min on 2 cores

Writes ``reports/benchmarks/u1-ceiling/summary.json`` and ``summary.md`` (git-ignored: derived
from MovieLens).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hardware import hardware

from recsys.benchmark import SplitData, SplitFiles, load_split, read_side_tables
from recsys.data.sources import RELEASE_DATE
from recsys.evaluation.metrics import Relevance, topk_metrics
from recsys.models.baselines import ease_from_gram
from recsys.models.registry import model_class
from recsys.schema import AGE, GENDER, GENRES, ITEM_ID, RATING, TIMESTAMP, USER_ID

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECSYS_SHARED_DIR", ROOT.parent / "shared"))
SPLIT = SHARED / "benchmarks" / "splits" / "ml100k-u1"
ML100K = SHARED / "datasets" / "ml-100k"
OUT = ROOT / "reports" / "benchmarks" / "u1-ceiling"

MEMBERS: dict[str, dict[str, Any]] = {
    "ease": {"l2": 500.0},
    "itemknn": {},
    "twotower": {"epochs": 11},
    "hybrid": {"epochs": 25},
}
"""Registry models and settings: EASE's lambda and the deep models' epochs as ``recsys
benchmark`` tuned them on the validation files (docs/benchmarks.md)."""
EASE_L2 = 500.0
TAU_S = 600.0
ALPHA = 2.0
"""Time-kernel EASE: kernel width (seconds) and weight, the best of a small grid on the
validation files (tau 60 s - 1 day, alpha 0.5 - 2: validation NDCG@10 0.2638 against 0.2586)."""
INFAE_L2 = 3.0
"""Infinite-AE ridge, times the kernel's mean diagonal: the best of 0.3, 1, 3, 10, 30 on the
validation files (NDCG@10 0.2604 alone; 0.2098 - 0.2485 for the others)."""
MLP_UNITS = 32
N_CANDIDATES = 200
SEEDS = (0, 1, 2)
EPOCHS = 60
SHAPED_USERS = 460
SHAPED_SHARE = 0.39
DAY_S = 86_400
YEAR_S = 365.25 * DAY_S


@dataclass(frozen=True)
class Candidates:
    """Each evaluated user's candidates, their features and which of them were held out."""

    features: np.ndarray
    """[n_users, N_CANDIDATES, n_features] float32."""
    items: np.ndarray
    """[n_users, N_CANDIDATES] item ids, EASE's order."""
    labels: np.ndarray
    """[n_users, N_CANDIDATES] 1.0 where the candidate is a held-out item of its user."""
    relevant: Relevance
    """Every held-out item per user (also those outside the candidates: NDCG's denominator)."""
    names: tuple[str, ...]

    def ndcg10(self, scores: np.ndarray) -> float:
        """Mean NDCG@10 of the candidates ranked by ``scores`` [n_users, N_CANDIDATES]."""
        order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        ranked = np.take_along_axis(self.items, order, axis=1)
        per_user = topk_metrics(ranked, self.relevant, (10,))["ndcg@10"]
        return float(per_user.mean())

    def column(self, name: str) -> np.ndarray:
        return self.features[:, :, self.names.index(name)]


def time_kernel_gram(train: pd.DataFrame, items: np.ndarray) -> np.ndarray:
    """``sum_u K_u`` over the items of ``items`` (sorted ids), ``K_u`` as in the module doc."""
    col = np.searchsorted(items, train[ITEM_ID].to_numpy())
    stamps = train[TIMESTAMP].to_numpy(dtype=np.float64)
    rows, cols, vals = [], [], []
    for idx in train.groupby(USER_ID, sort=False).indices.values():
        c, t = col[idx], stamps[idx]
        rows.append(np.repeat(c, len(c)))
        cols.append(np.tile(c, len(c)))
        vals.append(np.exp(-np.abs(t[:, None] - t[None, :]) / TAU_S).ravel())
    gram = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(items), len(items)),
    )
    return gram.toarray()


def member_scores(
    split: SplitData, users: np.ndarray, items: np.ndarray, seen: np.ndarray
) -> dict[str, np.ndarray]:
    """[len(users), len(items)] scores of every registry member, the time-kernel EASE, user-user
    EASE and the infinite AE; ``seen`` [len(users), len(items)] bool: the training interactions."""
    data = split.fit_data()
    out: dict[str, np.ndarray] = {}
    for name, fields in MEMBERS.items():
        start = time.perf_counter()
        model = model_class(name)(**fields)
        model.fit(data, data.split)
        block = model._scores(model.encode_users(users), model.encode_items(items))
        out[name] = np.asarray(block, dtype=np.float64)
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    x = seen.astype(np.float64)
    gram = x.T @ x + ALPHA * time_kernel_gram(split.train, items)
    out["ease_time"] = x @ ease_from_gram(gram, EASE_L2)
    out["user_ease"] = ease_from_gram(x @ x.T, EASE_L2).T @ x
    out["infinite_ae"] = infinite_ae(x, INFAE_L2)
    return out


def infinite_ae(x: np.ndarray, l2: float) -> np.ndarray:
    """[n_users, n_items] scores of kernel ridge regression from each user's row of ``x`` to
    itself, with the neural tangent kernel of a one-hidden-layer ReLU network (arc-cosine
    kernels of degree 0 and 1); ``l2`` scales the kernel's mean diagonal."""
    dot = x @ x.T
    norm = np.sqrt(np.diag(dot))
    outer = np.outer(norm, norm)
    cos = np.clip(dot / np.maximum(outer, 1e-12), -1.0, 1.0)
    angle = np.arccos(cos)
    kernel = dot * (np.pi - angle) / np.pi + outer * (np.sin(angle) + (np.pi - angle) * cos) / np.pi
    ridge = l2 * float(np.mean(np.diag(kernel))) * np.eye(len(kernel))
    return kernel @ np.linalg.solve(kernel + ridge, x)


def standardized(picked: np.ndarray) -> np.ndarray:
    """Each row of ``picked`` [n_users, N_CANDIDATES] standardized over the user's candidates."""
    return (picked - picked.mean(1, keepdims=True)) / (picked.std(1, keepdims=True) + 1e-9)


def build_candidates(
    split: SplitData, item_table: pd.DataFrame, user_table: pd.DataFrame
) -> Candidates:
    """Members fitted on ``split``'s train file; labels from its test file; content and
    demographics from ``u.item`` / ``u.user`` tables."""
    train, test = split.train, split.test
    users = np.unique(train[USER_ID].to_numpy())
    items = np.unique(train[ITEM_ID].to_numpy())
    u = np.searchsorted(users, train[USER_ID].to_numpy())
    i = np.searchsorted(items, train[ITEM_ID].to_numpy())
    seen = np.zeros((len(users), len(items)), dtype=bool)
    seen[u, i] = True
    scores = member_scores(split, users, items, seen)

    evaluated = np.intersect1d(np.unique(test[USER_ID].to_numpy()), users)
    rows = np.searchsorted(users, evaluated)
    masked = {k: np.where(seen, -np.inf, v)[rows] for k, v in scores.items()}
    cand = np.argsort(-masked["ease"], axis=1, kind="stable")[:, :N_CANDIDATES]

    names: list[str] = []
    columns: list[np.ndarray] = []
    for name, block in masked.items():
        rank = np.argsort(np.argsort(-block, axis=1, kind="stable"), axis=1)
        names += [f"{name}_z", f"{name}_logrank"]
        columns += [
            standardized(np.take_along_axis(block, cand, axis=1)),
            np.log1p(np.take_along_axis(rank, cand, axis=1)),
        ]

    popularity = seen.sum(0)
    profile = seen.sum(1)[rows]
    ratings = np.bincount(i, train[RATING].to_numpy(dtype=np.float64), len(items))
    stamps = train[TIMESTAMP].to_numpy()
    first = pd.Series(stamps).groupby(u).min().to_numpy()[rows]
    last = pd.Series(stamps).groupby(u).max().to_numpy()[rows]
    order = np.lexsort((stamps, i))
    sorted_items, sorted_stamps = i[order], stamps[order]
    starts = np.searchsorted(sorted_items, np.arange(len(items)))
    ends = np.searchsorted(sorted_items, np.arange(len(items)), side="right")
    in_window = np.empty((len(rows), len(items)))
    for j in range(len(items)):
        s = sorted_stamps[starts[j] : ends[j]]
        in_window[:, j] = np.searchsorted(s, last + DAY_S) - np.searchsorted(s, first - DAY_S)
    share = in_window / (in_window.sum(1, keepdims=True) + 1.0)
    names += ["log_popularity", "log_profile", "window_share", "item_mean_rating"]
    columns += [
        np.log1p(popularity[cand]),
        np.broadcast_to(np.log1p(profile)[:, None], cand.shape),
        np.log1p(1000.0 * np.take_along_axis(share, cand, axis=1)),
        (ratings / np.maximum(popularity, 1))[cand],
    ]
    extra = side_features(split, users, items, rows, cand, seen, item_table, user_table)
    names += list(extra)
    columns += list(extra.values())

    relevant_rows = np.searchsorted(evaluated, test[USER_ID].to_numpy())
    keep = relevant_rows < len(evaluated)
    keep[keep] = evaluated[relevant_rows[keep]] == test[USER_ID].to_numpy()[keep]
    test_items = test[ITEM_ID].to_numpy()
    relevant = Relevance.from_pairs(relevant_rows[keep], test_items[keep], len(evaluated))
    held = pd.MultiIndex.from_arrays([relevant_rows[keep], test_items[keep]])
    cand_ids = items[cand]
    pairs = pd.MultiIndex.from_arrays(
        [np.repeat(np.arange(len(evaluated)), cand.shape[1]), cand_ids.ravel()]
    )
    label = pairs.isin(held).reshape(cand.shape).astype(np.float32)
    return Candidates(
        np.stack(columns, axis=2).astype(np.float32), cand_ids, label, relevant, tuple(names)
    )


def side_features(
    split: SplitData,
    users: np.ndarray,
    items: np.ndarray,
    rows: np.ndarray,
    cand: np.ndarray,
    seen: np.ndarray,
    item_table: pd.DataFrame,
    user_table: pd.DataFrame,
) -> dict[str, np.ndarray]:
    """Features beyond the members' scores, each [len(rows), N_CANDIDATES]: EASE from the
    user's liked / disliked items alone, the user's mean rating, genre match, the item's age at
    the user's ratings, the user's age and gender and the item's audience in both."""
    train = split.train
    u = np.searchsorted(users, train[USER_ID].to_numpy())
    i = np.searchsorted(items, train[ITEM_ID].to_numpy())
    rating = train[RATING].to_numpy(dtype=np.float64)
    x = seen.astype(np.float64)
    weights = ease_from_gram(x.T @ x, EASE_L2)
    out: dict[str, np.ndarray] = {}
    for name, mask in (("ease_liked_z", rating >= 4), ("ease_disliked_z", rating <= 2)):
        part = np.zeros_like(x)
        part[u[mask], i[mask]] = 1.0
        out[name] = standardized(np.take_along_axis(part[rows] @ weights, cand, axis=1))
    mean_rating = np.bincount(u, rating, len(users)) / np.maximum(seen.sum(1), 1)

    def per_user(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values[rows][:, None], cand.shape)

    out["user_mean_rating"] = per_user(mean_rating)
    item_rows = item_table.set_index(ITEM_ID).reindex(items)
    genres = item_rows[GENRES].fillna("").str.get_dummies(sep="|").to_numpy(dtype=np.float64)
    profile = x @ genres
    profile /= np.maximum(profile.sum(1, keepdims=True), 1.0)
    per_item = genres / np.maximum(genres.sum(1, keepdims=True), 1.0)
    out["genre_match"] = np.take_along_axis((profile @ per_item.T)[rows], cand, axis=1)
    released = pd.to_datetime(item_rows[RELEASE_DATE], format="%d-%b-%Y", errors="coerce")
    release_s = (released - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    release_s = np.where(np.isnan(release_s), np.nanmedian(release_s), release_s)
    stamps = train[TIMESTAMP].to_numpy(np.float64)
    mean_time = np.bincount(u, stamps, len(users)) / np.maximum(seen.sum(1), 1)
    months = (mean_time[rows][:, None] - release_s[cand]) / YEAR_S * 12.0
    out["log_item_age_months"] = np.log1p(np.clip(months, 0.0, None))
    user_rows = user_table.set_index(USER_ID).reindex(users)
    age = user_rows[AGE].to_numpy(dtype=np.float64)
    age = np.where(np.isnan(age), np.nanmean(age), age)
    male = (user_rows[GENDER] == "M").to_numpy(dtype=np.float64)
    audience = np.maximum(seen.sum(0), 1)
    out["user_age"] = per_user(age)
    out["user_male"] = per_user(male)
    out["audience_age_gap"] = np.abs((x.T @ age / audience)[cand] - age[rows][:, None])
    out["audience_male_share"] = (x.T @ male / audience)[cand]
    return out


def fit_reranker(
    train: Candidates, users: np.ndarray, seed: int, hidden: int = 0
) -> Callable[[Candidates], np.ndarray]:
    """A logistic re-ranker fitted on the candidates of ``users`` (rows of ``train``); with
    ``hidden`` > 0 an MLP with one hidden ReLU layer of that width."""
    import keras

    x = train.features[users].reshape(-1, train.features.shape[2])
    y = train.labels[users].reshape(-1)
    mean, std = x.mean(0), x.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(hidden, activation="relu")] if hidden else []
    model = keras.Sequential([keras.Input((x.shape[1],)), *layers, keras.layers.Dense(1)])
    model.compile(
        keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True)
    )
    model.fit((x - mean) / std, y, batch_size=512, epochs=EPOCHS, verbose=0)

    def predict(c: Candidates) -> np.ndarray:
        flat = c.features.reshape(-1, c.features.shape[2])
        out = model.predict((flat - mean) / std, batch_size=8192, verbose=0)
        return np.asarray(out).reshape(c.labels.shape)

    return predict


def cross_fitted(c: Candidates, seed: int, hidden: int = 0) -> float:
    """NDCG@10 of a re-ranker fitted on one half of ``c``'s users and scored on the other."""
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(c.items)) < len(c.items) // 2
    scores = np.zeros(c.labels.shape, dtype=np.float32)
    for part in (half, ~half):
        predict = fit_reranker(c, np.flatnonzero(~part), seed, hidden)
        scores[part] = predict(c)[part]
    return c.ndcg10(scores)


def shaped_split(directory: Path, seed: int = 7) -> SplitFiles:
    """From ``train.tsv``: 39 % of the rows of 460 random users held out (u1.test's shape)."""
    train = pd.read_csv(SPLIT / "train.tsv", sep="\t", header=None)
    rng = np.random.default_rng(seed)
    users = rng.choice(np.unique(train[0]), SHAPED_USERS, replace=False)
    held = train[0].isin(users).to_numpy() & (rng.random(len(train)) < SHAPED_SHARE)
    paths = SplitFiles(directory / "shaped_train.tsv", directory / "shaped_test.tsv")
    train[~held].to_csv(paths.train, sep="\t", header=False, index=False)
    train[held].to_csv(paths.test, sep="\t", header=False, index=False)
    return paths


def summary(c: Candidates) -> dict[str, float]:
    """NDCG@10 of single members and of the EASE + two-tower blend (1 : 2, per-user z-scores
    over the candidates; the `ensemble` model standardizes globally instead)."""
    blend = c.column("ease_z") + 2.0 * c.column("twotower_z")
    return {
        "ease": c.ndcg10(c.column("ease_z")),
        "ease_time": c.ndcg10(c.column("ease_time_z")),
        "twotower": c.ndcg10(c.column("twotower_z")),
        "user_ease": c.ndcg10(c.column("user_ease_z")),
        "infinite_ae": c.ndcg10(c.column("infinite_ae_z")),
        "blend_ease_twotower_1_2": c.ndcg10(blend),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not SPLIT.is_dir():
        raise SystemExit(f"{SPLIT} not found: set RECSYS_SHARED_DIR to the shared folder")
    items, users = read_side_tables(ML100K / "u.item", ML100K / "u.user")
    assert items is not None and users is not None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "validation": SplitFiles(SPLIT / "val_train.tsv", SPLIT / "val_test.tsv"),
            "shaped": shaped_split(Path(tmp)),
            "test": SplitFiles(SPLIT / "train.tsv", SPLIT / "test.tsv"),
        }
        cands: dict[str, Candidates] = {}
        for name, paths in files.items():
            print(f"{name}: fitting the members", flush=True)
            split = load_split(paths, items=items, users=users)
            cands[name] = build_candidates(split, items, users)
    val, shaped, test = cands["validation"], cands["shaped"], cands["test"]
    every_val_user = np.arange(len(val.items))
    every_shaped_user = np.arange(len(shaped.items))
    result: dict[str, Any] = {
        "members": {k: summary(c) for k, c in cands.items()},
        "reranker": {
            "validation, cross-fitted": [cross_fitted(val, s) for s in SEEDS],
            "test, trained on the validation files": [
                test.ndcg10(fit_reranker(val, every_val_user, s)(test)) for s in SEEDS
            ],
            "test, trained on the test-shaped split (analysis)": [
                test.ndcg10(fit_reranker(shaped, every_shaped_user, s)(test)) for s in SEEDS
            ],
            "test, upper bound: cross-fitted on test labels (analysis)": [
                cross_fitted(test, s) for s in SEEDS
            ],
            f"test, upper bound, MLP ({MLP_UNITS} ReLU units) (analysis)": [
                cross_fitted(test, s, MLP_UNITS) for s in SEEDS
            ],
        },
        "features": list(val.names),
        "seconds": round(time.perf_counter() - start),
        "hardware": hardware(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| members | " + " | ".join(result["members"]["test"]) + " |"]
    lines.append("|---|" + "---:|" * len(result["members"]["test"]))
    for split_name, row in result["members"].items():
        lines.append(f"| {split_name} | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")
    lines += ["", "| re-ranker | NDCG@10 per seed |", "|---|---|"]
    for key, values in result["reranker"].items():
        lines.append(f"| {key} | " + ", ".join(f"{v:.4f}" for v in values) + " |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
