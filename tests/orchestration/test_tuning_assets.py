"""The ``tuned_settings`` asset's metadata (issue 17, part 3): each candidate's best value,
settings and source from a real ``recsys tune`` output, and the optimisation-history chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestration.defs.tuning_assets import history_chart, read_histories, tuning_metadata
from recsys.benchmark import SplitFiles, load_split
from recsys.data import io
from recsys.tuning.run import skip_report, tune_models
from recsys.tuning.study import TuneSettings


def _val_files(root: Path) -> SplitFiles:
    rng = np.random.default_rng(1)
    train, test = [], []
    for user in range(30):
        liked = rng.permutation(np.arange(8) + 8 * (user % 3))[:6]
        test.append((user, int(liked[0])))
        train += [(user, int(i)) for i in liked[1:]]
    paths = []
    for name, rows in (("val_train", train), ("val_test", test)):
        frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
        frame.to_csv(root / f"{name}.csv", index=False)
        paths.append(root / f"{name}.csv")
    return SplitFiles(paths[0], paths[1])


def test_metadata_and_history_chart_of_a_tuning_run(tmp_path: Path) -> None:
    val = load_split(_val_files(tmp_path), prefix="val-")
    out = tmp_path / "tuning"
    out.mkdir()
    settings = TuneSettings(trials=3, storage=f"sqlite:///{out / 'study.db'}")
    report = tune_models(["itemknn", "mostpop"], {}, val, "topk", settings, out)
    meta = tuning_metadata(io.read_json(out / "tuning.json"))
    study = report.models["itemknn"]
    assert meta["itemknn: settings from"] == "tuned"
    assert meta["itemknn: best validation ndcg@10"] == study.best_value
    assert meta["itemknn: params.yaml validation ndcg@10"] == study.baseline_value
    assert meta["itemknn: settings"].data == study.settings
    assert meta["mostpop: settings from"] == "no search space"
    histories = read_histories(out / "trials.csv")
    assert histories == {"itemknn": [t.value for t in study.trials]}
    assert history_chart(histories, "ndcg@10").startswith(b"\x89PNG")


def test_metadata_when_tuning_is_off(tmp_path: Path) -> None:
    val = load_split(_val_files(tmp_path), prefix="val-")
    skip_report(["ease"], {"ease": {"l2": 5.0}}, val, "topk", "tuning.enabled is false", tmp_path)
    meta = tuning_metadata(io.read_json(tmp_path / "tuning.json"))
    assert meta["tuned"] is False
    assert meta["ease: settings from"] == "tuning.enabled is false"
    assert meta["ease: settings"].data == {"l2": 5.0}
    assert read_histories(tmp_path / "trials.csv") == {}
