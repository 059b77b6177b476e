"""String ids end to end (issue 17): a shop-like CSV log whose users and items are text
(``user-00001-x``, ``SKU-1-B``) goes through the pipeline's library calls (read -> validate ->
preprocess -> train -> evaluate -> the champion and its catalogue in a BentoML store -> the
service's engine and request models) and every output speaks the original ids.

The ids are chosen so that their text order differs from their numeric order (``SKU-10-B``
sorts before ``SKU-2-B``), so an index mix-up anywhere would show.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys.config import (
    CsvConfig,
    DataConfig,
    PreprocessConfig,
    SplitConfig,
    SyntheticConfig,
    ValidationConfig,
)
from recsys.data import io, sources
from recsys.data.preprocess import Processed, load_processed, preprocess, save_processed
from recsys.data.synthetic import generate
from recsys.data.validation import validate
from recsys.evaluation.evaluate import evaluate_topk
from recsys.models.base import Recommender
from recsys.models.baselines import EASE
from recsys.models.twostage import TwoStage
from recsys.models.twotower import TwoTower
from recsys.schema import INT_IDS, ITEM_ID, STR_IDS, USER_ID
from recsys.serving import package, store
from recsys.serving.engine import FALLBACK_POPULARITY, Engine, RequestError, load_engine
from recsys.serving.schemas import RecommendResponse, ScoredItem, request_models
from tests.serving import fixtures

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def user_key(u: int) -> str:
    return f"user-{u:05d}-x"


def item_key(i: int) -> str:
    return f"SKU-{i}-B"


@functools.cache
def log_dir(root: Path, text_items: bool = True) -> Path:
    """The synthetic data of the contract suite, written as a shop's CSV files with text ids
    (text user ids only, integer item ids kept, when not ``text_items``)."""
    ds = generate(SyntheticConfig(n_interactions=2000, seed=11))
    items_as = item_key if text_items else int
    inter = ds.interactions.assign(
        user_id=ds.interactions[USER_ID].map(user_key),
        item_id=ds.interactions[ITEM_ID].map(items_as),
    )
    assert ds.items is not None
    items = ds.items.loc[:, ["item_id", "title", "genres"]].assign(
        item_id=ds.items[ITEM_ID].map(items_as)
    )
    root.mkdir(parents=True, exist_ok=True)
    io.write_csv(inter, root / "events.csv")
    io.write_csv(items, root / "products.csv")
    return root


def read_and_preprocess(root: Path) -> Processed:
    """The shop's files through the pipeline's reader, validation and preprocessing."""
    cfg = DataConfig(
        source="csv",
        path=str(root / "events.csv"),
        csv=CsvConfig(items_path=str(root / "products.csv")),
    )
    dataset = sources.load_source(cfg)
    assert str(dataset.interactions[USER_ID].dtype) == "str"
    report = validate(dataset, ValidationConfig())
    assert report.success, report.summary()
    split = SplitConfig(method="random_holdout", test_fraction=0.2, val_fraction=0.1, seed=11)
    return preprocess(
        dataset,
        PreprocessConfig(min_user_interactions=1, min_item_interactions=1, split=split),
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    root = log_dir(tmp_path_factory.mktemp("shop"))
    processed = read_and_preprocess(root)
    out = root / "processed"
    save_processed(processed, out)
    loaded = load_processed(out)
    assert loaded.equals(processed)
    return loaded


@pytest.fixture(scope="module")
def champion(data: Processed, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    """EASE ranking the candidates of a small two-tower retriever, saved and loaded back."""
    ranker = EASE(l2=50.0)
    ranker.fit(data)
    retriever = TwoTower(**fixtures.TWOTOWER)
    retriever.fit(data)
    path = tmp_path_factory.mktemp("champion") / "twostage"
    TwoStage.compose(ranker, retriever, rerank_top=fixtures.RERANK_TOP).save(path)
    return Recommender.load(path)


@pytest.fixture(scope="module")
def engine(
    data: Processed, champion: Recommender, tmp_path_factory: pytest.TempPathFactory
) -> Engine:
    """The engine as the bento loads it: champion and catalogue from a BentoML store."""
    home = tmp_path_factory.mktemp("bentoml")
    tag = store.save_model(champion, "recsys-twostage", fixtures.LABELS, home=home)
    catalogue = package.save_catalogue(data, data_version="shop", home=home)
    args = package.bento_arguments(tag, catalogue, home=home)
    assert args["ids"] == {
        "user_kind": STR_IDS,
        "item_kind": STR_IDS,
        "example_user": str(data.vocab.user_ids[0]),
        "example_items": [str(i) for i in data.vocab.item_ids[:2]],
    }
    return load_engine(store.model_path(tag, home=home), store.model_path(catalogue, home=home))


def test_vocabulary_and_splits_keep_the_original_text(data: Processed) -> None:
    users, items = data.vocab.user_ids, data.vocab.item_ids
    assert users.dtype == object and items.dtype == object
    assert list(items) == sorted(items) and "SKU-10-B" in set(items)
    assert list(items).index("SKU-10-B") < list(items).index("SKU-2-B")  # text order
    for frame in (data.split.train, data.split.test):
        np.testing.assert_array_equal(data.vocab.decode_users(frame["user_idx"]), frame[USER_ID])
        np.testing.assert_array_equal(data.vocab.decode_items(frame["item_idx"]), frame[ITEM_ID])
        assert frame[USER_ID].str.fullmatch(r"user-\d{5}-x").all()


def test_evaluation_outputs_speak_the_original_ids(data: Processed, champion: Recommender) -> None:
    result = evaluate_topk(
        champion.parts()[0], data.split.train, data.split.test, n_boot=20, list_length=50
    )  # type: ignore[attr-defined]
    recs = result.recommendations()
    assert len(recs) and recs[ITEM_ID].str.fullmatch(r"SKU-\d+-B").all()
    assert set(recs[USER_ID]) <= set(data.split.test[USER_ID])
    seen = set(zip(data.split.train[USER_ID], data.split.train[ITEM_ID], strict=True))
    assert not seen & set(zip(recs[USER_ID], recs[ITEM_ID], strict=True))
    assert 0.0 < result.metrics["ndcg@10"] <= 1.0


def test_recommend_answers_with_the_original_string_ids(
    data: Processed, engine: Engine, champion: Recommender
) -> None:
    """The /recommend body of a string-id bento validates, and the answer's JSON carries the
    training data's text ids, none of them seen in training."""
    models = request_models(STR_IDS, STR_IDS, "user-00001-x", ["SKU-1-B"])
    user = str(data.split.test[USER_ID].iloc[0])
    request = models["/recommend"].model_validate_json(json.dumps({"user_id": user, "k": 5}))
    ranked = engine.recommend(request.user_id, request.k)  # type: ignore[attr-defined]
    body = RecommendResponse(
        user_id=user,
        items=[
            ScoredItem(item_id=i, score=s)
            for i, s in zip(ranked.item_ids, ranked.scores, strict=True)
        ],
        score_kind="model",
        **engine.provenance.fields,
    )
    answer = json.loads(body.model_dump_json())
    ids = [item["item_id"] for item in answer["items"]]
    assert answer["user_id"] == user and answer["fallback"] is None and len(ids) == 5
    assert all(isinstance(i, str) and i in set(data.vocab.item_ids) for i in ids)
    assert not set(ids) & set(champion.seen_items(user).tolist())
    assert engine.score(user, ids).item_ids == ids


