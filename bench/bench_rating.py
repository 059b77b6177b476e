"""PROTOCOL.md Protocol 3 (rating prediction): 5-fold CV over the official ML-100K folds.

For each fold k in 1..5, ``u{k}.base`` / ``u{k}.test`` are preprocessed with a predefined split
(``test_pairs`` = the test file, no validation, no k-core), a fresh AutoRec is fitted on the base
file, and ``evaluate_rating`` scores every test row (the global training mean for users or items
absent from the base file, as PROTOCOL.md requires). A plain biased matrix factorisation fitted
by alternating least squares (``BiasedMF`` below, numpy, not a registered model) runs on the same
folds for comparison. Prints per-fold and mean RMSE/MAE with fit seconds and the hardware.

    .venv/bin/python bench/bench_rating.py [--folds 1,2,3,4,5] [--autorec '{"epochs": 80}']
        [--no-mf] [--out results.json]

Target (REFERENCE.md): mean RMSE <= 0.919, Surprise SVD++'s published 5-fold figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import scipy.sparse as sp
from hardware import hardware

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import ITEM_IDX, USER_IDX, InteractionSplit, Processed, preprocess
from recsys.data.sources import read_movielens, read_ratings_file
from recsys.evaluation.evaluate import evaluate_rating
from recsys.models.base import Recommender
from recsys.schema import RATING, Dataset

DEFAULT_ML100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-100k"
SURPRISE = {"svd": 0.934, "svdpp": 0.919}
"""Surprise's published 5-fold RMSE on ML-100K (REFERENCE.md)."""


def load_fold(
    directory: Path, k: int, *, val_fraction: float = 0.0, seed: int = 20261128
) -> Processed:
    """Fold ``k``: train = ``u{k}.base`` (minus a per-user random ``val_fraction`` held out as
    ``split.val``), test = ``u{k}.test``; items and users tables from the data set."""
    full = read_movielens(directory)
    base = read_ratings_file(directory / f"u{k}.base")
    test = read_ratings_file(directory / f"u{k}.test")
    dataset = Dataset(
        pd.concat([base, test], ignore_index=True),
        items=full.items,
        users=full.users,
        name=f"ml-100k-u{k}",
    )
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(method="predefined", val_fraction=val_fraction, seed=seed),
    )
    data = preprocess(dataset, cfg, test_pairs=test)
    split = data.split
    if len(split.train) + len(split.val) != len(base) or len(split.test) != len(test):
        raise RuntimeError(f"fold u{k}: split sizes differ from the files")
    return data


# --- the biased-MF baseline ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BiasedMFConfig:
    factors: int = 10
    l2: float = 0.1
    """ALS-WR: each user's (item's) ridge penalty is l2 times its number of ratings.
    factors and l2 were picked on the u1.base validation tenth (``tune_autorec.py --model
    biased_mf``): l2 in {0.03, 0.06, 0.1, 0.2} x factors in {10, 30}."""
    iterations: int = 15
    seed: int = 0


