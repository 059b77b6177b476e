"""The shared training loop: negatives, input pipeline, divergence, resume, early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import train as T
from recsys.errors import ConfigError, DataError
from recsys.models.base import top_k
from recsys.train import (
    ITEM,
    USER,
    DeviceError,
    NegativeSampler,
    PeriodicValidation,
    PointwiseEpochs,
    RankingValidation,
    SampledRankingValidation,
    TrainingError,
    TrainSettings,
    fit_model,
    make_dataset,
    resolve_device,
)

N_USERS, N_ITEMS = 30, 25


def random_seen(seed: int = 0, density: float = 0.4) -> sp.csr_matrix:
    """[30, 25] random interactions plus two corner cases: user 0 has seen all items but one,
    user 1 has seen none."""
    rng = np.random.default_rng(seed)
    dense = rng.random((N_USERS, N_ITEMS)) < density
    dense[0] = True
    dense[0, 7] = False
    dense[1] = False
    return sp.csr_matrix(dense.astype(np.float32))


# --- negative sampling ------------------------------------------------------------------------
def test_sampler_never_returns_a_seen_item() -> None:
    seen = random_seen()
    sampler = NegativeSampler(seen)
    users = np.arange(N_USERS)
    neg = sampler.sample(users, 200, np.random.default_rng(1))
    assert neg.shape == (N_USERS, 200)
    dense = seen.toarray() > 0
    assert not dense[users[:, None], neg].any()
    assert (neg[0] == 7).all()  # the only item user 0 has not seen
    assert sampler.allowed[0] == 1 and sampler.allowed[1] == N_ITEMS


def test_sampler_is_uniform_over_the_allowed_items() -> None:
    seen = random_seen(seed=3)
    sampler = NegativeSampler(seen)
    user = 5
    allowed = np.flatnonzero(seen.toarray()[user] == 0)
    draws = 40_000
    neg = sampler.sample(np.full(draws, user), 1, np.random.default_rng(2)).ravel()
    counts = np.bincount(neg, minlength=N_ITEMS)
    assert counts.sum() == counts[allowed].sum() == draws
    expected = draws / len(allowed)
    chi2 = float(((counts[allowed] - expected) ** 2 / expected).sum())
    # df = len(allowed) - 1 (about 14): the 99.9 % quantile is below 40.
    assert chi2 < 40, chi2


def test_sampler_is_deterministic_per_seed() -> None:
    sampler = NegativeSampler(random_seen())
    users = np.arange(N_USERS)
    a = sampler.sample(users, 8, np.random.default_rng(5))
    b = sampler.sample(users, 8, np.random.default_rng(5))
    c = sampler.sample(users, 8, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampler_respects_the_pool() -> None:
    seen = random_seen(seed=4)
    pool = np.array([2, 3, 5, 7, 11, 13, 17, 19, 23])
    sampler = NegativeSampler(seen, pool=pool)
    users = np.flatnonzero(sampler.allowed > 0)
    neg = sampler.sample(users, 50, np.random.default_rng(0))
    assert np.isin(neg, pool).all()
    assert not (seen.toarray() > 0)[users[:, None], neg].any()
    np.testing.assert_array_equal(sampler.allowed, (seen.toarray()[:, pool] == 0).sum(axis=1))


def test_sampler_refuses_a_user_who_saw_everything() -> None:
    dense = np.zeros((3, 4), dtype=np.float32)
    dense[2] = 1
    sampler = NegativeSampler(sp.csr_matrix(dense))
    with pytest.raises(DataError, match="every candidate item"):
        sampler.sample(np.array([0, 2]), 1, np.random.default_rng(0))


def test_pointwise_epochs_resample_each_epoch_and_repeat_per_epoch() -> None:
    seen = random_seen()
    rows, cols = seen.nonzero()
    epochs = PointwiseEpochs(rows, cols, NegativeSampler(seen), n_negatives=3, seed=9)
    (x0, y0), (x0b, _), (x1, _) = epochs(0), epochs(0), epochs(1)
    has_room = np.count_nonzero(NegativeSampler(seen).allowed[rows] > 0)
    assert len(y0) == len(epochs) == len(rows) + 3 * has_room
    assert y0[: len(rows)].all() and not y0[len(rows) :].any()
    assert x0[USER].dtype == np.int32 and x0[ITEM].dtype == np.int32
    np.testing.assert_array_equal(x0[ITEM], x0b[ITEM])
    assert not np.array_equal(x0[ITEM], x1[ITEM])
    neg_u, neg_i = x0[USER][len(rows) :], x0[ITEM][len(rows) :]
    assert not (seen.toarray() > 0)[neg_u, neg_i].any()


# --- input pipeline ---------------------------------------------------------------------------
def batches(ds: Any) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    if isinstance(ds, keras.utils.PyDataset):
        return [ds[j] for j in range(len(ds))]
    return [
        ({k: np.asarray(v) for k, v in x.items()}, np.asarray(y)) for x, y in ds.as_numpy_iterator()
    ]


def test_tf_data_and_pydataset_yield_the_same_shuffled_batches() -> None:
    x = {USER: np.arange(10, dtype=np.int32), ITEM: np.arange(10, 20, dtype=np.int32)}
    y = np.arange(10, dtype=np.float32)
    tf_b = batches(make_dataset(x, y, batch_size=4, seed=3, pipeline="tf.data"))
    py_b = batches(make_dataset(x, y, batch_size=4, seed=3, pipeline="pydataset"))
    assert [len(b[1]) for b in tf_b] == [4, 4, 2]
    for (xa, ya), (xb, yb) in zip(tf_b, py_b, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa[ITEM], xb[ITEM])
    order = np.concatenate([b[1] for b in tf_b])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    again = batches(make_dataset(x, y, batch_size=4, seed=3))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), order)


# --- devices ----------------------------------------------------------------------------------
def test_gpu_requested_without_a_gpu_raises() -> None:
    # tests/conftest.py hides the GPUs (CUDA_VISIBLE_DEVICES="") unless RECSYS_GPU_TESTS=1.
    if T.visible_gpus():
        pytest.skip("a GPU is visible")
    with pytest.raises(DeviceError, match="no GPU"):
        resolve_device("gpu")
    plan = resolve_device("auto")
    assert (plan.kind, plan.description, plan.mixed_precision) == ("cpu", "cpu", False)
    assert T.describe_device() == "cpu"
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_describe_device_names_the_gpus() -> None:
    assert T.describe_device([]) == "cpu"
    assert T.describe_device(["NVIDIA H100 80GB HBM3"]) == "gpu:NVIDIA H100 80GB HBM3"
    assert T.describe_device(["A", "A"]) == "gpu x2:A"


def test_plan_scope_restores_the_dtype_policy() -> None:
    plan = T.DevicePlan(kind="gpu", description="gpu:fake", mixed_precision=True)
    before = keras.config.dtype_policy().name
    with plan.scope():
        assert keras.config.dtype_policy().name == "mixed_float16"
    assert keras.config.dtype_policy().name == before


# --- the loop on a tiny model -----------------------------------------------------------------
def tiny_model(seed: int = 0, dropout: float = 0.2, lr: float = 0.01) -> keras.Model:
    keras.utils.set_random_seed(seed)
    user = keras.Input(shape=(), dtype="int32", name=USER)
    item = keras.Input(shape=(), dtype="int32", name=ITEM)
    u = keras.layers.Embedding(N_USERS, 4)(user)
    i = keras.layers.Embedding(N_ITEMS, 4)(item)
    h = keras.layers.Dropout(dropout)(keras.layers.Concatenate()([u, i]))
    out = keras.layers.Reshape(())(keras.layers.Dense(1)(h))
    model = keras.Model({USER: user, ITEM: item}, out)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def tiny_epochs(seed: int = 0) -> PointwiseEpochs:
    seen = random_seen()
    rows, cols = seen.nonzero()
    return PointwiseEpochs(rows, cols, NegativeSampler(seen), n_negatives=2, seed=seed)


def weights(model: keras.Model) -> list[np.ndarray]:
    return [T.to_numpy(v) for v in model.variables]


CPU = T.DevicePlan(kind="cpu", description="cpu", hide_gpus=True)  # pinned, also on GPU hosts


class Scripted(PeriodicValidation):
    """A validation metric that follows a script and snapshots the weights it saw."""

    name = "val_score"
    mode = "max"

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.calls = 0
        self.seen_weights: list[list[np.ndarray]] = []

    def evaluate(self) -> float:
        self.seen_weights.append(weights(self.model))
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def test_early_stopping_restores_the_best_epoch() -> None:
    model = tiny_model()
    val = Scripted([0.1, 0.3, 0.2, 0.25, 0.9])
    settings = TrainSettings(epochs=10, batch_size=64, seed=0, patience=2)
    out = fit_model(model, tiny_epochs(), settings, plan=CPU, validation=val)
    assert out["epochs"] == 4 and out["best_epoch"] == 2
    assert out["extra"]["stopped_early"] is True
    assert out["history"]["val_score"] == [0.1, 0.3, 0.2, 0.25]
    assert out["history"]["val_epoch"] == [1.0, 2.0, 3.0, 4.0]
    assert len(out["history"]["loss"]) == 4
    for got, best in zip(weights(model), val.seen_weights[1], strict=True):
        np.testing.assert_array_equal(got, best)
    assert out["device"] == "cpu" and out["samples_per_second"] > 0
    elapsed = out["extra"]["epoch_train_seconds"]  # validation time excluded, cumulative
    assert len(elapsed) == 4 and elapsed == sorted(elapsed) and elapsed[0] > 0
    assert elapsed[-1] == pytest.approx(out["extra"]["train_seconds"], abs=1e-3)


def test_eval_every_validates_periodically_and_after_the_last_epoch() -> None:
    val = Scripted([0.1, 0.2, 0.3])
    settings = TrainSettings(epochs=5, batch_size=64, seed=0, patience=0, eval_every=2)
    out = fit_model(tiny_model(), tiny_epochs(), settings, plan=CPU, validation=val)
    assert out["history"]["val_epoch"] == [2.0, 4.0, 5.0]
    assert out["epochs"] == 5 and out["best_epoch"] == 5


class PoisonedEpochs:
    """Epoch data whose target at row ``row`` is NaN from epoch ``epoch`` on."""

    def __init__(self, epoch: int, row: int) -> None:
        self.inner = tiny_epochs()
        self.epoch, self.row = epoch, row

    def __call__(self, epoch: int) -> T.EpochArrays:
        x, y = self.inner(epoch)
        y = y.copy()
        if epoch >= self.epoch:
            y[self.row] = np.nan
        return x, y


def test_a_nan_loss_stops_training_with_the_epoch_and_batch() -> None:
    settings = TrainSettings(epochs=3, batch_size=16, seed=0, shuffle=False)
    with pytest.raises(TrainingError) as err:
        fit_model(tiny_model(), PoisonedEpochs(epoch=1, row=40), settings, plan=CPU)
    assert "epoch 2, batch 3" in str(err.value)  # row 40 is in the third batch of 16
    assert "learning_rate" in str(err.value)


def test_a_huge_learning_rate_raises_training_error() -> None:
    settings = TrainSettings(epochs=5, batch_size=16, seed=0)
    with pytest.raises(TrainingError, match="lower learning_rate"):
        fit_model(tiny_model(lr=1e30, dropout=0.0), tiny_epochs(), settings, plan=CPU)


class CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    settings = TrainSettings(epochs=5, batch_size=32, seed=4, patience=3)
    full_model = tiny_model(seed=1)
    full = fit_model(
        full_model, tiny_epochs(4), settings, plan=CPU, validation=Scripted([0.2, 0.5, 0.4])
    )

    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit_model(
            tiny_model(seed=1),
            tiny_epochs(4),
            settings,
            plan=CPU,
            validation=Scripted([0.2, 0.5, 0.4]),
            checkpoint_dir=ckpt,
            callbacks=[CrashAt(3)],
        )
    # A new process would build the model afresh (other initial weights: seed 2).
    resumed_model = tiny_model(seed=2)
    resumed = fit_model(
        resumed_model,
        tiny_epochs(4),
        settings,
        plan=CPU,
        validation=Scripted([0.4]),  # the script continues where the crashed run stopped
        checkpoint_dir=ckpt,
    )
    assert resumed["extra"]["resumed_from_epoch"] == 3
    assert len(resumed["extra"]["epoch_train_seconds"]) == 5  # the crashed run's 3 kept
    assert resumed["history"] == full["history"]
    assert (resumed["epochs"], resumed["best_epoch"]) == (full["epochs"], full["best_epoch"])
    for a, b in zip(weights(resumed_model), weights(full_model), strict=True):
        np.testing.assert_array_equal(a, b)

    # A finished run's checkpoint returns at once with the final weights.
    again_model = tiny_model(seed=3)
    again = fit_model(again_model, tiny_epochs(4), settings, plan=CPU, checkpoint_dir=ckpt)
    assert again["history"] == full["history"] and again["extra"]["resumed_from_epoch"] == 5
    for a, b in zip(weights(again_model), weights(full_model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_from_other_settings_is_refused(tmp_path: Path) -> None:
    settings = TrainSettings(epochs=1, batch_size=32, seed=0)
    fit_model(tiny_model(), tiny_epochs(), settings, plan=CPU, checkpoint_dir=tmp_path)
    other = TrainSettings(epochs=1, batch_size=16, seed=0)
    with pytest.raises(TrainingError, match="other settings"):
        fit_model(tiny_model(), tiny_epochs(), other, plan=CPU, checkpoint_dir=tmp_path)


def test_the_pydataset_pipeline_trains_too() -> None:
    settings = TrainSettings(epochs=2, batch_size=32, seed=0, pipeline="pydataset")
    out = fit_model(tiny_model(), tiny_epochs(), settings, plan=CPU)
    assert out["epochs"] == 2 and np.isfinite(out["history"]["loss"]).all()


@pytest.mark.parametrize(
    "field,value", [("epochs", 0), ("batch_size", 0), ("patience", -1), ("eval_every", 0)]
)
def test_settings_reject_bad_values(field: str, value: int) -> None:
    kwargs: dict[str, Any] = {"epochs": 1, "batch_size": 1, "seed": 0, field: value}
    with pytest.raises(ConfigError, match=field):
        TrainSettings(**kwargs)


# --- ranking validation -----------------------------------------------------------------------
def test_ranking_validation_computes_ndcg_excluding_seen_items() -> None:
    # 2 users, 5 items; scores rank items 4 > 3 > 2 > 1 > 0 for everybody.
    seen = sp.csr_matrix(np.array([[0, 0, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    val = pd.DataFrame({"user_idx": [0, 0, 1], "item_idx": [2, 0, 3]})

    def scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.tile(items.astype(np.float32), (len(users), 1))

    v = RankingValidation(scorer, seen, val, np.arange(5), k=2)
    # user 0: item 3 seen -> ranking 4, 2: one hit at rank 2 of 2 relevant.
    # user 1: ranking 4, 3: one hit at rank 2 of 1 relevant.
    d = 1 / np.log2(3)
    expected = np.mean([d / (1 + d), d / 1.0])
    assert v.name == "val_ndcg@2"
    assert v.evaluate() == pytest.approx(expected)


def test_sampled_ranking_validation_follows_the_loo_tie_rule() -> None:
    val = pd.DataFrame({"user_idx": [1, 0], "item_idx": [6, 5]})
    negatives = pd.DataFrame({"user_idx": [0, 0, 0, 1, 1, 1], "item_idx": [1, 2, 3, 1, 2, 3]})
    table = np.zeros(7, dtype=np.float32)
    table[[1, 2, 3, 5, 6]] = [2.0, 0.5, 1.0, 1.0, 3.0]
    v = SampledRankingValidation(lambda u, i: table[i], val, negatives, k=2)
    # user 0: one negative above, one tied -> rank uniform on {1, 2}; user 1: rank 0.
    assert v.name == "val_loo_ndcg@2"
    assert v.evaluate() == pytest.approx((1.0 + 0.5 / np.log2(3)) / 2)
    assert v.hit_rate == pytest.approx((0.5 + 1.0) / 2)


def test_ranking_validation_breaks_ties_like_evaluation() -> None:
    # Issue #16: the loop had its own top-k, which took whichever of the items tied at the
    # k-th score ``argpartition`` happened to pick; evaluation (``recsys.models.base.top_k``)
    # takes the lower item index. Scores with many ties at the cut-off: the held-out item 8 is
    # the lowest-index item with score 0 that fits in the top 18, so the shared rule ranks it
    # 17th; the old rule dropped it for item 14.
    row = np.array([2, 2, 0, 2, 0, 1, 1, 2, 0, 2, 0, 1, 1, 2, 0, 2, 2, 2, 0, 2], dtype=np.float32)
    seen = sp.csr_matrix(np.eye(1, 21, 20, dtype=np.float32))  # one seen item, not a candidate
    val = pd.DataFrame({"user_idx": [0], "item_idx": [8]})
    v = RankingValidation(lambda u, i: np.tile(row[i], (len(u), 1)), seen, val, np.arange(20), k=18)
    ranked = top_k(row[None, :], 18)[0]
    assert ranked[16] == 8
    assert v.evaluate() == pytest.approx(1 / np.log2(18))
