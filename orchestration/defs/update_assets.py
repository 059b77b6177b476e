"""``incremental_update``: ``recsys update --promote`` on one batch (``update_job``, started by
``new_raw_data_sensor`` for each file in ``update.incoming``). The policy (plan, validation,
ancestry, warm start, gate) is ``recsys.update``'s; this adapter runs the command, versions the
registry with DVC, hands the new bento to ``check_update_bento`` and shows the outcome."""

from pathlib import Path

import dagster as dg

from orchestration.defs.jobs import UPDATE_GROUP
from orchestration.defs.promotion_assets import REGISTRY_DIR
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject
from orchestration.defs.serving_assets import BENTO_DIR, HANDOFF_FILE

OUTCOME_FILE = Path("reports") / "update" / "latest.json"
UPDATE_CODE = (
    "recsys/cli",
    "recsys/config*.py",
    "recsys/update.py",
    "recsys/models",
    "recsys/data",
    "recsys/promotion*",
    "recsys/pipeline*",
    "recsys/gate*",
    "recsys/evaluation",
    "recsys/serving",
)
"""The code ``recsys update --promote`` runs (``incremental_update`` is no DVC stage)."""
BUILD_FILE = BENTO_DIR / "build.json"


class BatchConfig(dg.Config):
    """The batch file (and side rows of its new items and users), relative to the project."""

    batch: str
    items: str = ""
    users: str = ""


@dg.asset(group_name=UPDATE_GROUP, kinds={"bentoml", "dvc"}, pool=DVC_POOL, owners=OWNERS)
def incremental_update(
    context: dg.AssetExecutionContext, config: BatchConfig, dvc: DvcProject
) -> dg.MaterializeResult:
    """A challenger from the champion and one batch of new interactions, without a full
    retrain (``recsys update --promote``): validated with the accepted data, warm-started or
    folded in, gated against the champion; promoted with its bento when blessed. Fails when
    the batch fails validation or the champion's data is no ancestor of the new data (nothing
    changed then). When a full retrain is due, the batch is kept and the materialization says
    why; ``new_raw_data_sensor`` then starts ``training_job``."""
    from recsys.data import io

    (dvc.path / OUTCOME_FILE).unlink(missing_ok=True)
    args = ["--batch", config.batch]
    args += ["--items", config.items] if config.items else []
    args += ["--users", config.users] if config.users else []
    result = dvc.run(
        [
            "recsys", "update", "--params", dvc.params_file, "--registry", str(REGISTRY_DIR),
            *args, "--promote", "--out", str(OUTCOME_FILE),
        ],
        log=context.log.info,
    )  # fmt: skip
    if not (dvc.path / OUTCOME_FILE).is_file():  # refused or failed before any outcome
        raise dg.Failure(
            f"recsys update refused the batch {config.batch}:\n{result.stdout[-4000:]}"
        )
    outcome = io.read_json(dvc.path / OUTCOME_FILE)
    if outcome.get("batch", {}).get("file"):  # accepted: the data is versioned with DVC
        batches = str(Path(outcome["batch"]["file"]).parent)
        added = dvc.run(["dvc", "add", "--quiet", batches])
        if added.returncode != 0:
            raise dg.Failure(f"dvc add {batches} failed:\n{added.stderr[-4000:]}")
    if outcome.get("promoted"):
        added = dvc.run(["dvc", "add", "--quiet", str(REGISTRY_DIR)])
        if added.returncode != 0:
            raise dg.Failure(f"dvc add {REGISTRY_DIR} failed:\n{added.stderr[-4000:]}")
        build = io.read_json(dvc.path / BUILD_FILE)
        handoff = {"bento": build["bento"], "champion": build["champion"], "validated": False}
        io.write_json(handoff, dvc.path / BENTO_DIR / HANDOFF_FILE)
    update = outcome.get("context", {}).get("update", {})
    return dg.MaterializeResult(
        metadata={
            "mode": outcome["mode"],
            "reasons": dg.MetadataValue.json(outcome["reasons"]),
            "champion before": outcome.get("champion") or "none",
            "challenger": outcome.get("challenger") or "none",
            "promoted": bool(outcome.get("promoted")),
            "full retrain due": outcome["mode"] == "full",
            "batch": dg.MetadataValue.json(outcome.get("batch", {})),
            "models": dg.MetadataValue.json(update.get("models", {})),
            "data versions": dg.MetadataValue.json(update.get("data_versions", {})),
            "decision": dg.MetadataValue.md(f"```\n{outcome.get('decision') or '-'}\n```"),
            "seconds": outcome.get("seconds", 0.0),
        }
    )
