"""Launchpad run config of the assets: typed overrides, never a second set of defaults.

Tunables live in ``params.yaml`` (the source of record that DVC tracks in ``dvc.lock``). A
launchpad override of a tunable (``set_params``) is therefore *written into* ``params.yaml``
(comments kept) and checked by the strict loader before the stage runs: a Dagster run then
produces exactly the artifacts ``dvc repro`` produces from the same tree, and ``dvc.lock``
records the value used. An invalid override fails the step and leaves ``params.yaml`` as it was.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class StageConfig(dg.Config):
    """Run config of an asset that reproduces DVC stages."""

    force: bool = False
    """Re-run the stage even when DVC finds its code, data and params unchanged
    (``dvc repro --force``), e.g. to re-measure a training time."""
    set_params: list[str] = Field(default_factory=list)
    """``KEY=VALUE`` overrides of ``params.yaml`` applied before the stage runs, the key a
    dotted path (``models.neumf.epochs=5``, ``preprocess.split.test_fraction=0.1``), the value
    YAML (``models.neumf.mlp_units=[32,16]``). Unknown keys and wrong types are refused."""
