"""``recsys benchmark`` end to end on a few hundred rows, and on the shared splits.

Each output file is checked against PROTOCOL.md (exact headers, ranks, row counts, no training
item recommended) and each ``metrics.json`` against an independent run of
``recsys.evaluation`` on the same model and data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys.cli import main
from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.data.sources import (
    ML100K_GENRES,
    read_ml100k_items,
    read_ml100k_users,
    read_movielens,
    read_ratings_file,
)
from recsys.evaluation.evaluate import evaluate_loo, evaluate_rating, evaluate_topk
from recsys.models.baselines import tune_ease_lambda
from recsys.models.registry import MODELS, model_class
from recsys.schema import INTERACTION_COLUMNS, Dataset

N_USERS, N_ITEMS, N_NEG, N_BOOT = 30, 70, 6, 50
BPR_PARAMS = {"epochs": 2, "factors": 8, "batch_size": 64}
HEADERS = {
    "recommendations.csv": "user_id,item_id,rank,score",
    "scores.csv": "user_id,item_id,score",
    "predictions.csv": "user_id,item_id,prediction",
}


# --- tiny split files ---------------------------------------------------------------------------
def write_uidata(path: Path, rows: list[tuple[int, int, float, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows))
    return path


def interactions(seed: int) -> list[tuple[int, int, float, int]]:
    """Users 1..N_USERS with 6..32 distinct items each, popularity skewed to low ids."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, N_ITEMS + 1)
    rows = []
    for u in range(1, N_USERS + 1):
        n = 6 + (u * 7) % 27
        items = rng.choice(
            np.arange(1, N_ITEMS + 1), size=n, replace=False, p=weights / weights.sum()
        )
        for j, i in enumerate(items):
            rows.append((u, int(i), float(1 + (u + int(i)) % 5), 880_000_000 + 1000 * u + j))
    return rows


def holdout(rows: list[tuple[int, int, float, int]], every: int) -> tuple[list, list]:
    """Every ``every``-th row of each user (by position) is test; the rest train."""
    train, test, seen = [], [], dict[int, int]()
    for row in rows:
        k = seen[row[0]] = seen.get(row[0], 0) + 1
        (test if k % every == 0 else train).append(row)
    return train, test


def last_per_user(rows: list[tuple[int, int, float, int]]) -> tuple[list, list]:
    last = {r[0]: r for r in rows}  # rows are in time order per user
    held = set(last.values())
    return [r for r in rows if r not in held], sorted(held)


def negatives_for(rows: list, test: list, seed: int) -> list[tuple[int, int, float, int]]:
    rng = np.random.default_rng(seed)
    items = sorted({r[1] for r in rows})
    out = []
    for u, *_ in test:
        mine = {r[1] for r in rows if r[0] == u}
        pool = [i for i in items if i not in mine]
        out += [(u, int(i), 0.0, 0) for i in rng.choice(pool, size=N_NEG, replace=False)]
    return out


