"""NeuMF: learns a planted structure, fast scoring equals Keras, save/load, resume, errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.errors import ConfigError
from recsys.models import ncf
from recsys.models.base import Recommender
from recsys.models.layers import GMF, EmbeddingBag, FeatureTower, MLPTower, dense_stack_numpy
from recsys.models.ncf import MODEL_FILE, NeuMF, NeuMFConfig
from recsys.models.registry import model_class
from recsys.schema import EXPLICIT, IMPLICIT, Dataset
from recsys.train import DeviceError, PointwiseEpochs, RankingValidation, TrainingError
from tests.conftest import REPO
from tests.recsys.test_models_contract import RecommenderContract

N_USERS, N_ITEMS = 60, 40
FAST = {"epochs": 12, "batch_size": 64, "learning_rate": 0.01, "patience": 0, "seed": 3}


def planted(
    seed: int = 0,
    *,
    feedback: str = IMPLICIT,
    share: float = 0.6,
    val: float = 0.1,
    method: str = "random_holdout",
) -> Processed:
    """Users and items in two groups: users interact only with items of their own group
    (``share`` of them, at random), rating them 5 (implicit: 1); with explicit feedback they
    also rate ``share / 2`` of the other group's items, 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        for i in range(N_ITEMS):
            own = u % 2 == i % 2
            if own and rng.random() < share:
                rows.append((u + 1, i + 1, 5.0 if feedback == EXPLICIT else 1.0))
            elif not own and feedback == EXPLICIT and rng.random() < share / 2:
                rows.append((u + 1, i + 1, 1.0))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    df["timestamp"] = np.arange(len(df), dtype=np.int64) + 1_000_000
    ds = Dataset(df, name="planted", feedback=feedback)
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        split=SplitConfig(
            method=method,  # type: ignore[arg-type]
            test_fraction=0.2,
            val_fraction=val,
            n_negatives=20,
            seed=seed,
        ),
    )
    return preprocess(ds, cfg)


@pytest.fixture(scope="module")
def data() -> Processed:
    return planted()


@pytest.fixture(scope="module")
def trained(data: Processed) -> NeuMF:
    model = NeuMF(**FAST)
    model.fit(data)
    return model


def tol(model: NeuMF) -> float:
    """Agreement with ``model.predict``: float32 round-off, or float16 compute on a GPU."""
    result = model.train_result
    mixed = result is not None and result.extra["device_plan"]["mixed_precision"]
    return 1e-2 if mixed else 1e-5


def own_group_share(model: NeuMF, k: int = 5) -> float:
    users = model.vocab.user_ids if model.vocab is not None else np.array([])
    ids, _ = model.recommend(users, k=k)
    return float(((ids % 2) == (users[:, None] % 2)).mean())


def test_learns_the_planted_structure(trained: NeuMF, data: Processed) -> None:
    # Unseen items are about 8 own-group against 20 other-group ones: random gives ~0.3.
    assert own_group_share(trained) >= 0.9
    seen = trained._seen_matrix()
    items = np.flatnonzero(trained._train_mask())
    ndcg = RankingValidation(trained._scores, seen, data.split.test, items).evaluate()
    rng = np.random.default_rng(0)
    random_ndcg = RankingValidation(
        lambda u, i: rng.random((len(u), len(i))), seen, data.split.test, items
    ).evaluate()
    assert ndcg > random_ndcg + 0.15, (ndcg, random_ndcg)


def test_train_result_records_the_run(trained: NeuMF) -> None:
    result = trained.train_result
    assert result is not None
    assert result.model == "neumf" and result.device == "cpu" and result.seed == 3
    assert result.epochs == 12 and result.n_parameters == trained.keras_model.count_params()
    assert len(result.history["loss"]) == 12 and len(result.history["val_ndcg@10"]) == 12
    assert result.best_epoch == 1 + int(np.argmax(result.history["val_ndcg@10"]))
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.samples_per_second and result.samples_per_second > 0
    assert result.extra["loss"] == "bce"


def test_fast_scores_equal_keras_predict(trained: NeuMF) -> None:
    users = np.arange(trained._vocab().n_users)
    items = np.arange(trained._vocab().n_items)
    fast = trained._scores(users, items)
    assert fast.shape == (len(users), len(items)) and fast.dtype == np.float32
    uu, ii = np.repeat(users, len(items)), np.tile(items, len(users))
    slow = trained._predict_pairs(uu, ii).reshape(fast.shape)
    np.testing.assert_allclose(fast, slow, rtol=tol(trained), atol=tol(trained))
    np.testing.assert_allclose(
        trained._pair_scores(uu, ii), slow.ravel(), rtol=tol(trained), atol=tol(trained)
    )
    # A block of users against a subset of items, in any order, matches too (to BLAS
    # round-off, which depends on the block's shape).
    sub_u, sub_i = np.array([5, 1, 7]), np.array([9, 0, 3, 3])
    np.testing.assert_allclose(trained._scores(sub_u, sub_i), fast[sub_u][:, sub_i], rtol=1e-6)