def test_unknown_string_user_gets_the_popularity_fallback(engine: Engine) -> None:
    ranked = engine.recommend("user-99999-never", 5)
    assert ranked.fallback == FALLBACK_POPULARITY and len(ranked.item_ids) == 5
    counts = engine.popularity[engine.ranker.encode_items(ranked.item_ids)]
    assert counts.tolist() == sorted(engine.popularity, reverse=True)[:5]


def test_an_id_of_the_wrong_kind_is_a_400_naming_the_field(engine: Engine) -> None:
    """Over HTTP the request model refuses it (400, like any wrong type); in process the
    engine does (status 400), never answering it as an unknown user."""
    models = request_models(STR_IDS, STR_IDS, "user-00001-x", ["SKU-1-B"])
    for route, body in (
        ("/recommend", {"user_id": 1}),
        ("/recommend", {"user_id": ""}),
        ("/score", {"user_id": "user-00001-x", "item_ids": [1]}),
    ):
        with pytest.raises(ValidationError) as exc:
            models[route].model_validate_json(json.dumps(body))
        assert exc.value.errors()[0]["loc"][0] in ("user_id", "item_ids")
    with pytest.raises(RequestError) as refused:
        engine.recommend(1, 5)  # type: ignore[arg-type]
    assert refused.value.status == 400 and refused.value.field == "user_id"
    with pytest.raises(RequestError) as unknown:
        engine.similar_items("SKU-999999-B", 3)
    assert unknown.value.status == 422 and unknown.value.ids == ["SKU-999999-B"]
    assert request_models()["/recommend"].model_fields["user_id"].annotation is int


