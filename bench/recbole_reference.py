"""RecBole 1.2.1 reference runs on the shared ``ml100k-u1`` split, timed on this machine.

Driven by ``bench/recbole_reference.sh`` (which builds ``.venv-recbole``); two subcommands, each
run by its own interpreter:

``train`` (in ``.venv-recbole``: torch + recbole, no ``recsys``), per model:

1. *validation stage*: RecBole benchmark files ``[val_train, val_test, val_test]`` (RecBole's
   ``benchmark_filename``: its train/valid/test are exactly our files, no filtering, no
   re-splitting). RecBole's own ``Trainer.fit`` with the model's default hyperparameters, full
   ranking, early stopping on the validation NDCG@10 (RecBole's default ``stopping_step`` 10 and
   ``epochs`` 300). Every epoch's training seconds, validation NDCG@10 (RecBole's computation) and
   wall-clock seconds since the fit began go to the timeline; the best epoch is RecBole's (the last
   epoch reaching the maximum, as its ``early_stopping`` uses ``>=``).
2. *refit stage*: benchmark files ``[train, val_test, test]`` (``val_test`` is a subset of train:
   never used for fitting, it only has to exist), a fresh model trained for the best epoch count
   with no validation: its wall-clock is the ``fit s`` comparable with REFERENCE.md. Then the top 50
   of every test user, ranked over the items of train with the user's train items excluded
   (PROTOCOL.md), are written to ``<model>/recommendations.csv`` in original ids; RecBole's own
   test metrics (its candidate set: every item it knows) are kept for comparison.

``score`` (in the project's ``.venv``): scores each ``recommendations.csv`` with
``recsys.evaluation.metrics`` exactly as ``recsys benchmark`` does, adds the hardware and writes
``results.json``.

    .venv-recbole/bin/python bench/recbole_reference.py train --out DIR [--quick]
    .venv/bin/python bench/recbole_reference.py score --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

SPLIT = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "splits" / "ml100k-u1"
MODELS = ("NeuMF", "LightGCN", "BPR")
LIST_LENGTH = 50
KS = (10, 20)
SEED = 2020  # RecBole's default seed
FIELDS = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")


def read_uidata(path: Path) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            u, i, r, t = line.split("\t")
            rows.append((u, i, r, t))
    return rows


def write_atomic(rows: list[tuple[str, str, str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\t".join(FIELDS) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    path.write_text(text)


def write_dataset(work: Path, name: str, files: dict[str, Path]) -> None:
    """RecBole atomic files ``work/name/name.<suffix>.inter`` for ``benchmark_filename``."""
    for suffix, source in files.items():
        write_atomic(read_uidata(source), work / name / f"{name}.{suffix}.inter")


# --- train (runs in .venv-recbole) ------------------------------------------------------------
def recbole_config(model: str, dataset: str, work: Path, epochs: int | None) -> Any:
    from recbole.config import Config

    overrides: dict[str, Any] = {
        "data_path": str(work),
        "checkpoint_dir": str(work / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "use_gpu": False,
        "show_progress": False,
        "seed": SEED,
        "reproducibility": True,
        "state": "WARNING",
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["NDCG", "Recall", "Precision", "Hit", "MRR", "MAP"],
        "topk": list(KS),
        # RecBole's default is MRR@10; PROTOCOL.md tunes on NDCG@10.
        "valid_metric": "NDCG@10",
    }
    if epochs is not None:
        overrides["epochs"] = epochs
    return Config(model=model, dataset=dataset, config_dict=overrides)


class Clock:
    """Per-epoch training seconds, validation timeline and rows fed to the loss."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.train_seconds: list[float] = []
        self.valid_seconds: list[float] = []
        self.timeline: list[dict[str, Any]] = []
        self.rows = 0


