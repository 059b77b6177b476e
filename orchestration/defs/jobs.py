"""Jobs: asset selections only."""

from __future__ import annotations

import dagster as dg

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.all(),
    description="The whole pipeline: validate the raw data, prepare, preprocess, train every "
    "candidate, evaluate, gate and promote. DVC skips every stage whose inputs are unchanged.",
    # One process for the run: the steps are serial anyway (every DVC step holds the `dvc`
    # pool) and the heavy work runs in the `recsys` subprocesses DVC starts, so a process per
    # step would only add Dagster's start-up time to each of them.
    executor_def=dg.in_process_executor,
)
