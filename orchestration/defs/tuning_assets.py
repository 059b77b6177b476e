"""``tuned_settings``: the candidates' settings searched on the validation split (opt-in).

Runs the DVC stage ``tune`` (``recsys tune --in data/processed --out models/tuning``). With
``tuning.enabled: false`` (the default) the stage tunes nothing and records that every
candidate keeps its ``params.yaml`` settings; enabled, each candidate's study runs within the
``tuning`` budget and the metadata shows each one's best validation value, its settings, where
they came from and a chart of the optimisation history (every trial's value, and the best so
far, by trial number).
"""

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from orchestration.defs.config import StageConfig
from orchestration.defs.data_assets import processed_interactions, stage_metadata
from orchestration.defs.plots import image_metadata
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject

TUNE_STAGE = "tune"
TUNING_DIR = ("models", "tuning")


@dg.asset(
    group_name="models",
    kinds={"dvc", "optuna"},
    deps=[processed_interactions],
    pool=DVC_POOL,
    owners=OWNERS,
    description="Each candidate's settings searched on the validation split (DVC stage tune; "
    "opt-in with tuning.enabled in params.yaml): models/tuning/params.yaml.",
)
def tuned_settings(
    context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
) -> dg.MaterializeResult:
    """The tune stage's outcome: best value, settings and source per candidate, and a chart."""
    run = dvc.repro(
        TUNE_STAGE, force=config.force, set_params=config.set_params, log=context.log.info
    )
    out = dvc.path.joinpath(*TUNING_DIR)
    summary = json.loads((out / "tuning.json").read_text(encoding="utf-8"))
    metadata: dict[str, Any] = {
        **stage_metadata(run),
        **tuning_metadata(summary),
        "params file": dg.MetadataValue.path(str(out / "params.yaml")),
    }
    histories = read_histories(out / "trials.csv")
    if histories:
        metadata["optimisation history"] = image_metadata(
            context, history_chart(histories, summary.get("metric", "")), "tuning-history",
            "optimisation history",
        )  # fmt: skip
    return dg.MaterializeResult(data_version=dvc.data_version(TUNE_STAGE), metadata=metadata)


def tuning_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Per candidate: where its settings come from, its best validation value and settings."""
    metric = summary.get("metric") or "metric"
    out: dict[str, Any] = {"tuned": bool(summary.get("budget", {}).get("enabled", True))}
    for name, model in summary.get("models", {}).items():
        out[f"{name}: settings from"] = model.get("skipped") or model["source"]
        if model.get("best_value") is not None:
            out[f"{name}: best validation {metric}"] = float(model["best_value"])
        if model.get("baseline_value") is not None:
            out[f"{name}: params.yaml validation {metric}"] = float(model["baseline_value"])
        out[f"{name}: settings"] = dg.MetadataValue.json(model.get("settings", {}))
        out[f"{name}: trials"] = dg.MetadataValue.json(model.get("trials", {}))
    return out


def read_histories(path: Any) -> dict[str, list[float | None]]:
    """Model -> each trial's value in trial order (None: pruned or failed)."""
    import pandas as pd

    if not path.exists():
        return {}
    table = pd.read_csv(path)
    out: dict[str, list[float | None]] = {}
    for name, rows in table.sort_values("number").groupby("model", sort=False):
        values = rows["value"].tolist()
        out[str(name)] = [None if v is None or math.isnan(v) else float(v) for v in values]
    return out


def history_chart(histories: Mapping[str, Sequence[float | None]], metric: str) -> bytes:
    """One panel per model: each finished trial's value (dots) and the best so far (line),
    x = trial number (the Optuna optimisation-history plot)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(histories), figsize=(6.4, 3.2), dpi=100, squeeze=False
    )  # fmt: skip
    for ax, (name, values) in zip(axes[0], histories.items(), strict=True):
        xs = [i for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        best = [max(ys[: i + 1]) for i in range(len(ys))]
        ax.plot(xs, ys, "o", markersize=3, label="trial")
        ax.step(xs, best, where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
