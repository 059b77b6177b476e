"""The weighted ensemble: the Recommender contract, its blend arithmetic and the tuning hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.data.preprocess import Processed
from recsys.errors import ConfigError
from recsys.evaluation.evaluate import evaluate_topk
from recsys.models.base import Recommender
from recsys.models.baselines import EASE, ItemKNN
from recsys.models.ensemble import WEIGHT_GRID, Ensemble
from recsys.models.registry import model_class
from recsys.models.tuning import TuningRequest
from tests.recsys.test_models_contract import RecommenderContract, synthetic_data

MEMBERS = {"members": ["ease", "itemknn"], "params": {"ease": {"l2": 50.0}, "itemknn": {"k": 20}}}


class TestEnsemble(RecommenderContract):
    def make_model(self) -> Recommender:
        return Ensemble(**MEMBERS, weights=[1.0, 0.5])


@pytest.fixture(scope="module")
def fitted() -> tuple[Ensemble, EASE, ItemKNN, Processed]:
    data = synthetic_data()
    ens = Ensemble(**MEMBERS, weights=[1.0, 0.5])
    ens.fit(data)
    ease, knn = EASE(l2=50.0), ItemKNN(k=20)
    ease.fit(data)
    knn.fit(data)
    return ens, ease, knn, data


def test_scores_are_the_weighted_sum_of_standardized_member_scores(
    fitted: tuple[Ensemble, EASE, ItemKNN, Processed],
) -> None:
    ens, ease, knn, data = fitted
    users, items = np.arange(10), np.arange(data.vocab.n_items)
    assert ens.mean is not None and ens.std is not None
    expected = (ease._scores(users, items) - ens.mean[0]) / ens.std[0] + 0.5 * (
        knn._scores(users, items) - ens.mean[1]
    ) / ens.std[1]
    np.testing.assert_allclose(ens._scores(users, items), expected, rtol=1e-5, atol=1e-5)


def test_a_single_member_ranks_exactly_like_that_member(
    fitted: tuple[Ensemble, EASE, ItemKNN, Processed],
) -> None:
    ens, ease, _, data = fitted
    users = data.vocab.user_ids[:30]
    only_ease = ens.with_weights((1.0, 0.0))
    np.testing.assert_array_equal(only_ease.recommend(users, k=10)[0], ease.recommend(users, 10)[0])


def test_pair_scores_equal_full_ranking_scores(
    fitted: tuple[Ensemble, EASE, ItemKNN, Processed],
) -> None:
    # Global standardization: a pair scored alone gets the score it has in a full ranking.
    ens, _, _, data = fitted
    users = data.vocab.user_ids[:5]
    ids, scores = ens.recommend(users, k=5)
    pair = ens.score(np.repeat(users, 5), ids.ravel())
    np.testing.assert_allclose(pair.reshape(5, 5), scores, rtol=1e-5)


def test_save_load_keeps_members_and_weights(
    fitted: tuple[Ensemble, EASE, ItemKNN, Processed], tmp_path: Path
) -> None:
    ens, _, _, data = fitted
    ens.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, Ensemble)
    assert [m.name for m in loaded.models] == ["ease", "itemknn"]
    assert loaded.weights.tolist() == [1.0, 0.5]
    users = data.vocab.user_ids[:20]
    np.testing.assert_array_equal(loaded.recommend(users, 10)[0], ens.recommend(users, 10)[0])


def validation_score(model: Recommender, data: Processed) -> float:
    """NDCG@10 on the held-out rows the tuning hook scores (``data.split.test``)."""
    result = evaluate_topk(model, data.split.train, data.split.test, (10,), n_boot=1)
    return float(result.metrics["ndcg@10"])


def tune(config: dict[str, Any], seen: list[tuple[float, ...]] | None = None) -> dict[str, Any]:
    data = synthetic_data()

    def evaluate(model: Any, train: Any, heldout: Any, ks: Any) -> Any:
        assert isinstance(model, Ensemble)
        if seen is not None:
            seen.append(tuple(model.weights.tolist()))
        return evaluate_topk(model, train, heldout, ks, n_boot=1)

    return Ensemble.tune(TuningRequest(data, data.split, evaluate, "ndcg@10", config))


def test_tune_scores_each_member_alone_and_the_grid_around_the_best() -> None:
    seen: list[tuple[float, ...]] = []
    chosen = tune(MEMBERS, seen)
    one_hot = [(1.0, 0.0), (0.0, 1.0)]
    assert seen[:2] == one_hot
    # The best member alone stays at 1, the other takes every non-zero grid weight.
    best = chosen["selection"]["best_member"]
    ref = MEMBERS["members"].index(best)
    assert len(seen) == 2 + len(WEIGHT_GRID) - 1
    assert all(w[ref] == 1.0 and w[1 - ref] > 0 for w in seen[2:])


@pytest.mark.parametrize(
    ("config", "winner"),
    [
        # EASE and an item-kNN of two neighbours (far weaker): no blend beats EASE alone.
        ({"members": ["itemknn", "ease"], "params": {"itemknn": {"k": 2}}}, "ease"),
        # EASE and the popularity order: the blend adds what EASE lacks.
        ({"members": ["ease", "mostpop"], "params": {"ease": {"l2": 50.0}}}, "blend"),
    ],
)
def test_tuned_ensemble_is_never_below_its_best_member_on_validation(
    config: dict[str, Any], winner: str
) -> None:
    """Issue 17: members of very different quality; the tuned ensemble, refitted as the
    benchmark does, scores at least its best member on validation, and where no blend beats
    that member it is that member alone (and says so)."""
    data = synthetic_data()
    chosen = tune(config)
    selection = chosen["selection"]
    assert selection["chosen"] == winner
    members = {}
    for member in config["members"]:
        model = model_class(member)(**config["params"].get(member, {}))
        model.fit(data)
        members[member] = validation_score(model, data)
    best = max(members.values())
    assert selection["member_scores"] == pytest.approx(members, abs=1e-6)
    tuned = Ensemble(**{**config, **chosen})
    tuned.fit(data)
    assert validation_score(tuned, data) >= best - 1e-12
    assert tuned.train_result is not None
    assert tuned.train_result.extra["selection"] == selection
    if winner == "blend":
        assert selection["blend_score"] > selection["best_member_score"]
        assert validation_score(tuned, data) > best
        assert "acts_as" not in tuned.train_result.extra
    else:
        assert chosen["members"] == [winner] and chosen["weights"] == [1.0]
        assert tuned.train_result.extra["acts_as"] == winner
        assert "is it alone" in selection["summary"]
        alone = model_class(winner)(**config["params"].get(winner, {}))
        alone.fit(data)
        users = data.vocab.user_ids[:50]
        np.testing.assert_array_equal(tuned.recommend(users, 10)[0], alone.recommend(users, 10)[0])


def test_choose_weights_keeps_the_best_member_unless_a_blend_is_strictly_better(
    fitted: tuple[Ensemble, EASE, ItemKNN, Processed],
) -> None:
    ens = fitted[0]
    # A blend equal to the best member does not win: ties keep the member alone.
    tie = ens.choose_weights(lambda e: 0.5 if e.weights[1] > 0 else 0.4, "m")
    assert not tie.blend and tie.best_member == "itemknn" and tie.weights == (0.0, 1.0)
    better = ens.choose_weights(lambda e: float(e.weights[0] * e.weights[1] > 0) + 0.1, "m")
    assert better.blend and better.blend_score == 1.1 and min(better.weights) > 0


def test_fit_chooses_the_weights_on_the_validation_rows() -> None:
    """The pipeline's path: no weights given and a split with validation rows."""
    data = synthetic_data()
    assert len(data.split.val)
    ens = Ensemble(members=["itemknn", "ease"], params={"itemknn": {"k": 2}})
    ens.fit(data)
    selection = ens.config.selection
    assert selection is not None and ens.config.weights is not None
    val = {}
    for model in ens.models:
        result = evaluate_topk(model, data.split.train, data.split.val, (10,), n_boot=1)
        val[model.name] = float(result.metrics["ndcg@10"])
    assert selection["member_scores"] == pytest.approx(val, abs=1e-6)
    chosen = evaluate_topk(ens, data.split.train, data.split.val, (10,), n_boot=1)
    assert chosen.metrics["ndcg@10"] >= max(val.values()) - 1e-12
    assert Ensemble(**ens.config_dict()).config.weights == ens.config.weights  # saved as chosen


