"""The ml100k-u1 split files rewritten as a play-count log: ``user_id<TAB>item_id<TAB>plays``.

Issue 17's third benchmark data set: the same users, items and train/test/validation rows as
``ml100k-u1`` (PROTOCOL.md), each rating read as a play count (1..5 plays), no timestamp and no
side tables. The files are derived from MovieLens, so they go to a git-ignored directory
(``reports/``), never into the repository.

    .venv/bin/python bench/playcount_from_ml100k.py SPLIT_DIR OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

FILES = ("train", "test", "val_train", "val_test")


def convert(split_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write ``OUT_DIR/<name>.tsv`` for each file of the split; rows per file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in FILES:
        frame = pd.read_csv(
            split_dir / f"{name}.tsv",
            sep="\t",
            header=None,
            names=["user_id", "item_id", "plays", "timestamp"],
        )
        frame = frame[["user_id", "item_id", "plays"]].astype("int64")
        frame.to_csv(out_dir / f"{name}.tsv", sep="\t", index=False)
        rows[name] = len(frame)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split_dir", type=Path, help="e.g. ../shared/benchmarks/splits/ml100k-u1")
    parser.add_argument("out_dir", type=Path, help="e.g. reports/benchmarks/ml100k-playcount-files")
    args = parser.parse_args()
    print(convert(args.split_dir, args.out_dir))


if __name__ == "__main__":
    main()