def write_side_files(d: Path) -> tuple[Path, Path]:
    flags = len(ML100K_GENRES)
    lines = [
        f"{i}|Movie {i} (19{70 + i % 30})|01-Jan-1995||http://x/{i}|"
        + "|".join("1" if g == i % flags else "0" for g in range(flags))
        for i in range(1, N_ITEMS + 3)  # two items nobody rated
    ]
    (d / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    users = [f"{u}|{20 + u}|{'MF'[u % 2]}|other|0000{u}" for u in range(1, N_USERS + 1)]
    (d / "u.user").write_text("\n".join(users) + "\n")
    return d / "u.item", d / "u.user"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bench")
    rows = interactions(seed=1)
    train, test = holdout(rows, every=4)
    test.append((N_USERS + 1, 1, 4.0, 890_000_000))  # a test user without training rows
    test.append((2, N_ITEMS + 1, 3.0, 890_000_001))  # an item absent from train
    val_train, val_test = holdout(train, every=5)
    loo_train, loo_test = last_per_user(rows)
    loo_val_train, loo_val_test = last_per_user(loo_train)
    items, users = write_side_files(d)
    out = {
        "train": write_uidata(d / "train.tsv", train),
        "test": write_uidata(d / "test.tsv", test),
        "val_train": write_uidata(d / "val_train.tsv", val_train),
        "val_test": write_uidata(d / "val_test.tsv", val_test),
        "loo_train": write_uidata(d / "loo" / "train.tsv", loo_train),
        "loo_test": write_uidata(d / "loo" / "test.tsv", loo_test),
        "negatives": write_uidata(d / "loo" / "negatives.tsv", negatives_for(rows, loo_test, 2)),
        "loo_val_train": write_uidata(d / "loo" / "val_train.tsv", loo_val_train),
        "loo_val_test": write_uidata(d / "loo" / "val_test.tsv", loo_val_test),
        "val_negatives": write_uidata(
            d / "loo" / "val_negatives.tsv", negatives_for(loo_train, loo_val_test, 3)
        ),
        "items": items,
        "users": users,
        "params": d / "params.yaml",
    }
    for k in (1, 2):  # two "official" folds for rating cross-validation
        base, held = holdout(interactions(seed=10 + k), every=5)
        write_uidata(d / "folds" / f"f{k}.base", base)
        write_uidata(d / "folds" / f"f{k}.test", held)
    out["params"].write_text(yaml.safe_dump({"models": {"bpr": BPR_PARAMS}, "data": {"x": 1}}))
    return out


def benchmark(*args: str | Path) -> int:
    return main(["benchmark", "--n-boot", str(N_BOOT), *map(str, args)])


def processed(
    train: Path, test: Path, items: Path | None = None, users: Path | None = None
) -> tuple[Processed, pd.DataFrame]:
    """The ``Processed`` of a split built here, without the benchmark module."""
    tr, te = read_ratings_file(train), read_ratings_file(test)
    dataset = Dataset(
        interactions=pd.concat([tr, te], ignore_index=True),
        items=None if items is None else read_ml100k_items(items),
        users=None if users is None else read_ml100k_users(users),
    )
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=0.0),
    )
    return preprocess(dataset, cfg, test_pairs=te), te


def fitted(name: str, data: Processed, **fields: Any) -> Any:
    model = model_class(name)(**fields)
    model.fit(data)
    return model


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def assert_same_numbers(got: dict[str, Any], metrics: dict[str, float], ci: Any) -> None:
    assert got["metrics"] == pytest.approx(metrics, rel=1e-12, abs=1e-12)
    assert got["ci"] == {k: pytest.approx(list(v), abs=1e-12) for k, v in ci.items()}


# --- topk ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topk_run(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("topk") / "out"
    code = benchmark(
        "--train", files["train"], "--test", files["test"],
        "--val-train", files["val_train"], "--val-test", files["val_test"],
        "--items", files["items"], "--users", files["users"],
        "--models", "mostpop,ease,bpr", "--params", files["params"], "--save-models",
        "--out", out,
    )  # fmt: skip
    assert code == 0
    return out


def test_topk_output_files(topk_run: Path, files: dict[str, Path]) -> None:
    train, test = read_ratings_file(files["train"]), read_ratings_file(files["test"])
    train_items = set(train["item_id"])
    evaluated = sorted(set(test["user_id"]) & set(train["user_id"]))
    seen = train.groupby("user_id")["item_id"].agg(set)
    for name in ("mostpop", "ease", "bpr"):
        path = topk_run / name / "recommendations.csv"
        assert path.read_text().splitlines()[0] == HEADERS["recommendations.csv"]
        recs = pd.read_csv(path)
        assert sorted(recs["user_id"].unique()) == evaluated
        for user, group in recs.groupby("user_id"):
            expected = min(50, len(train_items - seen[user]))
            assert group["rank"].tolist() == list(range(1, expected + 1)), (name, user)
            assert not set(group["item_id"]) & seen[user], (name, user)
            assert set(group["item_id"]) <= train_items
            assert (np.diff(group["score"].to_numpy()) <= 0).all()
        assert (recs.groupby("user_id").size() == 50).any()  # both full and short lists occur
        assert (recs.groupby("user_id").size() < 50).any()
        assert (topk_run / name / "model" / "recommender.json").is_file()


