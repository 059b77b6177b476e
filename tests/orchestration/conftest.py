"""A tiny DVC project for the Dagster tests: the repository's dvc.yaml and code, a small
synthetic interaction log as a CSV under data/raw, and params that train two fast models."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.params import complete_params

BIN = Path(sys.executable).parent
RAW_FILE = Path("data") / "raw" / "interactions.csv"
TINY_PARAMS = complete_params(
    {
        "data": {
            "source": "csv",
            "path": str(RAW_FILE),
            "csv": {"implicit": False, "rating_scale": [1.0, 5.0]},
        },
        "validation": {"min_interactions_per_user": 5},
        "preprocess": {"min_user_interactions": 3, "min_item_interactions": 2},
        # Classic models only: no TensorFlow start-up in these tests (the deep ones have their own);
        # BPR-MF has user and item vectors, so it retrieves for the served rankings.
        "models": {"mostpop": {}, "ease": {"l2": 50.0}, "bpr": {"epochs": 2}},
        "gate": {
            "primary_metric": "ndcg@10",
            "min_metrics": {"ndcg@10": 0.0},
            "min_gain": 0.002,
            "max_latency_p99_ms": 1000.0,
        },
        # M above the tiny catalogue: the served ranking is the full one, whatever BPR (two
        # epochs) retrieves; the two-stage budget: tests/recsys/test_promotion.py, test_gate.py.
        "serving": {"retriever": "bpr", "rerank_top": 1000},
    }
)
"""Every section the strict loader wants: the repository's params.yaml with these changes."""


def write_raw_log(path: Path, n_interactions: int = 3000, seed: int = 1) -> None:
    from recsys.config import SyntheticConfig
    from recsys.data import synthetic

    data = synthetic.generate(SyntheticConfig(n_interactions=n_interactions, seed=seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    data.interactions.to_csv(path, index=False)


def make_project(root: Path) -> Path:
    """A DVC project at ``root`` running this repository's stages on tiny data."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "recsys", root / "recsys", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS, sort_keys=False))
    write_raw_log(root / RAW_FILE)
    subprocess.run(
        [str(BIN / "dvc"), "init", "--no-scm", "--quiet"], cwd=root, check=True, timeout=120
    )
    return root


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """BentoML's model store in a temporary directory (never ~/bentoml)."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    yield tmp_path
