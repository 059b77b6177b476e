"""The whole graph materialized on tiny data through DVC, a re-run that DVC skips, and a
corrupted raw file that the blocking check stops (RELIABILITY.md 1-3, 17, 26, 28)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from orchestration.definitions import ASSET_CHECKS, build_assets
from orchestration.defs.checks import check_raw_interactions
from orchestration.defs.resources import DvcProject
from recsys import candidates
from tests.orchestration.conftest import RAW_FILE, make_project

pytestmark = pytest.mark.slow  # DVC and the recsys CLI in subprocesses: ~1 min for the module

DVC_ASSETS = (
    "prepared_interactions",
    "processed_interactions",
    "tuned_settings",  # tuning off (the default): records that params.yaml's settings stand
    "mostpop_model",
    "ease_model",
    "bpr_model",
    "model_metrics",
    "served_rankings",
)


def materialize(root: Path) -> dg.ExecuteInProcessResult:
    dvc = DvcProject(root=str(root))
    families = candidates.check_candidates(dvc.params().models)
    return dg.materialize(
        [*build_assets(families, dvc), *ASSET_CHECKS],
        resources={"dvc": dvc},
        # The bento needs a two-tower retriever (TensorFlow) and a served round trip: the
        # serving tests cover build and infra validation; here everything up to the champion.
        selection=dg.AssetSelection.all()
        - dg.AssetSelection.assets("recommender_bento", "bento_image")
        - dg.AssetSelection.groups("update"),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        out[mat.asset_key.to_user_string()] = {
            k: getattr(v, "value", v) for k, v in mat.metadata.items()
        } | {
            "__version": mat.tags.get("dagster/data_version"),
            "__code_version": mat.tags.get("dagster/code_version"),
        }
    return out


def validation_runs(root: Path) -> list[str]:
    """The report directories ``recsys data validate``/``prepare`` wrote: one per validation."""
    return sorted(p.name for p in (root / "reports" / "validation").iterdir() if p.is_dir())


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f.relative_to(path).as_posix().encode() + f.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("dagster") / "repo")


@pytest.fixture(scope="module")
def first_run(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dg.ExecuteInProcessResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        return materialize(project)


def test_whole_graph_materializes_through_dvc(project: Path, first_run) -> None:
    assert first_run.success
    mats = materialized(first_run)
    assert set(mats) == {"raw_interactions", *DVC_ASSETS, "gate_decision", "champion_model"}
    assert checks(first_run) == {"check_raw_interactions": True, "check_metric_gate": True}
    # Issue #16, part 2: the check validated; the prepare stage reused its verdict.
    assert len(validation_runs(project)) == 1
    assert validation_runs(project)[0].endswith("-pass")
    # Each materialization records the code version of the code its DVC stage runs.
    dvc = DvcProject(root=str(project))
    assert mats["prepared_interactions"]["__code_version"] == dvc.code_version(["prepare"])
    assert all(m["__code_version"] for m in mats.values())
    # The gate's chart is a short image link shown on the asset page (not a data URI hidden
    # behind "Show Markdown" on a persistent instance; the ephemeral one embeds it).
    assert str(mats["gate_decision"]["ndcg@10 served, by candidate"]).startswith(
        "![served rankings]("
    )
    # Data versions are the DVC content hashes that dvc.lock records.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    processed_md5 = lock["preprocess"]["outs"][0]["md5"]
    assert mats["processed_interactions"]["__version"] == processed_md5
    assert mats["ease_model"]["__version"] == lock["train@ease"]["outs"][0]["md5"]
    for family in ("mostpop", "ease", "bpr"):
        assert (project / "models" / family / "train.json").is_file()
        assert (project / "models" / "metrics" / f"{family}.json").is_file()
        # the served ranking over each candidate, retrieved by BPR (serving.retriever)
        assert (project / "models" / f"twostage-{family}" / "twostage.json").is_file()
        served = json.loads(
            (project / "models" / "metrics" / f"twostage-{family}.json").read_text()
        )
        assert served["two_stage"]["retriever"] == "bpr"
        # what the stages measured: beside their outputs, untracked (recsys.timings)
        assert (project / "reports" / "timings" / f"train-{family}.json").is_file()
        assert (project / "reports" / "timings" / f"evaluate-twostage-{family}.json").is_file()
    assert isinstance(mats["ease_model"]["fit seconds"], float)  # this run measured it
    assert "| p99 ms |" in str(mats["model_metrics"]["metrics"])
    assert mats["gate_decision"]["challenger"].startswith("recsys-twostage:")
    assert mats["processed_interactions"]["rows: test"] > 0
    # Dagster's standard table metadata (issue #16): row counts and the prepared columns.
    rows = mats["prepared_interactions"]["dagster/row_count"]
    assert rows == mats["prepared_interactions"]["rows: interactions"] > 0
    assert mats["processed_interactions"]["dagster/row_count"] > 0
    columns = mats["prepared_interactions"]["dagster/column_schema"].columns  # type: ignore[attr-defined]
    assert {"user_id", "item_id"} <= {c.name for c in columns}
    assert "ndcg@10" in str(mats["model_metrics"]["metrics"])
    # First run: no champion, only absolute thresholds; the best candidate is promoted.
    assert mats["gate_decision"]["promote"] is True
    assert mats["champion_model"]["champion"] == mats["gate_decision"]["challenger"]
    assert (project / "data" / "registry" / "champion.json").is_file()


def test_unchanged_rerun_skips_every_stage(project: Path, first_run) -> None:
    assert first_run.success
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        again = materialize(project)
    assert again.success
    mats, before = materialized(again), materialized(first_run)
    for name in DVC_ASSETS:
        assert mats[name]["dvc skipped (unchanged)"] != "none", name
        assert mats[name]["__version"] == before[name]["__version"], name
    assert mats["gate_decision"]["already champion"] is True
    # The accepted data's profile is now the drift baseline: validated once more, not twice.
    assert len(validation_runs(project)) == 2
    # Now the baseline profile exists too: the same input is not validated a third time.
    reused = check_raw_interactions(
        dg.build_asset_check_context(), dvc=DvcProject(root=str(project))
    )
    assert reused.passed
    assert str(reused.metadata["summary"].value).startswith("identical input already validated")
    assert mats["champion_model"]["changed"] is False


def test_corrupted_raw_file_stops_at_the_blocking_check(project: Path, first_run) -> None:
    assert first_run.success
    copy = project.parent / "corrupted"
    shutil.copytree(project, copy, symlinks=True)
    prepared, champion = copy / "data" / "prepared", copy / "data" / "registry" / "champion.json"
    before = tree_digest(prepared), champion.read_bytes(), tree_digest(copy / "models")
    raw = copy / RAW_FILE
    lines = raw.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",-7,9.5,1456126515"  # negative item id, rating > 5
    raw.write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        result = materialize(copy)
    assert not result.success
    assert checks(result) == {"check_raw_interactions": False}
    assert set(materialized(result)) == {"raw_interactions"}  # nothing downstream
    assert validation_runs(copy)[-1].endswith("-fail")
    after = tree_digest(prepared), champion.read_bytes(), tree_digest(copy / "models")
    assert after == before


def test_worse_challenger_is_rejected_and_the_champion_stays(project: Path, first_run) -> None:
    assert first_run.success
    champion_tag = materialized(first_run)["champion_model"]["champion"]
    copy = project.parent / "worse"
    shutil.copytree(project, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    # the weaker candidates alone challenge the champion (BPR stays: it retrieves)
    params["models"] = {"mostpop": {}, "bpr": params["models"]["bpr"]}
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    champion = copy / "data" / "registry" / "champion.json"
    before = champion.read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        result = materialize(copy)
    assert not result.success
    assert checks(result) == {"check_raw_interactions": True, "check_metric_gate": False}
    mats = materialized(result)
    assert mats["gate_decision"]["promote"] is False
    assert mats["gate_decision"]["champion"] == champion_tag
    assert "champion_model" not in mats
    assert champion.read_bytes() == before
    # The next (e.g. nightly) run has no new challenger: the recorded verdict stands, the run
    # succeeds and nothing is promoted.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        again = materialize(copy)
    assert again.success
    mats = materialized(again)
    assert mats["gate_decision"]["already rejected"] is True
    assert mats["champion_model"]["changed"] is False
    assert mats["champion_model"]["champion"] == champion_tag
    assert champion.read_bytes() == before


def test_bento_image_is_opt_in_and_says_why_it_built_nothing(project: Path, first_run) -> None:
    """Issue 18: with params.yaml's ``container.enabled`` false (the quick start) the image
    asset materializes without building, and its metadata names the setting that turns it on."""
    dvc = DvcProject(root=str(project))
    assert not dvc.params().container.enabled
    families = candidates.check_candidates(dvc.params().models)
    result = dg.materialize(
        build_assets(families, dvc),
        resources={"dvc": dvc},
        selection=dg.AssetSelection.assets("bento_image"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = materialized(result)["bento_image"]
    assert meta["built"] is False
    assert "container.enabled" in str(meta["reason"])
    assert not (project / "reports" / "bento" / "image.json").exists()


def test_the_update_job_gates_a_batch_without_a_full_retrain(project: Path, first_run) -> None:
    """Issue 19: ``incremental_update`` (update_job) on a batch of a new user's interactions:
    EASE and popularity fold the user in, BPR is refitted; the challenger is gated against
    the champion and, here, rejected (a gain floor no model meets), so the champion stays and
    no bento is built; the materialization and the recorded decision say what was done."""
    from orchestration.defs.jobs import update_job
    from orchestration.defs.update_assets import incremental_update

    assert first_run.success
    copy = project.parent / "update"
    shutil.copytree(project, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["gate"]["min_gain"] = 0.99  # the challenger is rejected: no bento to build here
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = pd.read_csv(copy / RAW_FILE)
    items = log["item_id"].value_counts().index[:12]
    t = int(log["timestamp"].max()) + 60
    batch = pd.DataFrame(
        {"user_id": 990001, "item_id": items, "rating": 4.0, "timestamp": t + np.arange(12)}
    )
    (copy / "data" / "incoming").mkdir(parents=True)
    batch.to_csv(copy / "data" / "incoming" / "b1.csv", index=False)
    champion = copy / "data" / "registry" / "champion.json"
    before = champion.read_bytes()
    dvc = DvcProject(root=str(copy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(project.parent / "bentoml"))
        result = dg.materialize(
            [incremental_update, *ASSET_CHECKS],
            resources={"dvc": dvc},
            selection=update_job.selection,
            run_config={
                "ops": {"incremental_update": {"config": {"batch": "data/incoming/b1.csv"}}}
            },
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    assert result.success
    assert checks(result) == {"check_update_bento": True}
    mats = materialized(result)["incremental_update"]
    assert mats["mode"] == "incremental" and mats["promoted"] is False
    assert "REJECT" in str(mats["decision"]) and "incremental update of" in str(mats["decision"])
    methods = {name: m["method"] for name, m in mats["models"].items()}  # type: ignore[attr-defined]
    assert methods["bpr"] == "refit" and set(methods.values()) <= {"fold_in", "refit"}
    assert champion.read_bytes() == before
    kept = list((copy / "data" / "raw" / "batches").glob("*.parquet"))
    assert len(kept) == 1  # the batch is accepted: the next full run learns from it
    assert (copy / "data" / "raw" / "batches.dvc").is_file()  # and versioned with DVC
