"""A synthetic play-count log shaped like a public users x artists x play-counts data set.

Issue 17's slow run was on such a log (about 1.9k users, 17.6k items, 92k interactions, no item
content, integer play counts with a heavy tail): the item count, not the interaction count, is
what makes an item-item model slow. This module generates a log of that shape with numpy (no
download) and writes benchmark split files in the ``u.data`` format of
``../shared/benchmarks/PROTOCOL.md`` (``user item count 0``), so that ``recsys benchmark`` and
the cost scripts read it like ml100k-u1:

- item popularity is a power law over 18.5k artists (exponent 0.6): a few hits, a long
  tail of items played by one user (17.6k distinct items end up in the log);
- each user draws ~49 distinct items from a mixture of 24 taste clusters and the popularity
  (users x clusters and items x clusters: a structure that collaborative models can learn);
- each interaction's count is ``ceil(lognormal(4.5, 1.6))``: median ~90 plays, max ~10^5;
- test: a per-user random 1/5 of each user's items; validation: a per-user random 1/8 of train
  (as ml100k-u1's ``val_*.tsv``).

    .venv/bin/python bench/playcount_log.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

N_USERS = 1_900
N_ITEMS = 18_500
ITEMS_PER_USER = 49
N_CLUSTERS = 24


def playcount_log(seed: int = 0) -> pd.DataFrame:
    """[~92k, 4] ``user_id, item_id, rating, timestamp`` with ``rating`` the play count."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.6
    popularity = popularity[rng.permutation(N_ITEMS)]
    item_cluster = rng.integers(0, N_CLUSTERS, N_ITEMS)
    taste = rng.dirichlet(np.full(N_CLUSTERS, 0.15), N_USERS)  # [users, clusters], peaked
    users, items = [], []
    for u in range(N_USERS):
        n = int(np.clip(rng.poisson(ITEMS_PER_USER), 5, 200))
        p = popularity * (0.05 + taste[u, item_cluster])
        chosen = rng.choice(N_ITEMS, size=n, replace=False, p=p / p.sum())
        users.append(np.full(n, u + 1))
        items.append(chosen + 1)
    user = np.concatenate(users)
    counts = np.ceil(rng.lognormal(4.5, 1.6, len(user))).astype(np.int64)
    return pd.DataFrame(
        {
            "user_id": user,
            "item_id": np.concatenate(items),
            "rating": counts,
            "timestamp": np.zeros(len(user), dtype=np.int64),
        }
    )


def holdout(log: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out): a per-user random ``fraction`` of each user's rows (at least one kept)."""
    rng = np.random.default_rng(seed)
    key = rng.random(len(log))
    rank = pd.Series(key).groupby(log["user_id"].to_numpy()).rank(method="first").to_numpy()
    size = log.groupby("user_id")["user_id"].transform("size").to_numpy()
    out = rank <= np.floor(size * fraction)
    return log[~out].reset_index(drop=True), log[out].reset_index(drop=True)


def write_splits(out: Path, seed: int = 0) -> dict[str, int]:
    """Write ``train.tsv, test.tsv, val_train.tsv, val_test.tsv`` and ``split.json`` to ``out``."""
    log = playcount_log(seed)
    train, test = holdout(log, 1 / 5, seed + 1)
    val_train, val_test = holdout(train, 1 / 8, seed + 2)
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": train, "test": test, "val_train": val_train, "val_test": val_test}
    for name, frame in files.items():
        frame.to_csv(out / f"{name}.tsv", sep="\t", header=False, index=False)
    facts = {
        "n_users": int(log["user_id"].nunique()),
        "n_items": int(log["item_id"].nunique()),
        "n_interactions": len(log),
        "n_items_train": int(train["item_id"].nunique()),
        "max_count": int(log["rating"].max()),
        "median_count": int(log["rating"].median()),
        **{f"rows_{k}": len(v) for k, v in files.items()},
    }
    (out / "split.json").write_text(json.dumps({"seed": seed, **facts}, indent=1) + "\n")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(write_splits(args.out, args.seed), indent=1))


if __name__ == "__main__":
    main()