def test_seed_replicas_are_trained_with_their_seeds_and_survive_save_load(
    tmp_path: Path,
) -> None:
    """``bpr@1, bpr@2``: two BPR models that differ only by their seed, blended equally; the
    model-name params reach both, a replica's own params override them."""
    data = synthetic_data()
    bag = Ensemble(
        members=["bpr@1", "bpr@2"],
        params={"bpr": {"epochs": 3, "factors": 8}, "bpr@2": {"epochs": 2}},
        weights=[1.0, 1.0],
    )
    bag.fit(data)
    seeds = [m.config.seed for m in bag.models]  # type: ignore[attr-defined]
    epochs = [m.config.epochs for m in bag.models]  # type: ignore[attr-defined]
    assert seeds == [1, 2] and epochs == [3, 2]
    assert all(m.config.factors == 8 for m in bag.models)  # type: ignore[attr-defined]
    users, items = np.arange(5), np.arange(data.vocab.n_items)
    a, b = (m._scores(users, items) for m in bag.models)
    assert not np.allclose(a, b), "two seeds trained the same network"
    assert bag.train_result is not None
    assert set(bag.train_result.extra["members"]) == {"bpr@1", "bpr@2"}
    bag.save(tmp_path / "bag")
    loaded = Recommender.load(tmp_path / "bag")
    ids = data.vocab.user_ids[:10]
    np.testing.assert_array_equal(loaded.recommend(ids, 10)[0], bag.recommend(ids, 10)[0])


def test_tune_leaves_given_weights_alone() -> None:
    data = synthetic_data()

    def evaluate(*_: Any) -> Any:
        raise AssertionError("nothing to tune: the weights are given")

    config = {**MEMBERS, "weights": [1.0, 1.0]}
    assert Ensemble.tune(TuningRequest(data, data.split, evaluate, "ndcg@10", config)) == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"members": []},
        {"members": ["ease@x"]},
        {"members": ["@1"]},
        {"members": ["ensemble@1"]},
        {"members": ["bpr@1", "bpr@1"]},
        {"members": ["bpr@1"], "params": {"bpr@2": {}}},
        {"members": ["ease", "ease"]},
        {"members": ["ease", "ensemble"]},
        {"members": ["ease"], "params": {"bpr": {}}},
        {"members": ["ease", "itemknn"], "weights": [1.0]},
        {"members": ["ease", "itemknn"], "weights": [0.0, 0.0]},
        {"members": ["ease", "itemknn"], "weights": [1.0, -1.0]},
        {"members": ["ease", "nosuch"]},
        {"members": ["ease", "nosuch@2"]},
    ],
)
def test_bad_configs_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Ensemble(**fields)


def test_an_unknown_member_is_named_with_the_choices() -> None:
    """A typo in a member's name fails when the settings are read, not after the other
    members have been fitted."""
    with pytest.raises(ConfigError) as info:
        Ensemble(members=["ease", "eaze"])
    assert "unknown models: ['eaze']" in str(info.value)
    assert "multdae" in (info.value.fix or "")