def test_catalogue_round_trip_keeps_text_ids(data: Processed, tmp_path: Path) -> None:
    from recsys.serving.engine import Catalogue

    Catalogue.from_processed(data).save(tmp_path)
    back = Catalogue.load(tmp_path)
    assert back.item_ids.dtype == object
    np.testing.assert_array_equal(back.item_ids, data.vocab.item_ids)
    assert not (tmp_path / "item_ids.npy").exists()
    assert pd.read_parquet(tmp_path / "item_ids.parquet")[ITEM_ID].tolist() == list(back.item_ids)


def test_text_users_with_integer_items_take_integer_item_ids(tmp_path: Path) -> None:
    """Each side keeps its own kind up to the bento's requests (text user ids with integer
    SKUs is a common shop log): the chain the bento runs at import (catalogue metadata ->
    bento arguments, through their JSON arg file -> ``service.IdArgs`` -> request models)
    takes text users and integer items, refuses either side's other kind naming the field,
    and shows ids of the served data as the OpenAPI examples."""
    from recsys.serving.service import IdArgs

    data = read_and_preprocess(log_dir(tmp_path / "shop", text_items=False))
    assert data.vocab.user_kind == STR_IDS and data.vocab.item_kind == INT_IDS
    ranker = EASE(l2=50.0)
    ranker.fit(data)
    home = tmp_path / "bentoml"
    tag = store.save_model(ranker, "recsys-ease", fixtures.LABELS, home=home)
    catalogue = package.save_catalogue(data, data_version="shop", home=home)
    ids = IdArgs.model_validate(
        json.loads(json.dumps(package.bento_arguments(tag, catalogue, home=home)["ids"]))
    )
    models = request_models(ids.user_kind, ids.item_kind, ids.example_user, ids.example_items)
    user, items = str(data.vocab.user_ids[0]), data.vocab.item_ids[:2].tolist()
    assert models["/score"].model_json_schema()["example"] == {"user_id": user, "item_ids": items}
    score = models["/score"].model_validate_json(json.dumps({"user_id": user, "item_ids": items}))
    assert score.item_ids == items and score.user_id == user  # type: ignore[attr-defined]
    assert models["/similar_items"].model_validate_json(f'{{"item_id": {items[0]}}}')
    ranked, _ = ranker.recommend([user], 3)
    assert ranked.dtype == np.int64 and set(ranked[0].tolist()) <= set(data.vocab.item_ids)
    for route, body in (
        ("/score", {"user_id": user, "item_ids": [str(items[0])]}),
        ("/score", {"user_id": 1, "item_ids": items}),
        ("/recommend_recent", {"item_ids": ["SKU-1-B"]}),
        ("/similar_items", {"item_id": str(items[0])}),
    ):
        with pytest.raises(ValidationError) as exc:
            models[route].model_validate_json(json.dumps(body))
        assert exc.value.errors()[0]["loc"][0] in ("user_id", "item_ids", "item_id")