def test_topk_metrics_equal_an_independent_evaluation(
    topk_run: Path, files: dict[str, Path]
) -> None:
    data, test = processed(files["train"], files["test"], files["items"], files["users"])
    for name, fields in (("mostpop", {}), ("ease", None), ("bpr", BPR_PARAMS)):
        got = read_json(topk_run / name / "metrics.json")
        if fields is None:  # ease: the lambda chosen on validation
            fields = {"l2": got["tuning"]["chosen"]["l2"]}
        model = fitted(name, data, **fields)
        r = evaluate_topk(model, data.split.train, test, (10, 20), list_length=50, n_boot=N_BOOT)
        assert_same_numbers(got, r.metrics, r.ci)
        assert got["n_users"] == r.n_users == len(r.user_ids)
        assert got["config"] == model.config_dict()
        recs = pd.read_csv(topk_run / name / "recommendations.csv")
        expected = r.recommendations()
        assert recs[["user_id", "item_id", "rank"]].equals(expected[["user_id", "item_id", "rank"]])
        np.testing.assert_array_equal(recs["score"].to_numpy(np.float32), expected["score"])
        assert got["train"]["n_parameters"] == got["n_parameters"] == model.n_parameters()
        assert got["fit_seconds"] >= 0 and got["recommend_seconds"] >= 0
    bpr = read_json(topk_run / "bpr" / "metrics.json")
    assert bpr["config_source"] == "params" and bpr["tuning"] is None
    assert bpr["samples_per_second"] > 0
    assert read_json(topk_run / "mostpop" / "metrics.json")["config_source"] == "defaults"


def test_ease_tuned_on_the_validation_files_only(topk_run: Path, files: dict[str, Path]) -> None:
    got = read_json(topk_run / "ease" / "metrics.json")
    tuning = got["tuning"]
    assert got["config_source"] == "tuned" and tuning["method"] == "tune_ease_lambda"
    assert tuning["files"]["train"]["path"] == str(files["val_train"])
    assert tuning["files"]["test"]["path"] == str(files["val_test"])
    used = json.dumps(tuning)
    assert str(files["test"]) not in used and str(files["train"]) not in used

    val, _ = processed(files["val_train"], files["val_test"], files["items"], files["users"])
    grid = [float(k) for k in tuning["scores"]]

    def evaluate(model: Any, train: pd.DataFrame, heldout: pd.DataFrame, ks: Any) -> Any:
        return evaluate_topk(model, train, heldout, ks, n_boot=1)

    expected = tune_ease_lambda(val, val.split, grid, evaluate)
    assert tuning["chosen"] == {"l2": expected.best_l2}
    assert got["config"]["l2"] == expected.best_l2
    assert tuning["scores"] == {str(k): pytest.approx(v) for k, v in expected.scores.items()}


