"""Issue 19 §1: ``recsys update`` end to end, without a full retrain.

The shop's project of test_text_ids_pipeline goes through the full pipeline once; then a batch
arrives with a new user, a new item (with its side-table row) and a pair of ids the champion
has never seen at all. ``recsys update --promote`` warm-starts the two-tower model, refits
EASE (new item), gates the served ranking against the champion on the new split, records
that it was incremental and from what, promotes it and builds its bento; the bento, served
over HTTP, answers the new user with a personal list and recommends the new item. Bad
batches and a champion from other data change nothing; a full retrain that is due is said,
not run.
"""

from __future__ import annotations

import hashlib
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
from recsys.cli.common import params_from
from recsys.data import sources
from recsys.models.twostage import TwoStage
from recsys.serving import package, store
from recsys.serving.store import Registry
from tests.serving import fixtures
from tests.serving.test_text_ids_pipeline import Project, run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
NEW_USER, NEW_ITEM = "user-77777-x", "SKU-5000-B"
LONE_USER, LONE_ITEM = "user-88888-x", "SKU-6000-B"
"""A batch row whose user and item are both unknown: vocabulary growth on both sides."""


@dataclass(frozen=True)
class Updated:
    project: Project
    before: str
    """The champion the update started from."""
    outcome: dict[str, Any]
    bento: str
    catalogue: str


def recsys(*argv: str | Path) -> int:
    return cli.main([str(a) for a in argv])


