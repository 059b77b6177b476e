"""One asset per candidate model family (the keys of ``models`` in params.yaml).

Each runs the DVC stage ``train@<family>``, which writes ``models/<family>/`` (the saved
``Recommender`` plus ``train.json``); the model travels to later assets as that path. The fit
time comes from the stage's untracked timing record (``reports/timings/train-<family>.json``,
``recsys.timings``), when this run measured it. A candidate that cannot learn from the data
(the content model without item content, ...) is skipped by the stage, not trained: its
metadata says so, with the reason.
"""

from collections.abc import Sequence

import dagster as dg

from orchestration.defs.config import StageConfig
from orchestration.defs.data_assets import processed_interactions, stage_metadata
from orchestration.defs.plots import image_metadata, line_chart
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject
from orchestration.defs.tuning_assets import tuned_settings
from recsys import pipeline
from recsys.models.registry import MODELS
from recsys.timings import NOT_MEASURED, TIMINGS_DIR

MODELS_DIR = "models"
CLASSIC_MODULES = ("recsys.models.baselines", "recsys.models.bpr")


def model_asset_name(family: str) -> str:
    return f"{family}_model"


def train_stage(family: str) -> str:
    return f"train@{family}"


def build_model_asset(family: str) -> dg.AssetsDefinition:
    """The asset of candidate ``family``: a thin adapter over DVC stage ``train@<family>``."""
    module = MODELS.get(family, "").partition(":")[0]
    kind = "scipy" if module in CLASSIC_MODULES else "keras"

    @dg.asset(
        name=model_asset_name(family),
        group_name="models",
        kinds={"dvc", kind},
        deps=[processed_interactions, tuned_settings],
        pool=DVC_POOL,
        owners=OWNERS,
        description=f"The '{family}' candidate trained on the processed split "
        f"(DVC stage {train_stage(family)}): models/{family}.",
    )
    def _model(
        context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
    ) -> dg.MaterializeResult:
        run = dvc.repro(
            train_stage(family),
            force=config.force,
            set_params=config.set_params,
            log=context.log.info,
        )
        model_dir = dvc.path / MODELS_DIR / family
        summary = pipeline.read_train_summary(model_dir)
        if summary.get("skipped"):
            return dg.MaterializeResult(
                data_version=dvc.data_version(train_stage(family)),
                metadata={
                    **stage_metadata(run),
                    "skipped": str(summary["skipped"]),
                    "model path": dg.MetadataValue.path(str(model_dir)),
                },
            )
        train, history = summary["train"], summary.get("history", {})
        fit = pipeline.candidate_timings(dvc.path / MODELS_DIR, family, dvc.path / TIMINGS_DIR)
        metadata = {
            **stage_metadata(run),
            "fit seconds": NOT_MEASURED if fit["fit_seconds"] is None else fit["fit_seconds"],
            "epochs": int(train.get("epochs") or 0),
            "best epoch": train.get("best_epoch"),
            "parameters": int(train["n_parameters"]),
            "device": str(train.get("device")),
            "seed": int(train.get("seed", 0)),
            "settings from": str(summary.get("settings_from") or "params.yaml"),
            "model size (MB)": round(summary["size_bytes"] / 1e6, 3),
            "model path": dg.MetadataValue.path(str(model_dir)),
            "data version": dvc.data_version(train_stage(family)).value,
        }
        curves = {k: v for k, v in history.items() if k != "val_epoch" and v}
        if curves:
            png = line_chart(curves, f"{family}: training")
            metadata["training curve"] = image_metadata(
                context, png, f"{family}-training-curve", "training curve"
            )
        return dg.MaterializeResult(
            data_version=dvc.data_version(train_stage(family)), metadata=metadata
        )

    return _model


def build_model_assets(families: Sequence[str]) -> list[dg.AssetsDefinition]:
    return [build_model_asset(f) for f in families]
