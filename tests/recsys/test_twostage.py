"""The two-stage model (retriever + index + M + ranker) is a ``Recommender`` like the others
(issue 16, part 1): the contract suite, one saved artifact, and what the two stages mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import RetrievalConfig
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender
from recsys.models.baselines import EASE, ItemKNN
from recsys.models.registry import model_class
from recsys.models.twostage import TwoStage
from tests.recsys.test_models_contract import RecommenderContract, synthetic_data
from tests.serving.fixtures import TWOTOWER

M = 30
"""Under the synthetic catalogue's 100 items: the first stage really prunes."""


def two_stage(**fields: object) -> TwoStage:
    config = {"ranker": "ease", "retriever": "twotower", "rerank_top": M}
    config["params"] = {"ease": {"l2": 50.0}, "twotower": TWOTOWER}
    return TwoStage(**{**config, **fields})


class TestTwoStage(RecommenderContract):
    def make_model(self) -> Recommender:
        return two_stage()


@pytest.fixture(scope="module")
def fitted() -> TwoStage:
    model = two_stage()
    model.fit(synthetic_data())
    return model


def test_registered_and_one_artifact(fitted: TwoStage, tmp_path: Path) -> None:
    """Saved as one directory (both parts inside), loaded back through the registry's
    dispatch with the same answers; a ranker that retrieves itself is stored once."""
    assert model_class("twostage") is TwoStage
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "ranker").is_dir() and (tmp_path / "m" / "retriever").is_dir()
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, TwoStage) and loaded.config == fitted.config
    users = synthetic_data().vocab.user_ids
    np.testing.assert_array_equal(loaded.recommend(users, 10)[0], fitted.recommend(users, 10)[0])

    tower = fitted.parts()[1]
    alone = TwoStage.compose(tower, tower, rerank_top=M)
    alone.save(tmp_path / "tower")
    assert not (tmp_path / "tower" / "retriever").exists()
    back = Recommender.load(tmp_path / "tower")
    assert isinstance(back, TwoStage) and back.parts()[0] is back.parts()[1]


def test_ranks_only_what_the_retriever_found(fitted: TwoStage) -> None:
    """Every recommended item is among the retriever's top M unseen items of those the ranker
    ranks (EASE: items seen in training), ordered by the ranker's own scores; with M =
    catalogue size it is the ranker's full ranking."""
    ranker, retriever = fitted.parts()
    users = synthetic_data().vocab.user_ids
    ids, scores = fitted.recommend(users, 10)
    full_ids, _ = ranker.recommend(users, 10)
    assert (ids != full_ids).any(axis=1).sum() > 0  # the first stage matters at M=30
    for row, user in enumerate(users[:50]):
        seen = set(ranker.seen_items(int(user)).tolist())
        retrieved, _ = retriever.recommend([user], M, candidates=ranker.train_item_ids)
        got = ids[row][ids[row] >= 0]
        assert set(got.tolist()) <= set(retrieved[0].tolist()) and not set(got.tolist()) & seen
        np.testing.assert_allclose(ranker.score([user] * len(got), got), scores[row][: len(got)])
    everything = TwoStage.compose(ranker, retriever, rerank_top=len(ranker.item_ids))
    np.testing.assert_array_equal(everything.recommend(users, 10)[0], full_ids)


def test_ann_recall_against_exact_retrieval(fitted: TwoStage) -> None:
    ranker, retriever = fitted.parts()
    users = synthetic_data().vocab.user_ids
    assert fitted.retrieval_recall(users) == 1.0  # an exact index
    hnsw = TwoStage.compose(
        ranker, retriever, rerank_top=M, retrieval=RetrievalConfig(kind="hnsw", ef_search=1)
    )
    recall = hnsw.retrieval_recall(users)
    assert 0.0 < recall <= 1.0


def test_explicit_candidates_restrict_both_stages(fitted: TwoStage) -> None:
    """The full-ranking protocol passes every training item as candidates: the evaluated
    answers must be the served ones (the bug this guards: candidates once skipped retrieval,
    so the gate scored the ranker alone). A list no longer than M is ranked whole, as the
    sampled leave-one-out protocol needs."""
    ranker = fitted.parts()[0]
    users = synthetic_data().vocab.user_ids
    served = fitted.recommend(users, 10)
    np.testing.assert_array_equal(
        fitted.recommend(users, 10, candidates=ranker.train_item_ids)[0], served[0]
    )
    few = ranker.train_item_ids[::4][:M]
    np.testing.assert_array_equal(
        fitted.recommend(users, 10, candidates=few)[0],
        ranker.recommend(users, 10, candidates=few)[0],
    )
    many = ranker.train_item_ids[::2]
    got = fitted.recommend(users, 10, candidates=many)[0]
    assert np.isin(got, np.r_[many, -1]).all()


def test_parts_must_fit_together() -> None:
    data = synthetic_data()
    knn = ItemKNN()
    knn.fit(data)
    ease = EASE()
    ease.fit(data)
    with pytest.raises(DataError, match="has no user/item embeddings"):
        TwoStage.compose(ease, knn)
    with pytest.raises(ConfigError, match="rerank_top"):
        two_stage(rerank_top=0)
    with pytest.raises(ConfigError, match="unknown key"):
        two_stage(m=3)
