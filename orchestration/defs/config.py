"""Launchpad run config of the assets: typed overrides, never a second set of defaults.

Tunables live in ``params.yaml`` (the source of record that DVC tracks in ``dvc.lock``); a
launchpad value that changed a model setting without going through ``params.yaml`` would make
a Dagster run produce artifacts that ``dvc repro`` does not, so the run config only says *how*
to run the stages.
"""

from __future__ import annotations

import dagster as dg


class StageConfig(dg.Config):
    """Run config of an asset that reproduces DVC stages."""

    force: bool = False
    """Re-run the stage even when DVC finds its code, data and params unchanged
    (``dvc repro --force``), e.g. to re-measure a training time."""