class BiasedMF(Recommender):
    """``r^_ui = mu + b_u + b_i + p_u . q_i`` by alternating least squares (Zhou et al. 2008,
    weighted-lambda), predictions clipped to the training ratings' range. Bench-only."""

    name: ClassVar[str] = "biased_mf"

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.config = BiasedMFConfig(**fields)
        self.params: tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.range = (1.0, 5.0)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def _fit(self, data: Processed, split: InteractionSplit) -> dict[str, Any]:
        cfg = self.config
        train = split.train
        u = train[USER_IDX].to_numpy()
        i = train[ITEM_IDX].to_numpy()
        r = train[RATING].to_numpy(dtype=np.float64)
        n_u, n_i = data.vocab.n_users, data.vocab.n_items
        mu = float(r.mean())
        self.range = (float(r.min()), float(r.max()))
        rng = np.random.default_rng(cfg.seed)
        p = rng.normal(0, 0.1, (n_u, cfg.factors))
        q = rng.normal(0, 0.1, (n_i, cfg.factors))
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        # Stored values are rating positions + 1 (an explicit 0 could be dropped).
        pos = np.arange(1, len(r) + 1)
        by_user = sp.csr_matrix((pos, (u, i)), shape=(n_u, n_i))
        by_item = sp.csr_matrix((pos, (i, u)), shape=(n_i, n_u))
        for _ in range(cfg.iterations):
            _als_side(by_user, r - mu - bi[i], q, p, bu, cfg.l2)
            _als_side(by_item, r - mu - bu[u], p, q, bi, cfg.l2)
        self.params = (mu, bu, bi, p, q)
        return {"epochs": cfg.iterations}

    def _scores(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        assert self.params is not None
        mu, bu, bi, p, q = self.params
        out = mu + bu[user_idx, None] + bi[None, item_idx] + p[user_idx] @ q[item_idx].T
        return np.clip(out, *self.range).astype(np.float32)

    def _save(self, path: Path) -> None:
        raise NotImplementedError("bench-only model")

    def _load(self, path: Path) -> None:
        raise NotImplementedError("bench-only model")


def _als_side(
    rows: sp.csr_matrix,
    target: np.ndarray,
    fixed: np.ndarray,
    solve: np.ndarray,
    bias: np.ndarray,
    l2: float,
) -> None:
    """Solve ``[bias_j, solve_j]`` of every row j in place: ridge regression of ``target`` on
    ``[1, fixed]`` over the row's ratings (``rows.data`` holds rating positions + 1)."""
    k = fixed.shape[1]
    for j in range(rows.shape[0]):
        lo, hi = rows.indptr[j], rows.indptr[j + 1]
        if lo == hi:
            continue
        x = np.hstack([np.ones((hi - lo, 1)), fixed[rows.indices[lo:hi]]])
        a = x.T @ x + l2 * (hi - lo) * np.eye(k + 1)
        sol = np.linalg.solve(a, x.T @ target[rows.data[lo:hi] - 1])
        bias[j], solve[j] = sol[0], sol[1:]


# --- the benchmark -------------------------------------------------------------------------------
def run_fold(model: Recommender, data: Processed) -> dict[str, Any]:
    result = model.fit(data)
    split = data.split
    ev = evaluate_rating(model, split.train, split.test, n_boot=200)
    return {
        "rmse": ev.metrics["rmse"],
        "mae": ev.metrics["mae"],
        "fit_s": result.fit_seconds,
        "score_s": ev.score_seconds,
        "epochs": result.epochs,
        "n_fallback": ev.n_fallback,
        "device": result.device,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ML100K)
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--autorec", default="{}", help="JSON: AutoRec config fields")
    parser.add_argument("--mf", default="{}", help="JSON: BiasedMF config fields")
    parser.add_argument("--no-mf", action="store_true", help="skip the biased-MF baseline")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    from recsys.models.autorec import AutoRec  # imports TensorFlow

    folds = [int(k) for k in args.folds.split(",")]
    systems: dict[str, Any] = {"autorec": lambda: AutoRec(**json.loads(args.autorec))}
    if not args.no_mf:
        systems["biased_mf"] = lambda: BiasedMF(**json.loads(args.mf))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for k in folds:
        data = load_fold(args.data, k)
        for name, make in systems.items():
            row = {"fold": f"u{k}", **run_fold(make(), data)}
            results[name].append(row)
            print(json.dumps({"system": name, **row}), flush=True)

    hw = hardware()
    print(
        f"\nhardware: {hw['cpu']}, {hw['nproc']} cores; python {hw['python']}; "
        f"tensorflow {hw.get('tensorflow')}, keras {hw.get('keras')}, numpy {hw.get('numpy')}"
    )
    print(f"autorec config: {json.dumps(AutoRec(**json.loads(args.autorec)).config_dict())}")
    print("\n| system | fold | RMSE | MAE | fit s | epochs | fallback rows |")
    print("|---|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name, rows in results.items():
        for row in rows:
            print(
                f"| {name} | {row['fold']} | {row['rmse']:.4f} | {row['mae']:.4f} | "
                f"{row['fit_s']:.1f} | {row['epochs']} | {row['n_fallback']} |"
            )
        mean = {m: float(np.mean([r[m] for r in rows])) for m in ("rmse", "mae", "fit_s")}
        summary[name] = mean
        print(
            f"| **{name}** | mean of {len(rows)} | **{mean['rmse']:.4f}** | "
            f"**{mean['mae']:.4f}** | {mean['fit_s']:.1f} | | |"
        )
    print(f"\nSurprise published 5-fold RMSE: SVD {SURPRISE['svd']}, SVD++ {SURPRISE['svdpp']}")
    if args.out:
        args.out.write_text(
            json.dumps({"hardware": hw, "results": results, "mean": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