def test_compiled_block_scorer_equals_keras_predict(
    trained: NeuMF, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full rankings of real catalogues take the compiled path; force it on the tiny one.
    monkeypatch.setattr(ncf, "COMPILED_MIN_PAIRS", 1)
    users = np.arange(trained._vocab().n_users)  # 60: two user blocks, the last one padded
    items = np.arange(trained._vocab().n_items)[::-1]
    fast = trained._scores(users, items)
    uu, ii = np.repeat(users, len(items)), np.tile(items, len(users))
    slow = trained._predict_pairs(uu, ii).reshape(fast.shape)
    np.testing.assert_allclose(fast, slow, rtol=tol(trained), atol=tol(trained))


def test_save_load_gives_identical_scores(trained: NeuMF, tmp_path: Path) -> None:
    trained.save(tmp_path / "neumf")
    assert (tmp_path / "neumf" / MODEL_FILE).is_file()
    assert not list((tmp_path / "neumf").rglob("*.pkl"))
    loaded = Recommender.load(tmp_path / "neumf")
    assert isinstance(loaded, NeuMF) and loaded.config == trained.config
    users = np.arange(trained._vocab().n_users)
    items = np.arange(trained._vocab().n_items)
    np.testing.assert_array_equal(loaded._scores(users, items), trained._scores(users, items))
    a_ids, a_scores = trained.recommend(trained._vocab().user_ids, k=5)
    b_ids, b_scores = loaded.recommend(loaded._vocab().user_ids, k=5)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_scores, b_scores)
    emb = loaded.item_embeddings()
    assert emb is not None and emb.shape == (len(items), trained.config.embedding_dim)
    assert loaded.device() == "cpu" and loaded.n_parameters() == trained.n_parameters()


def test_resume_after_a_crash_equals_an_uninterrupted_fit(
    data: Processed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = {**FAST, "epochs": 4, "dropout": 0.2}
    full = NeuMF(**cfg)
    full.fit(data)

    original = PointwiseEpochs.__call__
    crashed = {"done": False}

    def crash_at_epoch_2(self: PointwiseEpochs, epoch: int) -> tuple[dict, np.ndarray]:
        if epoch == 2 and not crashed["done"]:
            crashed["done"] = True
            raise KeyboardInterrupt("simulated crash")
        return original(self, epoch)

    monkeypatch.setattr(PointwiseEpochs, "__call__", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        NeuMF(**cfg).fit(data, checkpoint_dir=tmp_path)
    resumed = NeuMF(**cfg)
    result = resumed.fit(data, checkpoint_dir=tmp_path)
    assert result.extra["resumed_from_epoch"] == 2
    assert full.train_result is not None and result.history == full.train_result.history
    users, items = np.arange(N_USERS), np.arange(N_ITEMS)
    np.testing.assert_array_equal(resumed._scores(users, items), full._scores(users, items))


def test_a_huge_learning_rate_raises_training_error(data: Processed) -> None:
    model = NeuMF(**{**FAST, "learning_rate": 1e30, "epochs": 3})
    with pytest.raises(TrainingError, match="learning_rate"):
        model.fit(data)


def test_gpu_requested_without_a_gpu_raises(data: Processed) -> None:
    from recsys.train import visible_gpus

    if visible_gpus():
        pytest.skip("a GPU is visible")
    with pytest.raises(DeviceError):
        NeuMF(**{**FAST, "device": "gpu"}).fit(data)


def test_mse_predicts_explicit_ratings() -> None:
    data = planted(1, feedback=EXPLICIT, share=0.8)
    model = NeuMF(**{**FAST, "loss": "mse", "epochs": 15})
    result = model.fit(data)
    assert result.extra["loss"] == "mse" and "val_rmse" in result.history
    test = data.split.test
    pred = model.score(test["user_id"].to_numpy(), test["item_id"].to_numpy())
    rmse = float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))
    baseline = float(test["rating"].std(ddof=0))  # predicting the mean
    assert rmse < 0.5 * baseline, (rmse, baseline)


def test_mse_on_implicit_data_is_a_config_error(data: Processed) -> None:
    with pytest.raises(ConfigError, match="explicit"):
        NeuMF(loss="mse").fit(data)


def test_explicit_data_with_auto_loss_trains_for_top_k() -> None:
    data = planted(2, feedback=EXPLICIT)
    model = NeuMF(**{**FAST, "epochs": 2})
    assert model.fit(data).extra["loss"] == "bce"