def write_batch(root: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = root / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def good_batch(root: Path) -> list[dict[str, Any]]:
    """The new user rates 8 known items and the new item; 30 known users take the new item."""
    events = pd.read_csv(root / "raw" / "events.csv", dtype=str)
    t = int(events["timestamp"].astype(int).max()) + 100
    items, users = events["item_id"].unique()[:8], events["user_id"].unique()[:30]
    rows = [{"user_id": NEW_USER, "item_id": i, "rating": 5, "timestamp": t + n}
            for n, i in enumerate(items)]  # fmt: skip
    rows += [{"user_id": u, "item_id": NEW_ITEM, "rating": 5, "timestamp": t + 50 + n}
             for n, u in enumerate(users)]  # fmt: skip
    rows += [
        {"user_id": NEW_USER, "item_id": NEW_ITEM, "rating": 5, "timestamp": t + 99},
        {"user_id": LONE_USER, "item_id": LONE_ITEM, "rating": 4, "timestamp": t + 120},
    ]
    return rows


def new_items(root: Path) -> Path:
    """The side-table rows of the batch's new items (validation: every item is in the table)."""
    return write_batch(
        root,
        "batch_items.csv",
        [
            {"item_id": NEW_ITEM, "title": "Brand New Thing (2020)", "genres": "Drama"},
            {"item_id": LONE_ITEM, "title": "Lone Item (2021)", "genres": "Comedy"},
        ],
    )


def update(root: Path, params: str, batch: Path, *more: str) -> int:
    """``recsys update`` of ``batch`` with its new items' rows, against the project's registry."""
    return recsys("update", "--params", params, "--registry", "registry", "--batch", batch,
                  "--items", new_items(root), *more)  # fmt: skip


def state(root: Path) -> dict[str, str]:
    """sha256 of every file the update may write (registry, accepted batches, update models)."""
    out = {}
    for base in ("registry", "data/raw/batches", "models/update", "data/processed"):
        for f in sorted((root / base).rglob("*")) if (root / base).exists() else []:
            if f.is_file() and f.name != ".lock":
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("update-project")
    built = run_pipeline(root, mp)
    mp.chdir(root)  # recsys update works in the project directory, as the CLI and Dagster do
    yield built
    mp.undo()


@pytest.fixture(scope="module")
def updated(project: Project) -> Updated:
    root = project.root
    before = Registry(root / "registry").champion()
    assert before is not None
    batch = write_batch(root, "batch.csv", good_batch(root))
    items = new_items(root)
    rc = recsys("update", "--params", "params.yaml", "--registry", "registry",
                "--batch", batch, "--items", items, "--promote")  # fmt: skip
    assert rc == 0
    outcome = json.loads((root / "reports" / "update" / "latest.json").read_text())
    build = json.loads((root / "reports" / "bento" / "build.json").read_text())
    return Updated(project, before.tag, outcome, build["bento"], build["catalogue"])


@pytest.fixture(scope="module")
def models(updated: Updated) -> fixtures.StoredModels:
    """The updated champion's bento is what tests/serving/conftest.py's ``server`` serves."""
    champion = Registry(updated.project.root / "registry").champion()
    assert champion is not None
    return fixtures.StoredModels(updated.project.home, champion.tag, updated.catalogue)


@pytest.fixture(scope="module")
def bento(updated: Updated) -> str:
    return updated.bento


def champion_model(project: Project) -> TwoStage:
    record = Registry(project.root / "registry").champion()
    assert record is not None
    model = store.load_model(record.tag, home=project.home)
    assert isinstance(model, TwoStage)
    return model


# --- bad input first: each leaves every file as it was ----------------------------------------
def test_a_batch_that_fails_validation_changes_nothing(project: Project) -> None:
    root, rows = project.root, good_batch(project.root)
    rows[0]["rating"] = 9  # outside the 1-5 scale
    before = state(root)
    batch = write_batch(root, "bad.csv", rows)
    assert update(root, "params.yaml", batch) == 1
    report = json.loads((root / "reports/update/validation/report.json").read_text())
    assert any(o["check"] == "rating_range" and not o["success"] for o in report["outcomes"])
    assert state(root) == before


def test_a_champion_from_other_data_is_refused(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """The source lost rows the champion trained on: its data is no ancestor of the new."""
    root = project.root
    events = pd.read_csv(root / "raw" / "events.csv", dtype=str)
    events.iloc[40:].to_csv(root / "raw" / "trimmed.csv", index=False)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["path"] = str(root / "raw" / "trimmed.csv")
    (root / "other.yaml").write_text(yaml.safe_dump(raw))
    before = state(root)
    batch = write_batch(root, "batch.csv", good_batch(root))
    assert update(root, "other.yaml", batch) == 1
    assert "not from an ancestor of the new data" in capsys.readouterr().err
    assert state(root) == before


# --- the update -------------------------------------------------------------------------------
def test_the_update_is_gated_promoted_and_recorded(updated: Updated) -> None:
    root, outcome = updated.project.root, updated.outcome
    assert outcome["mode"] == "incremental" and outcome["promote"] and outcome["promoted"]
    registry = Registry(root / "registry")
    champion = registry.champion()
    assert champion is not None and champion.tag == outcome["challenger"] != updated.before
    assert champion.previous[0] == updated.before  # `recsys rollback` returns to it
    record = registry.read_decision(champion.tag).context["update"]
    assert record["incremental"] and record["from_champion"] == updated.before
    assert record["data_versions"]["champion"] == "shop-v1"
    assert record["data_versions"]["new"] == outcome["batch"]["data_version"]
    assert record["lineage"]["updates"] == 1
    assert record["models"]["twotower"]["method"] == "warm_start"
    assert record["models"]["ease"]["method"] == "refit"  # a new item: no content path
    assert record["models"]["twotower"]["new_items"] == 2
    # the batch is kept with the source: a full retrain learns from it too
    params = params_from(Path("params.yaml"))
    full = sources.load_source(params.data)
    raw = pd.read_csv(root / "raw" / "events.csv", dtype=str)
    assert len(full.interactions) == len(raw) + len(good_batch(root))
    assert {NEW_ITEM, LONE_ITEM} <= set(full.items["item_id"])  # type: ignore[index]


def test_new_users_and_items_reach_recommend(server: str, updated: Updated) -> None:
    model = champion_model(updated.project)
    assert model.known_users([NEW_USER, LONE_USER]).all()
    assert model.known_items([NEW_ITEM, LONE_ITEM]).all()
    status, body = package.http("POST", f"{server}/recommend", {"user_id": NEW_USER, "k": 10})
    assert status == 200 and body["fallback"] is None, body
    want, _ = model.recommend([NEW_USER], k=10)
    assert [i["item_id"] for i in body["items"]] == [i for i in want[0].tolist() if i]
    assert body["model_tag"] == updated.outcome["challenger"]
    # the new item, recommended by the served ranking to users who have not taken it yet
    users = model.vocab.user_ids
    top, _ = model.recommend(users, k=10)
    takers = users[(top == NEW_ITEM).any(axis=1)]
    assert len(takers)
    status, body = package.http("POST", f"{server}/recommend", {"user_id": takers[0], "k": 10})
    assert status == 200 and NEW_ITEM in [i["item_id"] for i in body["items"]], body


def test_a_full_retrain_that_is_due_is_said_not_run(
    updated: Updated, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``update.max_updates: 1`` the next batch is validated and kept for the full run,
    and nothing else changes: no challenger, the champion stays."""
    root = updated.project.root
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["update"] = {"max_updates": 1}
    (root / "strict.yaml").write_text(yaml.safe_dump(raw))
    before = state(root)
    assert recsys("update", "--params", "strict.yaml", "--registry", "registry", "--plan") == 4
    plan = json.loads(capsys.readouterr().out)
    assert plan["mode"] == "full" and "1 updates are chained" in plan["reasons"][0]
    assert state(root) == before  # --plan changes nothing
    events = pd.read_csv(root / "raw" / "events.csv", dtype=str)
    t = int(events["timestamp"].astype(int).max()) + 5000
    rows = [{"user_id": "user-99999-x", "item_id": i, "rating": 4, "timestamp": t + n}
            for n, i in enumerate(events["item_id"].unique()[:3])]  # fmt: skip
    batch = write_batch(root, "more.csv", rows)
    assert (
        recsys("update", "--params", "strict.yaml", "--registry", "registry", "--batch", batch) == 4
    )
    out = capsys.readouterr().out
    assert "a full retrain is due" in out and "the batch was accepted" in out
    after = state(root)
    added = sorted(set(after) - set(before))
    assert len(added) == 1 and added[0].startswith("data/raw/batches/")
    assert {k: v for k, v in after.items() if k not in added} == before
    np.testing.assert_equal(champion_model(updated.project).known_users(["user-99999-x"]), [False])