def instrument(trainer: Any, model: Any, clock: Clock) -> None:
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch
    loss = model.calculate_loss

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        clock.train_seconds.append(time.perf_counter() - t)
        return out

    def timed_valid(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        score, result = valid_epoch(*args, **kwargs)
        now = time.perf_counter()
        clock.valid_seconds.append(now - t)
        clock.timeline.append(
            {
                "epoch": len(clock.train_seconds),
                "val_ndcg@10": round(float(score), 4),
                "train_seconds_cum": round(sum(clock.train_seconds), 3),
                "elapsed_seconds": round(now - clock.start, 3),
            }
        )
        point = clock.timeline[-1]
        print(
            f"  epoch {point['epoch']}: val NDCG@10 {point['val_ndcg@10']}, "
            f"{point['elapsed_seconds']} s",
            flush=True,
        )
        return score, result

    def counted_loss(interaction: Any) -> Any:
        clock.rows += len(interaction)
        return loss(interaction)

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    model.calculate_loss = counted_loss


def fit(model_name: str, dataset: str, work: Path, epochs: int | None, validate: bool) -> dict:
    """One RecBole fit; returns the model, data, trainer and the timing facts."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = recbole_config(model_name, dataset, work, epochs)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clock = Clock()
    instrument(trainer, model, clock)
    load = os.getloadavg()
    clock.start = time.perf_counter()
    trainer.fit(train_data, valid_data if validate else None, saved=False, verbose=False)
    wall = time.perf_counter() - clock.start
    n_epochs = len(clock.train_seconds)
    train_s = sum(clock.train_seconds)
    positives = len(train_data._dataset)
    facts = {
        "epochs": n_epochs,
        "fit_seconds": round(wall, 3),
        "train_seconds": round(train_s, 3),
        "eval_seconds": round(sum(clock.valid_seconds), 3),
        "seconds_per_epoch": round(train_s / max(n_epochs, 1), 4),
        "train_interactions": positives,
        "rows_per_epoch": clock.rows // max(n_epochs, 1),
        "interactions_per_second": round(positives * n_epochs / max(train_s, 1e-9), 1),
        "rows_per_second": round(clock.rows / max(train_s, 1e-9), 1),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if validate:
        best = max(p["val_ndcg@10"] for p in clock.timeline) if clock.timeline else None
        best_epoch = max(
            (p["epoch"] for p in clock.timeline if p["val_ndcg@10"] == best), default=n_epochs
        )
        facts.update(best_epoch=best_epoch, best_val_ndcg10=best, timeline=clock.timeline)
    params = {
        k: config[k]
        for k in (
            "epochs",
            "train_batch_size",
            "learner",
            "learning_rate",
            "weight_decay",
            "train_neg_sample_args",
            "stopping_step",
            "eval_step",
            "valid_metric",
            "embedding_size",
            "n_layers",
            "reg_weight",
            "mf_embedding_size",
            "mlp_embedding_size",
            "mlp_hidden_size",
            "dropout_prob",
        )
        if k in config
    }
    return {
        "facts": facts,
        "params": params,
        "model": model,
        "dataset": data,
        "trainer": trainer,
        "test_data": test_data,
    }


def top_items(run: dict, train_path: Path, test_path: Path) -> tuple[list, Any, Any]:
    """Top ``LIST_LENGTH`` internal item ids and scores per test user, PROTOCOL.md candidates."""
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    model, data = run["model"], run["dataset"]
    uid, iid = data.uid_field, data.iid_field
    train = read_uidata(train_path)
    users = sorted({r[0] for r in read_uidata(test_path)} & {r[0] for r in train}, key=int)
    user_ids = data.token2id(uid, users)
    n_items = data.item_num
    candidate = np.zeros(n_items, dtype=bool)
    candidate[data.token2id(iid, sorted({r[1] for r in train}))] = True
    seen = np.zeros((len(users), n_items), dtype=bool)
    row = {u: k for k, u in enumerate(users)}
    for u, i, _, _ in train:
        if u in row:
            seen[row[u], data.token2id(iid, i)] = True
    model.eval()
    with torch.no_grad():
        inter = Interaction({uid: torch.as_tensor(user_ids, dtype=torch.long)})
        try:
            scores = model.full_sort_predict(inter).reshape(len(users), n_items).numpy()
        except NotImplementedError:  # NeuMF: score every (user, item) pair
            items = torch.arange(n_items, dtype=torch.long)
            scores = np.stack(
                [
                    model.predict(
                        Interaction(
                            {uid: torch.full((n_items,), int(u), dtype=torch.long), iid: items}
                        )
                    ).numpy()
                    for u in user_ids
                ]
            )
    scores = np.where(candidate[None, :] & ~seen, scores.astype(np.float64), -np.inf)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :LIST_LENGTH]
    return users, top, np.take_along_axis(scores, top, axis=1)


def write_recommendations(path: Path, data: Any, users: list, top: Any, scores: Any) -> None:
    tokens = data.id2token(data.iid_field, top)
    lines = ["user_id,item_id,rank,score"]
    for u, items, vals in zip(users, tokens, scores, strict=True):
        for rank, (item, s) in enumerate(zip(items, vals, strict=True), start=1):
            if s > -float("inf"):
                lines.append(f"{u},{item},{rank},{float(s):.6g}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def run_model(name: str, args: argparse.Namespace, work: Path, out: Path) -> dict[str, Any]:
    cap = 2 if args.quick else args.epochs
    val: dict[str, Any] = {"params": None, "facts": None}
    if name.lower() in args.refit_epochs:
        best_epoch = args.refit_epochs[name.lower()]
        print(f"[{name}] validation stage skipped: {best_epoch} epochs given (--refit-epochs)")
    else:
        print(f"[{name}] validation stage (val_train -> val_test, max epochs {cap or 'default'})")
        val = fit(name, "u1val", work, cap, validate=True)
        best_epoch = val["facts"]["best_epoch"]
        print(
            f"[{name}] best epoch {best_epoch} of {val['facts']['epochs']}, "
            f"val NDCG@10 {val['facts']['best_val_ndcg10']}, {val['facts']['fit_seconds']} s"
        )
    print(f"[{name}] refit on train for {best_epoch} epochs")
    final = fit(name, "u1", work, best_epoch, validate=False)
    t = time.perf_counter()
    users, top, scores = top_items(final, args.split / "train.tsv", args.split / "test.tsv")
    recommend_s = time.perf_counter() - t
    recs = out / name.lower() / "recommendations.csv"
    write_recommendations(recs, final["dataset"], users, top, scores)
    own = final["trainer"].evaluate(final["test_data"], load_best_model=False)
    print(f"[{name}] refit {final['facts']['fit_seconds']} s; RecBole's test metrics {dict(own)}")
    return {
        "model": name,
        "params": val["params"] or final["params"],
        "validation_stage": val["facts"],
        "refit": {**final["facts"], "recommend_seconds": round(recommend_s, 3)},
        "recbole_test_metrics": {k: round(float(v), 4) for k, v in own.items()},
        "n_users_ranked": len(users),
    }


def cmd_train(args: argparse.Namespace) -> None:
    import importlib.metadata as md

    import torch

    # RecBole's Config reads sys.argv for ``--key=value`` overrides: give it none; and silence
    # the pandas/torch FutureWarnings that RecBole 1.2.1 triggers on every run.
    sys.argv = sys.argv[:1]
    warnings.filterwarnings("ignore", category=FutureWarning)
    out: Path = args.out
    work = out / "work"
    write_dataset(
        work,
        "u1val",
        {
            "train": args.split / "val_train.tsv",
            "valid": args.split / "val_test.tsv",
            "test": args.split / "val_test.tsv",
        },
    )
    write_dataset(
        work,
        "u1",
        {
            "train": args.split / "train.tsv",
            "valid": args.split / "val_test.tsv",
            "test": args.split / "test.tsv",
        },
    )
    os.chdir(work)  # RecBole writes log/ and log_tensorboard/ into the working directory
    versions = {}
    for lib in ("recbole", "torch", "numpy", "scipy", "pandas", "scikit-learn"):
        versions[lib] = md.version(lib)
    runs = [run_model(m, args, work, out) for m in args.models]
    result = {
        "quick": args.quick,
        "split": str(args.split),
        "torch_threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
        "python": platform.python_version(),
        "libraries": versions,
        "models": runs,
    }
    (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")


# --- score (runs in the project's .venv) ------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hardware import hardware

    from recsys.evaluation import metrics as M

    out: Path = args.out
    result = json.loads((out / "train.json").read_text())
    cols = ["user_id", "item_id", "rating", "timestamp"]
    train = pd.read_csv(args.split / "train.tsv", sep="\t", names=cols)
    test = pd.read_csv(args.split / "test.tsv", sep="\t", names=cols)
    users = np.intersect1d(test["user_id"].unique(), train["user_id"].unique())
    n_items = train["item_id"].nunique()
    rows = np.searchsorted(users, test["user_id"].to_numpy())
    ok = (rows < len(users)) & (users[np.minimum(rows, len(users) - 1)] == test["user_id"])
    relevant = M.Relevance.from_pairs(rows[ok], test["item_id"].to_numpy()[ok], len(users))
    for run in result["models"]:
        recs = pd.read_csv(out / run["model"].lower() / "recommendations.csv")
        ranked = np.full((len(users), LIST_LENGTH), M.PAD, dtype=np.int64)
        r = np.searchsorted(users, recs["user_id"].to_numpy())
        ranked[r, recs["rank"].to_numpy() - 1] = recs["item_id"].to_numpy()
        per_user = M.topk_metrics(ranked, relevant, KS)
        metrics = {k: round(float(v.mean()), 4) for k, v in per_user.items()}
        for k in KS:
            metrics[f"coverage@{k}"] = round(M.coverage_at_k(ranked, k, n_items), 4)
        run["metrics"] = metrics
        run["n_users_evaluated"] = len(users)
    result["hardware"] = hardware()
    result["uptime"] = args.uptime
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'model':10} {'NDCG@10':>8} {'RecBole':>8} {'fit s':>8} {'s/epoch':>8} {'inter/s':>9}")
    for run in result["models"]:
        f = run["refit"]
        print(
            f"{run['model']:10} {run['metrics']['ndcg@10']:8.4f} "
            f"{run['recbole_test_metrics'].get('ndcg@10', float('nan')):8.4f} "
            f"{f['fit_seconds']:8.2f} {f['seconds_per_epoch']:8.3f} "
            f"{f['interactions_per_second']:9.0f}"
        )


def refit_epochs(text: str) -> dict[str, int]:
    """``neumf=30,lightgcn=145`` -> ``{"neumf": 30, "lightgcn": 145}``."""
    out = {}
    for part in filter(None, text.split(",")):
        name, _, epochs = part.partition("=")
        if not epochs.isdigit() or int(epochs) < 1:
            raise argparse.ArgumentTypeError(f"expected MODEL=EPOCHS, got {part!r}")
        out[name.strip().lower()] = int(epochs)
    return out


def model_names(text: str) -> list[str]:
    known = {m.lower(): m for m in MODELS}
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {bad}; choose from {list(known)}")
    return [known[m] for m in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "score"):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--split", type=Path, default=SPLIT)
    train = sub.choices["train"]
    train.add_argument("--quick", action="store_true", help="at most 2 epochs per model")
    train.add_argument("--epochs", type=int, default=None, help="cap RecBole's max epochs")
    train.add_argument("--models", type=model_names, default=MODELS, help="e.g. neumf,lightgcn")
    train.add_argument(
        "--refit-epochs",
        type=refit_epochs,
        default={},
        help="e.g. neumf=30,lightgcn=145: skip the validation stage of these models and refit "
        "for the epochs a previous full run chose (its train.json: validation_stage.best_epoch)",
    )
    sub.choices["score"].add_argument("--uptime", default="")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.split = args.split.resolve()
    {"train": cmd_train, "score": cmd_score}[args.command](args)


if __name__ == "__main__":
    main()