def test_a_leave_one_out_split_stops_on_the_loo_metric() -> None:
    data = planted(4, method="leave_one_out")
    assert data.split.val_negatives is not None
    result = NeuMF(**{**FAST, "epochs": 6}).fit(data)
    curve = result.history["val_loo_ndcg@10"]
    assert len(curve) == 6 and result.extra["monitor"] == "val_loo_ndcg@10"
    # Random scores give about 0.22 among 20 negatives; about a third of the negatives are
    # unseen items of the user's own group, which the structure cannot tell apart.
    assert max(curve) > 0.3


def test_config_is_strict_and_round_trips() -> None:
    model = NeuMF(embedding_dim=8, mlp_units=[16, 8])
    assert model.config.mlp_units == (16, 8) and model.config.mlp_embedding_dim == 8
    again = NeuMF(**model.config_dict())
    assert again.config == model.config
    assert NeuMF(NeuMFConfig(epochs=2)).config.epochs == 2
    with pytest.raises(ConfigError, match="unknown"):
        NeuMF(embeding_dim=8)
    for bad in ({"dropout": 1.0}, {"mlp_units": ()}, {"n_negatives": 0}, {"loss": "hinge"}):
        with pytest.raises(ConfigError):
            NeuMF(**bad)
    assert model_class("neumf") is NeuMF


def test_fit_without_validation_keeps_the_last_epoch() -> None:
    data = planted(3, val=0.0)
    assert data.split.val.empty
    model = NeuMF(**{**FAST, "epochs": 3})
    result = model.fit(data)
    assert result.epochs == 3 and result.best_epoch is None
    assert set(result.history) == {"loss"}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_runs_under_the_jax_backend(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # the JAX machines may have no TensorFlow at all
        import numpy as np
        import keras
        assert keras.backend.backend() == "jax"
        from tests.recsys.test_ncf import FAST, planted
        from recsys.models.base import Recommender
        from recsys.models.ncf import NeuMF
        data = planted()
        model = NeuMF(**{**FAST, "epochs": 3})
        result = model.fit(data)
        users, items = np.arange(10), np.arange(40)
        fast = model._scores(users, items)
        slow = model._predict_pairs(np.repeat(users, 40), np.tile(items, 10)).reshape(10, 40)
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
        model.save(sys.argv[1])
        again = Recommender.load(sys.argv[1])
        np.testing.assert_array_equal(again._scores(users, items), fast)
        print("ok", result.device, result.epochs)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok cpu 3" in proc.stdout


def test_config_dataclass_is_frozen() -> None:
    cfg = NeuMFConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


# --- layers -----------------------------------------------------------------------------------
def test_embedding_bag_is_the_mean_over_non_padding_tokens() -> None:
    bag = EmbeddingBag(6, 3, name="bag")
    tokens = np.array([[2, 3, 0, 0], [0, 0, 0, 0], [5, 5, 1, 0]], dtype=np.int32)
    out = keras.ops.convert_to_numpy(bag(tokens))
    table = keras.ops.convert_to_numpy(bag.embedding.embeddings)
    np.testing.assert_allclose(out[0], table[[2, 3]].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros(3, dtype=np.float32))
    np.testing.assert_allclose(out[2], table[[5, 5, 1]].mean(axis=0), rtol=1e-6)
    assert EmbeddingBag.from_config(bag.get_config()).get_config() == bag.get_config()


def test_mlp_tower_numpy_replay_and_config() -> None:
    tower = MLPTower([8, 4], dropout=0.5, final_activation=False, name="t")
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    keras_out = keras.ops.convert_to_numpy(tower(x, training=False))
    np_out = dense_stack_numpy(x, tower.numpy_weights(), tower.activations())
    np.testing.assert_allclose(np_out, keras_out, rtol=1e-5, atol=1e-6)
    assert tower.activations() == ["relu", "linear"]
    cfg = tower.get_config()
    assert cfg["units"] == [8, 4] and cfg["dropout"] == 0.5
    assert MLPTower.from_config(cfg).get_config() == cfg
    with pytest.raises(ValueError):
        MLPTower([])


def test_gmf_and_feature_tower() -> None:
    a = np.array([[1.0, 2.0]], dtype=np.float32)
    b = np.array([[3.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(GMF()([a, b])), [[3.0, -2.0]])
    tower = FeatureTower([4, 3], normalize=True)
    out = keras.ops.convert_to_numpy(tower([a, b]))
    assert out.shape == (1, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert FeatureTower.from_config(tower.get_config()).get_config() == tower.get_config()


class TestNeuMF(RecommenderContract):
    """The contract every ``Recommender`` honours (tests/recsys/test_models_contract.py)."""

    def make_model(self) -> Recommender:
        return NeuMF(NeuMFConfig(epochs=15, batch_size=64, learning_rate=0.003, seed=0))