def benchmark_split_files(root: Path, relabel: bool) -> Path:
    """Leave-one-out split files (train, test, 20 negatives per test user) of the synthetic
    data, with integer ids or relabelled as text."""
    inter = generate(SyntheticConfig(n_interactions=2000, seed=11)).interactions
    inter = inter.sort_values([USER_ID, "timestamp", ITEM_ID])
    test = inter.groupby(USER_ID).tail(1)
    rng = np.random.default_rng(0)
    pool = np.sort(inter[ITEM_ID].unique())
    negatives = pd.DataFrame(
        [
            (user, item, 0.0, 0)
            for user in test[USER_ID]
            for item in rng.choice(
                np.setdiff1d(pool, inter.loc[inter[USER_ID] == user, ITEM_ID]), 20, replace=False
            )
        ],
        columns=[USER_ID, ITEM_ID, "rating", "timestamp"],
    )
    root.mkdir(parents=True)
    for name, frame in (("train", inter.drop(test.index)), ("test", test), ("neg", negatives)):
        if relabel:
            frame = frame.assign(
                user_id=frame[USER_ID].map(user_key), item_id=frame[ITEM_ID].map(item_key)
            )
        frame.loc[:, [USER_ID, ITEM_ID, "rating", "timestamp"]].to_csv(
            root / f"{name}.csv", index=False
        )
    return root


@pytest.mark.parametrize("protocol", ["topk", "loo"])
def test_benchmark_on_text_ids_is_the_integer_run_relabelled(protocol: str, tmp_path: Path) -> None:
    """`recsys benchmark` on split files whose ids are text writes the integer run's
    recommendations (topk) or scores (loo) under the original text ids, and its metrics: an
    index mix-up (text order differs from numeric order) would pair scores with other items."""
    from recsys.cli import main

    out: dict[bool, Path] = {}
    for relabel in (False, True):
        files = benchmark_split_files(tmp_path / str(relabel), relabel)
        extra = ["--negatives", str(files / "neg.csv")] if protocol == "loo" else []
        out[relabel] = files / "out"
        code = main(
            ["benchmark", "--protocol", protocol, "--train", str(files / "train.csv"),
             "--test", str(files / "test.csv"), *extra, "--models", "ease", "--n-boot", "20",
             "--out", str(out[relabel])]
        )  # fmt: skip
        assert code == 0
    name = "recommendations.csv" if protocol == "topk" else "scores.csv"
    ints = pd.read_csv(out[False] / "ease" / name)
    text = pd.read_csv(out[True] / "ease" / name, dtype={USER_ID: str, ITEM_ID: str})
    assert text[USER_ID].str.fullmatch(r"user-\d{5}-x").all()
    assert text[ITEM_ID].str.fullmatch(r"SKU-\d+-B").all()
    back = text.assign(
        user_id=text[USER_ID].str.slice(5, 10).astype(int),
        item_id=text[ITEM_ID].str.slice(4, -2).astype(int),
    )
    key = [USER_ID, "rank"] if protocol == "topk" else [USER_ID, ITEM_ID]
    ints, back = (f.sort_values(key).reset_index(drop=True) for f in (ints, back))
    assert len(ints) == len(back) > 0
    np.testing.assert_allclose(back["score"], ints["score"], atol=1e-5)
    if protocol == "topk":  # the same item at every rank, but where two scores (nearly) tie
        tied = ints.groupby(USER_ID)["score"].diff().abs().lt(1e-5)
        tied |= tied.groupby(ints[USER_ID]).shift(-1, fill_value=False)
        assert (back[ITEM_ID] == ints[ITEM_ID])[~tied].all()
    else:
        np.testing.assert_array_equal(back[ITEM_ID], ints[ITEM_ID])
    metrics = [json.loads((out[k] / "ease" / "metrics.json").read_text()) for k in (False, True)]
    assert metrics[1]["metrics"] == pytest.approx(metrics[0]["metrics"], abs=1e-3)
