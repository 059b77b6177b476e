"""CPU training is deterministic (issue #16, part 5): two fits of one model family with the same
seed on the same data give identical weights and scores, and saving them gives the same bytes,
so that rerunning the pipeline on the same data leaves the DVC hashes in dvc.lock unchanged.

What differs between two fits is the time they took (``TrainResult.timings()``): a saved model
keeps none of it. tests/recsys/test_pipeline.py checks the same for the pipeline's stages.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from recsys.data.preprocess import Processed
from recsys.models.base import META_FILE, Recommender
from recsys.models.keras_base import MODEL_FILE, SAVE_DATE, ZIP_EPOCH, save_keras_model
from recsys.models.registry import model_class
from recsys.timings import split_timings
from recsys.train import to_numpy
from tests.recsys.test_models_contract import synthetic_data

TOWERS: dict[str, Any] = {
    "embedding_dim": 8,
    "token_dim": 4,
    "item_hidden_units": [16],
    "user_hidden_units": [16],
    "epochs": 2,
    "batch_size": 64,
    "seed": 5,
}
FAMILIES: dict[str, dict[str, Any]] = {
    "neumf": {"epochs": 2, "batch_size": 64, "seed": 5},
    "twotower": {**TOWERS, "id_dim": 4},
    "content": {**TOWERS, "head_units": [8]},
    "hybrid": {**TOWERS, "head_units": [8], "id_dim": 4, "tower_id_dim": 4, "id_dropout": 0.3},
    "autorec": {"hidden_units": 16, "epochs": 3, "batch_size": 16, "seed": 5},
    "bpr": {"factors": 8, "epochs": 3, "batch_size": 256, "seed": 5},
}
"""Every model family that trains from a random start, with settings small enough for a unit
test (a few seconds each on 2 CPU cores)."""


def fit_and_save(family: str, data: Processed, path: Path) -> Recommender:
    model = model_class(family)(**FAMILIES[family])
    model.fit(data)
    model.save(path)
    return model


def files(root: Path) -> dict[str, bytes]:
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_gives_identical_weights_scores_and_files(family: str, tmp_path: Path) -> None:
    data = synthetic_data()
    a = fit_and_save(family, data, tmp_path / "a")
    b = fit_and_save(family, data, tmp_path / "b")

    keras_a = getattr(a, "_model", None)
    if isinstance(keras_a, keras.Model):
        keras_b = b._model  # type: ignore[attr-defined]
        weights_a = [to_numpy(v) for v in keras_a.weights]
        weights_b = [to_numpy(v) for v in keras_b.weights]
        assert len(weights_a) == len(weights_b) > 0
        for wa, wb in zip(weights_a, weights_b, strict=True):
            np.testing.assert_array_equal(wa, wb)
    users = data.vocab.user_ids[:50]
    ids_a, scores_a = a.recommend(users, k=10)
    ids_b, scores_b = b.recommend(users, k=10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)

    files_a, files_b = files(tmp_path / "a"), files(tmp_path / "b")
    assert files_a.keys() == files_b.keys()
    differ = sorted(name for name in files_a if files_a[name] != files_b[name])
    assert not differ, f"{family}: {differ} differ between two fits"
    assert a.train_result is not None and a.train_result.timings()  # measured, not saved
    saved = json.loads(files_a["recommender.json"])["train_result"]
    assert not split_timings(saved)[1], f"{family}: timings in recommender.json"


def test_a_model_saved_with_timings_still_loads(tmp_path: Path) -> None:
    """A ``recommender.json`` written before timings left saved models: they load, kept."""
    data = synthetic_data()
    model = fit_and_save("bpr", data, tmp_path / "model")
    meta_file = tmp_path / "model" / META_FILE
    meta = json.loads(meta_file.read_text())
    assert "fit_seconds" not in meta["train_result"]
    assert model.train_result is not None
    old = dataclasses.asdict(model.train_result)  # what an earlier version saved
    meta_file.write_text(json.dumps(meta | {"train_result": old}))
    loaded = Recommender.load(tmp_path / "model")
    assert loaded.train_result == model.train_result
    meta_file.write_text(json.dumps(meta))
    again = Recommender.load(tmp_path / "model")
    assert again.train_result is not None and again.train_result.fit_seconds is None
    assert again.train_result.facts() == model.train_result.facts()


def test_saved_keras_file_has_no_save_time(tmp_path: Path) -> None:
    """``save_keras_model`` writes fixed dates where Keras writes the time (metadata.json's
    ``date_saved``, the zip entries' dates), and the file loads as a normal ``.keras`` file."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    for name in ("a", "b"):  # a second save of the same model
        (tmp_path / name).mkdir()
        save_keras_model(model, tmp_path / name / MODEL_FILE)
    first = (tmp_path / "a" / MODEL_FILE).read_bytes()
    assert first == (tmp_path / "b" / MODEL_FILE).read_bytes()
    with zipfile.ZipFile(tmp_path / "a" / MODEL_FILE) as zf:
        assert {info.date_time for info in zf.infolist()} == {ZIP_EPOCH}
        assert json.loads(zf.read("metadata.json"))["date_saved"] == SAVE_DATE
        assert set(zf.namelist()) >= {"metadata.json", "config.json", "model.weights.h5"}
    loaded = keras.saving.load_model(tmp_path / "a" / MODEL_FILE)
    x = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
