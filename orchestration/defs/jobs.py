"""Jobs: asset selections only."""

from __future__ import annotations

import dagster as dg

UPDATE_GROUP = "update"
"""The assets of ``update_job`` (orchestration/defs/update_assets.py), outside the full run."""

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(UPDATE_GROUP),
    description="The whole pipeline: validate the raw data, prepare, preprocess, train every "
    "candidate, evaluate, gate and promote. DVC skips every stage whose inputs are unchanged.",
    # One process for the run: the steps are serial anyway (every DVC step holds the `dvc`
    # pool) and the heavy work runs in the `recsys` subprocesses DVC starts, so a process per
    # step would only add Dagster's start-up time to each of them.
    executor_def=dg.in_process_executor,
)

update_job = dg.define_asset_job(
    name="update_job",
    selection=dg.AssetSelection.groups(UPDATE_GROUP),
    description="One batch of new interactions without a full retrain (`recsys update "
    "--promote`): validate it with the accepted data, update the champion's models, gate, "
    "promote, build and validate the bento. When a full retrain is due instead, the batch is "
    "kept and new_raw_data_sensor starts training_job.",
    executor_def=dg.in_process_executor,
)