def test_topk_results_files(topk_run: Path, files: dict[str, Path]) -> None:
    results = read_json(topk_run / "results.json")
    assert results["protocol"] == "topk"
    assert set(results["models"]) == {"mostpop", "ease", "bpr"}
    assert results["split"]["train"]["rows"] == len(read_ratings_file(files["train"]))
    assert len(results["split"]["test"]["sha256"]) == 64
    assert results["split"]["validation"]["train"]["path"] == str(files["val_train"])
    assert {"python", "numpy", "pandas", "recsys"} <= set(results["versions"])
    assert {"cpu", "nproc", "gpus"} <= set(results["hardware"])
    for name, summary in results["models"].items():
        assert summary == read_json(topk_run / name / "metrics.json")
    md = (topk_run / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    for column in ("NDCG@10", "Recall@10", "P@10", "HR@10", "MRR@10", "MAP@10", "NDCG@20",
                   "Recall@20", "coverage@10", "fit s", "recommend s"):  # fmt: skip
        assert f"| {column} |" in header
    for name in ("mostpop", "ease", "bpr"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        ndcg = results["models"][name]["metrics"]["ndcg@10"]
        assert row.split(" | ")[1].startswith(f"{ndcg:.4f} (")  # mean (CI)
    assert "Hardware:" in md and "Versions:" in md


def test_csv_split_files_give_the_same_result(
    files: dict[str, Path], topk_run: Path, tmp_path: Path
) -> None:
    for role in ("train", "test"):
        frame = read_ratings_file(files[role])
        frame.to_csv(tmp_path / f"{role}.csv", index=False)
    out = tmp_path / "out"
    code = benchmark(
        "--train", tmp_path / "train.csv", "--test", tmp_path / "test.csv",
        "--items", files["items"], "--users", files["users"], "--models", "mostpop",
        "--out", out,
    )  # fmt: skip
    assert code == 0
    assert (out / "mostpop" / "recommendations.csv").read_bytes() == (
        topk_run / "mostpop" / "recommendations.csv"
    ).read_bytes()


def test_side_tables_in_every_movielens_layout(
    files: dict[str, Path], topk_run: Path, tmp_path: Path
) -> None:
    """Issue 17: --items took only u.item; movies.dat and movies.csv stopped the run."""
    items = read_ml100k_items(files["items"])
    dat = tmp_path / "ml-1m" / "movies.dat"
    dat.parent.mkdir()
    dat.write_text(
        "".join(f"{i}::{t}::{g}\n" for i, t, g in items[["item_id", "title", "genres"]].values),
        encoding="latin-1",
    )
    csv = tmp_path / "ml-latest" / "movies.csv"
    csv.parent.mkdir()
    items[["item_id", "title", "genres"]].rename(columns={"item_id": "movieId"}).to_csv(
        csv, index=False
    )
    for side, extra in ((dat, ()), (csv, ("--items-format", "ml-csv"))):
        out = tmp_path / f"out-{side.parent.name}"
        code = benchmark(
            "--train", files["train"], "--test", files["test"], "--items", side,
            "--models", "mostpop", "--out", out, *extra,
        )  # fmt: skip
        assert code == 0
        assert (out / "mostpop" / "recommendations.csv").read_bytes() == (
            topk_run / "mostpop" / "recommendations.csv"
        ).read_bytes()


def test_text_ids_come_back_verbatim(files: dict[str, Path], tmp_path: Path) -> None:
    for role in ("train", "test"):
        frame = read_ratings_file(files[role])
        frame["user_id"] = "user-" + frame["user_id"].astype(str).str.zfill(5) + "-x"
        frame["item_id"] = "SKU-" + frame["item_id"].astype(str) + "-B"
        frame.to_csv(tmp_path / f"{role}.csv", index=False)
    out = tmp_path / "out"
    code = benchmark(
        "--train", tmp_path / "train.csv", "--test", tmp_path / "test.csv", "--models",
        "mostpop", "--out", out,
    )  # fmt: skip
    assert code == 0
    recs = pd.read_csv(out / "mostpop" / "recommendations.csv", dtype=str)
    train = pd.read_csv(tmp_path / "train.csv", dtype=str)
    assert recs["user_id"].str.fullmatch(r"user-\d{5}-x").all()
    assert set(recs["item_id"]) <= set(train["item_id"])


# --- loo ----------------------------------------------------------------------------------------
def test_loo(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = benchmark(
        "--protocol", "loo", "--train", files["loo_train"], "--test", files["loo_test"],
        "--negatives", files["negatives"], "--val-train", files["loo_val_train"],
        "--val-test", files["loo_val_test"], "--val-negatives", files["val_negatives"],
        "--models", "mostpop,ease", "--out", out,
    )  # fmt: skip
    assert code == 0
    data, test = processed(files["loo_train"], files["loo_test"])
    negatives = read_ratings_file(files["negatives"])
    for name in ("mostpop", "ease"):
        path = out / name / "scores.csv"
        assert path.read_text().splitlines()[0] == HEADERS["scores.csv"]
        scores = pd.read_csv(path)
        assert (scores.groupby("user_id").size() == 1 + N_NEG).all()
        assert sorted(scores["user_id"].unique()) == sorted(test["user_id"])
        got = read_json(out / name / "metrics.json")
        fields = {} if name == "mostpop" else {"l2": got["tuning"]["chosen"]["l2"]}
        r = evaluate_loo(fitted(name, data, **fields), test, negatives, (10,), n_boot=N_BOOT)
        assert_same_numbers(got, r.metrics, r.ci)
        assert got["n_users"] == N_USERS
        pd.testing.assert_frame_equal(scores, r.scores, check_dtype=False)
    ease = read_json(out / "ease" / "metrics.json")["tuning"]
    assert ease["metric"] == "ndcg@10"
    assert ease["files"]["negatives"]["path"] == str(files["val_negatives"])
    md = (out / "results.md").read_text()
    assert "| model | HR@10 | NDCG@10 | fit s |" in md
    assert "| mostpop |" in md and "| ease |" in md


# --- rating -------------------------------------------------------------------------------------
def test_rating(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = benchmark(
        "--protocol", "rating", "--train", files["train"], "--test", files["test"],
        "--models", "mostpop", "--out", out,
    )  # fmt: skip
    assert code == 0
    path = out / "mostpop" / "predictions.csv"
    assert path.read_text().splitlines()[0] == HEADERS["predictions.csv"]
    predictions = pd.read_csv(path)
    test = read_ratings_file(files["test"])
    assert len(predictions) == len(test)
    assert predictions[["user_id", "item_id"]].equals(test[["user_id", "item_id"]])
    data, _ = processed(files["train"], files["test"])
    train = data.split.train
    clip = (train["rating"].min(), train["rating"].max())
    r = evaluate_rating(fitted("mostpop", data), train, test, clip=clip, n_boot=N_BOOT)
    got = read_json(out / "mostpop" / "metrics.json")
    assert_same_numbers(got, r.metrics, r.ci)
    np.testing.assert_allclose(predictions["prediction"], r.predictions["prediction"])
    assert got["n_rows"] == len(test)
    assert "| model | RMSE | MAE | fit s |" in (out / "results.md").read_text()


def test_rating_cross_validation_over_folds(files: dict[str, Path], tmp_path: Path) -> None:
    folds = files["train"].parent / "folds"
    out = tmp_path / "out"
    code = benchmark(
        "--protocol", "rating", "--data-dir", folds, "--folds", "f1,f2", "--models", "mostpop",
        "--out", out,
    )  # fmt: skip
    assert code == 0
    got = read_json(out / "mostpop" / "metrics.json")
    per_fold = []
    for k in ("f1", "f2"):
        predictions = pd.read_csv(out / "mostpop" / k / "predictions.csv")
        assert len(predictions) == len(read_ratings_file(folds / f"{k}.test"))
        fold = read_json(out / "mostpop" / k / "metrics.json")
        data, test = processed(folds / f"{k}.base", folds / f"{k}.test")
        train = data.split.train
        clip = (train["rating"].min(), train["rating"].max())
        r = evaluate_rating(fitted("mostpop", data), train, test, clip=clip, n_boot=N_BOOT)
        assert fold["metrics"] == pytest.approx(r.metrics)
        per_fold.append(r.metrics["rmse"])
    assert got["metrics"]["rmse"] == pytest.approx(np.mean(per_fold))
    assert got["std"]["rmse"] == pytest.approx(np.std(per_fold))
    assert [f["fold"] for f in got["folds"]] == ["f1", "f2"]
    assert read_json(out / "results.json")["split"]["f2"]["test"]["path"].endswith("f2.test")
    assert "± " in (out / "results.md").read_text()


# --- errors -------------------------------------------------------------------------------------
def test_unknown_model_exits_2_listing_the_valid_names(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = benchmark(
        "--train", files["train"], "--test", files["test"], "--models", "mostpop,nope",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err
    assert all(name in err for name in MODELS)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--protocol", "loo"], "needs the sampled negatives"),
        (["--val-train", "VAL"], "both --val-train and --val-test"),
        (["--folds", "u1"], "--folds replaces --train"),
        (["--params", "MISSING"], "file not found"),
        (["--models", "bpr", "--params", "BADPARAMS"], "unknown key(s) ['nope']"),
        (["--train", "MISSING"], "check --train"),
        (["--test", "BAD.txt"], "--format"),
    ],
)
def test_bad_options_exit_2(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"models": {"bpr": {"nope": 1}}}))
    (tmp_path / "BAD.txt").write_text("1\t1\t1\n")  # 3 fields: rating or count? ask
    names = {
        "VAL": files["val_train"],
        "MISSING": tmp_path / "missing.tsv",
        "BADPARAMS": tmp_path / "bad.yaml",
        "BAD.txt": tmp_path / "BAD.txt",
    }
    options = {"--train": files["train"], "--test": files["test"], "--models": "mostpop"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        options[flag] = names.get(value, value)
    argv = [str(x) for pair in options.items() for x in pair]
    assert benchmark(*argv, "--out", tmp_path / "out") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_benchmark(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code = benchmark(
        "--train", files["train"], "--test", files["test"], "--models", "mostpop",
        "--out", tmp_path,
    )  # fmt: skip
    assert code == 2 and "is not a benchmark output" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_train_and_test_sharing_a_pair_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = read_ratings_file(files["train"]).head(3)
    write_uidata(tmp_path / "test.tsv", list(rows.itertuples(index=False, name=None)))
    code = benchmark(
        "--train", files["train"], "--test", tmp_path / "test.tsv", "--models", "mostpop",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and "repeat a test (user, item) pair" in capsys.readouterr().err


# --- the shared benchmark splits ----------------------------------------------------------------
@pytest.mark.shared
def test_shared_splits_reproduce_reference(bench_splits_dir: Path, tmp_path: Path) -> None:
    u1, loo = bench_splits_dir / "ml100k-u1", bench_splits_dir / "ml100k-loo"
    code = benchmark(
        "--train", u1 / "train.tsv", "--test", u1 / "test.tsv",
        "--val-train", u1 / "val_train.tsv", "--val-test", u1 / "val_test.tsv",
        "--models", "mostpop,ease", "--out", tmp_path / "u1",
    )  # fmt: skip
    assert code == 0
    results = read_json(tmp_path / "u1" / "results.json")
    ndcg = {n: round(m["metrics"]["ndcg@10"], 4) for n, m in results["models"].items()}
    assert ndcg == {"mostpop": 0.3254, "ease": 0.5652}  # REFERENCE.md
    assert results["models"]["ease"]["tuning"]["chosen"] == {"l2": 500.0}  # REFERENCE.md's
    assert results["models"]["ease"]["n_users"] == 459
    assert len(pd.read_csv(tmp_path / "u1" / "ease" / "recommendations.csv")) == 459 * 50

    code = benchmark(
        "--protocol", "loo", "--train", loo / "train.tsv", "--test", loo / "test.tsv",
        "--negatives", loo / "negatives.tsv", "--models", "mostpop", "--out", tmp_path / "loo",
    )  # fmt: skip
    assert code == 0
    got = read_json(tmp_path / "loo" / "mostpop" / "metrics.json")
    assert round(got["metrics"]["hr@10"], 4) == 0.4083
    assert round(got["metrics"]["ndcg@10"], 4) == 0.2292
    assert len(pd.read_csv(tmp_path / "loo" / "mostpop" / "scores.csv")) == 943 * 100


@pytest.mark.shared
def test_side_file_readers_match_the_directory_reader(ml100k_dir: Path) -> None:
    whole = read_movielens(ml100k_dir)
    pd.testing.assert_frame_equal(read_ml100k_items(ml100k_dir / "u.item"), whole.items)
    pd.testing.assert_frame_equal(read_ml100k_users(ml100k_dir / "u.user"), whole.users)
    assert list(INTERACTION_COLUMNS) == list(whole.interactions.columns)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: recsys benchmark")
    assert all(f in out for f in ("recommendations.csv", "scores.csv", "predictions.csv"))
