"""Issue 19 §1: a trained model updated with new interactions, without a full retrain.

The old data set lacks the newest interactions, ten users and five items (and their side-table
rows); the new one has everything, preprocessed with the old one's feature vocabularies. A
Keras model is warm-started (weights moved to the grown vocabulary by raw id, new rows at the
mean), a fold-in model folds the new users in, and a model that cannot take a new item is
refitted, each saying which it did.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest

from recsys.config import PreprocessConfig, SplitConfig
from recsys.data.preprocess import Processed, preprocess
from recsys.data.preprocess.features import OOV_ID, build_features
from recsys.data.synthetic import SyntheticConfig, generate
from recsys.errors import ConfigError
from recsys.models.baselines import EASE
from recsys.models.keras_base import KerasRecommender
from recsys.models.ncf import NeuMF, build_neumf
from recsys.models.twotower import TwoTower
from recsys.models.update import (
    RowMaps,
    UpdateSettings,
    transfer_weights,
    unseen_rows,
    update_model,
)
from recsys.schema import ITEM_ID, TIMESTAMP, USER_ID, Dataset
from recsys.train import to_numpy

CFG = PreprocessConfig(
    min_user_interactions=1,
    min_item_interactions=1,
    split=SplitConfig(method="random_holdout", test_fraction=0.2, val_fraction=0.0, seed=1),
)
NEW_USERS, NEW_ITEMS = 10, 5


@functools.cache
def old_and_new() -> tuple[Processed, Processed]:
    ds = generate(SyntheticConfig(n_interactions=4000, seed=3))
    inter = ds.interactions.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    users = np.sort(inter[USER_ID].unique())[-NEW_USERS:]
    items = np.sort(inter[ITEM_ID].unique())[-NEW_ITEMS:]
    early = inter.iloc[: int(len(inter) * 0.8)]
    early = early[~early[USER_ID].isin(users) & ~early[ITEM_ID].isin(items)]
    assert ds.users is not None and ds.items is not None
    old_ds = dataclasses.replace(
        ds,
        interactions=early.reset_index(drop=True),
        users=ds.users[~ds.users[USER_ID].isin(users)],
        items=ds.items[~ds.items[ITEM_ID].isin(items)],
    )
    old = preprocess(old_ds, CFG)
    return old, preprocess(ds, CFG, features_like=old.features)


def embeddings(model: NeuMF, layer: str) -> np.ndarray:
    return to_numpy(model.keras_model.get_layer(layer).embeddings)


def test_weights_move_to_the_grown_vocabulary_by_raw_id() -> None:
    old, new = old_and_new()
    champion = NeuMF(epochs=1, embedding_dim=8, mlp_units=(8, 4))
    champion.fit(old)
    target = build_neumf(new.vocab.n_users, new.vocab.n_items, champion.config)
    transfer_weights(champion.keras_model, target, RowMaps.between(old.vocab, new.vocab))
    before, after = (
        embeddings(champion, "gmf_user"),
        to_numpy(target.get_layer("gmf_user").embeddings),
    )
    known = old.vocab.user_ids
    np.testing.assert_array_equal(after[new.vocab.encode_users(known)], before)
    fresh = old.vocab.encode_users(new.vocab.user_ids) < 0
    assert fresh.sum() == NEW_USERS
    np.testing.assert_allclose(
        after[fresh], np.broadcast_to(before.mean(0), (NEW_USERS, 8)), rtol=1e-6
    )
    items_before = embeddings(champion, "mlp_item")
    items_after = to_numpy(target.get_layer("mlp_item").embeddings)
    np.testing.assert_array_equal(
        items_after[new.vocab.encode_items(old.vocab.item_ids)], items_before
    )
    # the layers that are not indexed by user or item are copied as they are
    np.testing.assert_array_equal(
        to_numpy(target.get_layer("prediction").kernel),
        to_numpy(champion.keras_model.get_layer("prediction").kernel),
    )


def test_a_different_architecture_is_refused() -> None:
    old, new = old_and_new()
    champion = NeuMF(epochs=1, embedding_dim=8, mlp_units=(8, 4))
    champion.fit(old)
    wider = build_neumf(
        new.vocab.n_users, new.vocab.n_items, dataclasses.replace(champion.config, embedding_dim=16)
    )
    with pytest.raises(ConfigError, match="cannot warm-start"):
        transfer_weights(champion.keras_model, wider, RowMaps.between(old.vocab, new.vocab))


def test_the_batch_is_what_the_champion_never_trained_on() -> None:
    old, new = old_and_new()
    champion = EASE(l2=10.0)
    champion.fit(old)
    fresh = unseen_rows(champion, new.split.train)
    pairs = set(zip(old.split.train[USER_ID], old.split.train[ITEM_ID], strict=True))
    expected = [
        (u, i) not in pairs
        for u, i in zip(new.split.train[USER_ID], new.split.train[ITEM_ID], strict=True)
    ]
    np.testing.assert_array_equal(fresh, expected)
    assert 0 < fresh.sum() < len(fresh)


@pytest.mark.parametrize("kind", [NeuMF, TwoTower], ids=["neumf", "twotower"])
def test_a_warm_start_knows_the_new_users_and_items(kind: type) -> None:
    old, new = old_and_new()
    champion = kind(epochs=2, seed=0)
    champion.fit(old)
    weights = [to_numpy(v).copy() for v in champion.keras_model.trainable_variables]
    updated = update_model(champion, new, UpdateSettings(epochs=1, replay=1.0))
    assert updated.method == "warm_start"
    assert (updated.new_users, updated.new_items) == (NEW_USERS, NEW_ITEMS)
    assert updated.batch_rows == int(unseen_rows(champion, new.split.train).sum())
    assert updated.replay_rows == min(updated.batch_rows, len(new.split.train) - updated.batch_rows)
    model = updated.model
    assert isinstance(model, kind) and isinstance(model, KerasRecommender)
    newcomers = new.vocab.user_ids[old.vocab.encode_users(new.vocab.user_ids) < 0]
    new_items = new.vocab.item_ids[old.vocab.encode_items(new.vocab.item_ids) < 0]
    assert model.known_users(newcomers).all() and model.known_items(new_items).all()
    ranked, scores = model.recommend(newcomers, k=10)
    assert np.isfinite(scores).all()
    # a new item that has training rows is in the catalogue the model ranks
    trained_new = np.intersect1d(new_items, new.split.train[ITEM_ID].unique())
    assert len(trained_new) and np.isin(trained_new, model.train_item_ids).all()
    # its history is every training row, not only what it trained on: none recommended again
    for user, row in zip(newcomers, ranked, strict=True):
        assert not np.isin(row, model.seen_items(user)).any()
    assert len(model.seen_items(newcomers[0])) == (new.split.train[USER_ID] == newcomers[0]).sum()
    # training moved the weights; the champion is untouched
    assert any(
        not np.array_equal(a, to_numpy(b))
        for a, b in zip(weights, model.keras_model.trainable_variables, strict=False)
        if a.shape == tuple(b.shape)
    )
    for a, b in zip(weights, champion.keras_model.trainable_variables, strict=True):
        np.testing.assert_array_equal(a, to_numpy(b))


def test_ease_folds_new_users_in_and_refits_for_new_items() -> None:
    old, new = old_and_new()
    champion = EASE(l2=10.0)
    champion.fit(old)
    # a batch of known items only: new users fold in, the item weights stay
    known_items_only = dataclasses.replace(
        new,
        split=dataclasses.replace(
            new.split,
            train=new.split.train[new.split.train[ITEM_ID].isin(old.vocab.item_ids)],
        ),
    )
    folded = update_model(champion, known_items_only, UpdateSettings())
    assert folded.method == "fold_in"
    assert folded.model.known_users(new.vocab.user_ids).all()
    np.testing.assert_array_equal(folded.model.weights, champion.weights)  # type: ignore[attr-defined]
    assert not champion.known_users(new.vocab.user_ids).all()  # the champion is untouched
    refit = update_model(champion, new, UpdateSettings())
    assert refit.method == "refit" and "never seen" in refit.reason
    assert refit.model.known_items(new.vocab.item_ids).all()


def test_features_keep_the_champions_vocabularies() -> None:
    old, new = old_and_new()
    assert new.features.tokens == old.features.tokens
    assert new.features.genre_names == old.features.genre_names
    assert new.features.user_feature_names == old.features.user_feature_names
    rows = new.vocab.encode_items(old.vocab.item_ids)
    np.testing.assert_array_equal(new.features.item_tokens[rows], old.features.item_tokens)
    # a word no old title had is out of vocabulary, not a new token id
    items = generate(SyntheticConfig(n_interactions=4000, seed=3)).items
    assert items is not None
    renamed = items.assign(title=items["title"] + " zzzunseenword")
    features = build_features(new.vocab, renamed, None, CFG, like=old.features)
    assert features.tokens == old.features.tokens
    assert (features.item_tokens == OOV_ID).any()


def test_accepted_batches_join_the_source_in_name_order(tmp_path: Path) -> None:
    from recsys.config import DataConfig
    from recsys.data import sources
    from recsys.data.sources.batches import batch_files, write_batch

    cfg = DataConfig(synthetic=SyntheticConfig(n_interactions=1000, seed=2))
    base = sources.read_source(cfg)
    assert base.items is not None
    rows = base.interactions.iloc[:3].assign(user_id=[900001, 900002, 900001])
    new_item = base.items.iloc[:1].assign(item_id=990001, title="A New One (2020)")
    second = rows.iloc[:1].assign(item_id=990001, timestamp=rows["timestamp"].iloc[0] + 1)
    write_batch(Dataset(second, new_item, None), tmp_path / "b", "2-second")
    write_batch(Dataset(rows, None, None), tmp_path / "b", "1-first")
    assert [p.name for p in batch_files(tmp_path / "b")] == ["1-first.parquet", "2-second.parquet"]
    merged = sources.load_source(dataclasses.replace(cfg, batches=str(tmp_path / "b")))
    assert len(merged.interactions) == len(base.interactions) + 4
    tail = merged.interactions.iloc[-4:]
    assert tail[USER_ID].tolist() == [900001, 900002, 900001, 900001]
    assert tail[ITEM_ID].iloc[-1] == 990001
    assert merged.items is not None and 990001 in set(merged.items[ITEM_ID])
    # without the directory, the source alone
    alone = sources.load_source(dataclasses.replace(cfg, batches=str(tmp_path / "none")))
    assert len(alone.interactions) == len(base.interactions)


def test_a_model_scored_on_newer_data_serves_unknown_users_by_popularity() -> None:
    """The gate scores the champion on an update's split: a user it does not know gets its
    popularity ranking without their training items, an item it does not know is a miss."""
    from recsys.evaluation.evaluate import evaluate_topk

    old, new = old_and_new()
    champion = EASE(l2=10.0)
    champion.fit(old)
    result = evaluate_topk(champion, new.split.train, new.split.test, ks=(10,), n_boot=10)
    newcomers = result.user_ids[~champion.known_users(result.user_ids)]
    assert len(newcomers)
    popular = champion.item_popularity()
    for user in newcomers:
        row = int(np.searchsorted(result.user_ids, user))
        listed = result.item_ids[row]
        mine = set(new.split.train[new.split.train[USER_ID] == user][ITEM_ID])
        assert not mine & set(listed.tolist())
        assert champion.known_items(listed).all()
        counts = popular[champion.encode_items(listed)]
        assert (np.diff(counts) <= 0).all()  # most popular first


def test_a_model_can_have_its_own_update_settings() -> None:
    from recsys.config_ops import ModelUpdate, UpdateConfig

    cfg = UpdateConfig(epochs=2, replay=1.0, models={"neumf": ModelUpdate(epochs=3)})
    assert cfg.for_model("neumf") == (3, 1.0) and cfg.for_model("twotower") == (2, 1.0)
    with pytest.raises(ValueError, match=r"models\.neumf"):
        UpdateConfig(models={"neumf": ModelUpdate(epochs=0)})
