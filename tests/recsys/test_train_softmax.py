"""The loop's softmax groups: the loss, grouped epochs, group-whole shuffling, NeuMF trained
with them (issue 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from recsys.errors import ConfigError
from recsys.models.base import Recommender
from recsys.models.ncf import NeuMF
from recsys.train import (
    ITEM,
    USER,
    NegativeSampler,
    PointwiseEpochs,
    TrainSettings,
    make_dataset,
)
from recsys.training.losses import GroupSoftmaxCrossEntropy
from tests.recsys.test_ncf import FAST, own_group_share, planted
from tests.recsys.test_train import batches, random_seen


def test_group_softmax_is_the_cross_entropy_of_each_groups_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    target = np.zeros((5, 4), dtype=np.float32)
    target[:, 0] = 1.0
    target[4] = [0.0, 1.0, 1.0, 0.0]  # two positives share the target mass
    loss = GroupSoftmaxCrossEntropy(4)
    per_group = keras.ops.convert_to_numpy(loss.call(target.ravel(), logits.ravel()))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(target / target.sum(axis=1, keepdims=True) * log_p).sum(axis=1)
    np.testing.assert_allclose(per_group, expected, rtol=1e-5)
    assert float(loss(target.ravel(), logits.ravel())) == pytest.approx(expected.mean(), 1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, GroupSoftmaxCrossEntropy) and again.group == 4
    with pytest.raises(ConfigError, match="at least 2"):
        GroupSoftmaxCrossEntropy(1)


def test_grouped_epochs_put_each_positive_before_its_own_negatives() -> None:
    seen = random_seen()
    rows, cols = seen.nonzero()
    sampler = NegativeSampler(seen)
    epochs = PointwiseEpochs(rows, cols, sampler, n_negatives=3, seed=9, grouped=True)
    x, y = epochs(0)
    room = sampler.allowed[rows] > 0
    assert epochs.group == 4 and len(y) == len(epochs) == 4 * room.sum()
    users, items, labels = (a.reshape(-1, 4) for a in (x[USER], x[ITEM], y))
    assert (users == users[:, :1]).all()  # one user per group
    np.testing.assert_array_equal(users[:, 0], rows[room])
    np.testing.assert_array_equal(items[:, 0], cols[room])
    assert (labels[:, 0] == 1).all() and not labels[:, 1:].any()
    assert not (seen.toarray() > 0)[users[:, 1:], items[:, 1:]].any()
    ungrouped = PointwiseEpochs(rows, cols, sampler, n_negatives=3, seed=9)
    assert ungrouped.group == 1  # the same draws, laid out per kind
    np.testing.assert_array_equal(
        np.sort(ungrouped(0)[0][ITEM][len(rows) :]), np.sort(items[:, 1:].ravel())
    )


@pytest.mark.parametrize("pipeline", ["tf.data", "pydataset"])
def test_grouped_batches_shuffle_whole_groups(pipeline: Any) -> None:
    group = 3
    ids = np.repeat(np.arange(10, dtype=np.int32), group)  # group g: three rows of id g
    x = {USER: ids, ITEM: np.arange(30, dtype=np.int32)}
    y = np.tile(np.array([1, 0, 0], dtype=np.float32), 10)
    out = batches(make_dataset(x, y, batch_size=4, seed=3, pipeline=pipeline, group=group))
    assert [len(b[1]) for b in out] == [12, 12, 6]  # batch_size groups per batch
    users = np.concatenate([b[0][USER] for b in out]).reshape(-1, group)
    items = np.concatenate([b[0][ITEM] for b in out]).reshape(-1, group)
    assert (users == users[:, :1]).all() and sorted(users[:, 0]) == list(range(10))
    assert users[:, 0].tolist() != list(range(10))  # shuffled
    np.testing.assert_array_equal(items, users[:, :1] * group + np.arange(group))
    with pytest.raises(ConfigError, match="groups of 4"):
        make_dataset(x, y, batch_size=4, seed=3, group=4)
    with pytest.raises(ConfigError, match="group"):
        TrainSettings(epochs=1, batch_size=1, seed=0, group=0)


def test_group_one_keeps_the_checkpoint_fingerprint() -> None:
    # Checkpoints written before groups existed still resume.
    plain = TrainSettings(epochs=2, batch_size=8, seed=1)
    assert "group" not in plain.fingerprint()
    assert TrainSettings(epochs=2, batch_size=8, seed=1, group=5).fingerprint()["group"] == 5


def test_neumf_with_the_softmax_loss_learns_and_round_trips(tmp_path: Path) -> None:
    data = planted()
    model = NeuMF(**{**FAST, "loss": "softmax", "n_negatives": 8, "batch_size": 16})
    model.fit(data)
    result = model.train_result
    assert result is not None and result.extra["loss"] == "softmax"
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert own_group_share(model) >= 0.9
    users, items = np.arange(5), np.arange(10)
    fast = model._scores(users, items)
    slow = model._predict_pairs(np.repeat(users, 10), np.tile(items, 5)).reshape(fast.shape)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded._scores(users, items), fast)


def test_a_cosine_schedule_ends_the_run_at_a_zero_learning_rate() -> None:
    data = planted()
    rates = {}
    for schedule in ("constant", "cosine"):
        model = NeuMF(**{**FAST, "epochs": 3, "lr_schedule": schedule})
        model.fit(data)
        optimizer = model.keras_model.optimizer
        steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
        assert steps > 3  # several batches per epoch, so the schedule spans every step
        rates[schedule] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    assert rates["constant"] == pytest.approx(FAST["learning_rate"])
    assert rates["cosine"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="lr_schedule"):
        NeuMF(lr_schedule="linear")
