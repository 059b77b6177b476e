"""Settings chosen by the machine: ``recsys tune`` (issue 17).

One Optuna study per model (TPE, seeded; median or Hyperband pruning on the per-epoch
validation metric of the Keras models; SQLite storage, so an interrupted study resumes), each
model's search space declared next to its config (``search_space`` on the model class, see
``space``), a budget in trials and in wall seconds, and the protocol's metric on the
validation rows only as the objective. The results: every trial as a table and the chosen
settings as a params file (``models:``) that ``recsys benchmark --params`` and the pipeline read.

Modules: ``space`` (the declarations and their sampling), ``study`` (one model's study),
``run`` (every model on one validation split), ``report`` (the files written). Only
``space`` is imported with the package: model modules import it to declare their spaces, so
the rest (which imports the benchmark and the models) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from recsys.tuning.space import Choice, Float, Int, SearchSpace, search_space_of

_LAZY = {
    "PARAMS_FILE": "report",
    "SUMMARY_FILE": "report",
    "TRIALS_CSV": "report",
    "TRIALS_MD": "report",
    "ModelStudy": "report",
    "TrialRow": "report",
    "TuneReport": "report",
    "pipeline_protocol": "run",
    "tune_models": "run",
    "validation_from_processed": "run",
    "PRUNERS": "study",
    "TuneSettings": "study",
    "open_study": "study",
    "tune_model": "study",
}

__all__ = ["Choice", "Float", "Int", "SearchSpace", "search_space_of", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'recsys.tuning' has no attribute '{name}'")
    return getattr(importlib.import_module(f"recsys.tuning.{module}"), name)
