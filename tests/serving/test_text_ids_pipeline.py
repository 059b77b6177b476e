"""Text ids through the real pipeline and a real bento over HTTP (issue 17).

A shop's CSV log whose users and items are text (``user-00001-x``, ``SKU-1-B``: their text order
differs from their numeric order, so an index mix-up would show) goes through the ``recsys``
commands that dvc.yaml's stages and the Dagster assets run, in a temporary project directory:
data validate, data prepare, data preprocess, train / evaluate / compose for ease and twotower,
gate-candidates, promote, bento build. The bento is then served (``bentoml serve`` on
127.0.0.1): ``/recommend`` answers a text user with the original text item ids, exactly as the
gated object ranks them; an id of the wrong kind is a 400 naming the field; an unknown text
user gets the popularity fallback; the infra validation's probes pass. One pipeline run and
one bento build for the whole module (70 s on 2 idle cores, about 2 minutes under load).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys import cli
from recsys.models.twostage import TwoStage
from recsys.schema import ITEM_ID, USER_ID
from recsys.serving import package, store
from tests.integration.test_string_ids import log_dir
from tests.params import complete_params
from tests.serving import fixtures

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FAMILIES = ("ease", "twotower")
USER = r"user-\d{5}-x"
ITEM = r"SKU-\d+-B"


@dataclass(frozen=True)
class Project:
    root: Path
    home: Path
    champion: str
    catalogue: str
    bento: str

    def path(self, relative: str) -> Path:
        return self.root / relative


def project_params(shop: Path) -> dict[str, Any]:
    """The repository's params.yaml, reading the shop's CSV files, with small models."""
    split = {"method": "random_holdout", "test_fraction": 0.2, "val_fraction": 0.1, "seed": 11}
    return complete_params(
        {
            "data": {
                "source": "csv",
                "path": str(shop / "events.csv"),
                "csv": {"items_path": str(shop / "products.csv")},
            },
            "validation": {"min_interactions_per_user": 1},
            "preprocess": {
                "min_user_interactions": 1, "min_item_interactions": 1, "split": split,
            },
            "models": {"ease": {"l2": 50.0}, "twotower": {**fixtures.TWOTOWER, "eval_users": 100}},
            "gate": {
                "min_metrics": {"ndcg@10": 0.01}, "max_two_stage_loss": 0.1, "n_bootstrap": 200,
                "max_latency_p99_ms": 10_000.0,  # a loaded CI machine; latency is not tested here
            },
            "serving": {"rerank_top": fixtures.RERANK_TOP},
        }
    )  # fmt: skip


def recsys(*argv: str | Path) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Every pipeline command, in the order the Dagster job runs them, on the shop's log."""
    mp = pytest.MonkeyPatch()
    yield run_pipeline(tmp_path_factory.mktemp("shop-project"), mp)
    mp.undo()


def run_pipeline(root: Path, mp: pytest.MonkeyPatch) -> Project:
    """The shop's project in ``root`` through every pipeline command (``BENTOML_HOME`` set to
    its ``bentoml`` directory with ``mp``)."""
    home, params = root / "bentoml", root / "params.yaml"
    mp.setenv("BENTOML_HOME", str(home))
    params.write_text(yaml.safe_dump(project_params(log_dir(root / "raw"))))
    p = ["--params", params]
    reports, registry, timings = root / "reports", root / "registry", root / "reports" / "timings"
    data, models = root / "data", root / "models"
    assert recsys("data", "validate", *p, "--report-dir", reports / "validation") == 0
    assert recsys("data", "prepare", *p, "--out", data / "prepared",
                  "--report-dir", reports / "validation") == 0  # fmt: skip
    assert recsys("data", "preprocess", *p, "--in", data / "prepared",
                  "--out", data / "processed") == 0  # fmt: skip
    inp = ["--in", data / "processed", "--timings", timings]
    for family in FAMILIES:
        model = models / family
        assert recsys("train", *p, "--model", family, *inp, "--out", model) == 0
        out = models / "metrics" / f"{family}.json"
        assert recsys("evaluate", "--model", model, *inp, "--out", out, "--n-boot", "50") == 0
    for family in FAMILIES:
        assert recsys("compose", *p, "--ranker", models / family, "--retriever",
                      models / "twotower", *inp, "--out", models / f"twostage-{family}",
                      "--metrics", models / "metrics" / f"twostage-{family}.json") == 0  # fmt: skip
    outcome_file = reports / "gate" / "outcome.json"
    assert recsys("gate-candidates", *p, "--models", models, *inp, "--registry", registry,
                  "--data-version", "shop-v1", "--out", outcome_file) == 0  # fmt: skip
    outcome = json.loads(outcome_file.read_text())
    assert recsys("promote", outcome["challenger"], "--registry", registry) == 0
    build_file = reports / "bento" / "build.json"
    assert recsys("bento", "build", *p, "--processed", data / "processed",
                  "--registry", registry, "--out", build_file, "--reuse") == 0  # fmt: skip
    build = json.loads(build_file.read_text())
    assert build["champion"] == outcome["challenger"]
    return Project(root, home, build["champion"], build["catalogue"], build["bento"])


@pytest.fixture(scope="module")
def models(project: Project) -> fixtures.StoredModels:
    """The pipeline's champion and catalogue (served by tests/serving/conftest.py's fixtures)."""
    return fixtures.StoredModels(project.home, project.champion, project.catalogue)


@pytest.fixture(scope="module")
def bento(project: Project) -> str:
    return project.bento


@pytest.fixture(scope="module")
def gated(project: Project) -> TwoStage:
    model = store.load_model(project.champion, home=project.home)
    assert isinstance(model, TwoStage)
    return model


def post(url: str, body: Any) -> tuple[int, Any]:
    return package.http("POST", url, body)


# --- the pipeline's outputs ---------------------------------------------------------------------
def test_every_stage_keeps_the_original_text_ids(project: Project) -> None:
    raw = pd.read_csv(project.path("raw/events.csv"), dtype=str)
    prepared = pd.read_parquet(project.path("data/prepared/interactions.parquet"))
    assert str(prepared[USER_ID].dtype) == "str" and str(prepared[ITEM_ID].dtype) == "str"
    assert set(prepared[USER_ID]) == set(raw[USER_ID])
    assert set(prepared[ITEM_ID]) == set(raw[ITEM_ID])
    test = pd.read_parquet(project.path("data/processed/split/test.parquet"))
    assert test[USER_ID].str.fullmatch(USER).all() and test[ITEM_ID].str.fullmatch(ITEM).all()
    for family in FAMILIES:
        for name in (family, f"twostage-{family}"):
            metrics = json.loads(project.path(f"models/metrics/{name}.json").read_text())
            users = metrics["per_user"]["user_ids"]
            assert len(users) == metrics["n_users"] == test[USER_ID].nunique(), name
            assert set(users) == set(test[USER_ID]), name
    outcome = json.loads(project.path("reports/gate/outcome.json").read_text())
    assert outcome["promote"] and set(outcome["registered"]) == set(FAMILIES)


# --- the bento over HTTP ------------------------------------------------------------------------
def test_recommend_answers_with_the_original_text_ids(
    server: str, project: Project, gated: TwoStage
) -> None:
    """Every test user: the served list is the gated object's top-10, in order, with its
    scores, as text ids the user did not interact with in training."""
    test = pd.read_parquet(project.path("data/processed/split/test.parquet"))
    users = np.array(sorted(set(test[USER_ID])), dtype=object)
    want_ids, want_scores = gated.recommend(users, 10)
    for row, user in enumerate(users.tolist()):
        status, body = post(f"{server}/recommend", {"user_id": user, "k": 10})
        assert status == 200, body
        assert body["user_id"] == user and body["fallback"] is None
        got = [item["item_id"] for item in body["items"]]
        assert got == [i for i in want_ids[row].tolist() if i != ""], user
        assert all(isinstance(i, str) and pd.Series([i]).str.fullmatch(ITEM).all() for i in got)
        np.testing.assert_allclose(
            [item["score"] for item in body["items"]], want_scores[row][: len(got)], rtol=1e-6
        )
        assert not set(got) & set(gated.seen_items(user).tolist()), user
        assert body["model_tag"] == project.champion and body["data_version"] == "shop-v1"


def test_item_endpoints_take_and_give_text_ids(server: str, gated: TwoStage) -> None:
    user, items = str(gated.vocab.user_ids[0]), [str(i) for i in gated.train_item_ids[:3]]
    status, body = post(f"{server}/score", {"user_id": user, "item_ids": items[::-1]})
    assert status == 200 and [i["item_id"] for i in body["items"]] == items[::-1], body
    for route, payload in (
        ("/similar_items", {"item_id": items[0], "k": 5}),
        ("/recommend_recent", {"item_ids": items[:2], "k": 5}),
        ("/explain", {"user_id": user, "k": 2}),
    ):
        status, body = post(server + route, payload)
        assert status == 200, (route, body)
        assert {i["item_id"] for i in body["items"]} <= set(gated.item_ids.tolist()), route
    status, body = post(f"{server}/score", {"user_id": user, "item_ids": ["SKU-999999-B"]})
    assert status == 422 and body["field"] == "item_ids"
    assert body["unknown_ids"] == ["SKU-999999-B"]


def test_an_id_of_the_wrong_kind_is_a_400_naming_the_field(server: str, gated: TwoStage) -> None:
    user, item = str(gated.vocab.user_ids[0]), str(gated.train_item_ids[0])
    for route, payload, field in (
        ("/recommend", {"user_id": 1, "k": 5}, "user_id"),
        ("/recommend", {"user_id": "", "k": 5}, "user_id"),
        ("/score", {"user_id": user, "item_ids": [item, 7]}, "item_ids"),
        ("/similar_items", {"item_id": 7, "k": 5}, "item_id"),
        ("/recommend_recent", {"item_ids": [7], "k": 5}, "item_ids"),
    ):
        status, body = post(server + route, payload)
        assert status == 400, (route, payload, body)
        assert body["detail"][0]["loc"][0] == field, (route, body)


def test_an_unknown_text_user_gets_the_popularity_fallback(server: str, gated: TwoStage) -> None:
    """The documented fallback: the most-interacted training items, scored by their share of
    the training interactions; the unknown id comes back as sent."""
    status, body = post(f"{server}/recommend", {"user_id": "user-99999-never", "k": 5})
    assert status == 200 and body["fallback"] == "popularity", body
    assert body["user_id"] == "user-99999-never" and body["score_kind"] == "popularity_share"
    popularity = gated.item_popularity()
    ids = [item["item_id"] for item in body["items"]]
    counts = popularity[gated.encode_items(ids)]
    assert counts.tolist() == sorted(popularity, reverse=True)[:5]
    np.testing.assert_allclose(
        [item["score"] for item in body["items"]], counts / popularity.sum(), rtol=1e-6
    )


def test_the_infra_validation_probes_pass(server: str, project: Project) -> None:
    """What `recsys bento validate` sends before marking the bento deployable (a sample
    request per endpoint with the bento's own text ids, an unknown user and item, a bad k)."""
    for name, route, body, check in package.sample_requests(project.bento, home=project.home):
        status, answer = post(server + route, body)
        assert check(status, answer) is None, (name, body, answer)
