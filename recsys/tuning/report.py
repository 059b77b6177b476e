"""What a tuning run leaves behind: every trial as a table, each model's best settings, and the
params file (``models:`` section) that ``recsys benchmark --params`` and the pipeline read.

Files of ``recsys tune --out OUT`` (written one by one, atomically; ``OUT/study.db`` is the
default Optuna storage, which must survive an interruption, so OUT is not swapped as a whole)::

    OUT/trials.csv    model, number, state, value, seconds, best_epoch, params (JSON)
    OUT/trials.md     the same, one table per model, best trial first
    OUT/params.yaml   models: {name: settings}: the settings each model is built with
    OUT/tuning.json   per model: best value, chosen settings, where they came from, trials by
                      state; the validation files (path, sha256, rows), budget and seconds
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from recsys.data import io

__all__ = [
    "PARAMS_FILE",
    "SUMMARY_FILE",
    "TRIALS_CSV",
    "TRIALS_MD",
    "ModelStudy",
    "TrialRow",
    "TuneReport",
    "jsonable",
    "write_report",
]

TRIALS_CSV: Final = "trials.csv"
TRIALS_MD: Final = "trials.md"
PARAMS_FILE: Final = "params.yaml"
SUMMARY_FILE: Final = "tuning.json"
STUDY_DB: Final = "study.db"


def jsonable(value: Any) -> Any:
    """Tuples to lists and numpy scalars to Python numbers (YAML and JSON safe)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else v))


@dataclass(frozen=True)
class TrialRow:
    """One trial of a study, as the results table shows it."""

    model: str
    number: int
    state: str
    """``COMPLETE``, ``PRUNED`` (by the pruner or the wall-clock budget), ``FAIL``, ``RUNNING``."""
    value: float | None
    seconds: float | None
    params: dict[str, Any]
    best_epoch: int | None = None
    note: str = ""
    """Why a trial was pruned or failed, or that it replays the starting settings."""


@dataclass(frozen=True)
class ModelStudy:
    """One model's study: its trials and the settings it hands on."""

    model: str
    study_name: str
    metric: str
    settings: dict[str, Any]
    """Every constructor field the model is to be built with (the starting ones, overlaid
    with the best trial's)."""
    source: str
    """``tuned``: the best trial's settings; ``params``: the starting settings (no trial
    finished, or nothing to tune)."""
    best_value: float | None = None
    baseline_value: float | None = None
    """The starting settings' validation value (the study's first trial), when it ran."""
    trials: tuple[TrialRow, ...] = ()
    seconds: float = 0.0
    """This run's seconds on the model (earlier runs of a resumed study not counted)."""
    skipped: str | None = None
    """Why the model was not tuned (nothing to tune, ...)."""

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("trials")
        return jsonable({**out, "trials": self.states()})


@dataclass(frozen=True)
class TuneReport:
    """Every model of one ``recsys tune`` run."""

    protocol: str
    metric: str
    models: dict[str, ModelStudy]
    files: dict[str, Any]
    """The validation data tuned on (path, sha256, rows per role): never a test file."""
    budget: dict[str, Any]
    storage: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Models of the starting params file not tuned in this run: copied into ``params.yaml``
    as they were, so the file replaces the one the run started from."""

    def table(self) -> pd.DataFrame:
        rows = [
            {
                "model": t.model,
                "number": t.number,
                "state": t.state,
                "value": t.value,
                "seconds": t.seconds,
                "best_epoch": t.best_epoch,
                "params": json.dumps(jsonable(t.params), sort_keys=True),
                "note": t.note,
            }
            for s in self.models.values()
            for t in s.trials
        ]
        columns = ["model", "number", "state", "value", "seconds", "best_epoch", "params", "note"]
        return pd.DataFrame(rows, columns=columns)

    def params_file(self) -> dict[str, Any]:
        """The ``models:`` section: every model's settings (tuned or as given)."""
        models = {name: jsonable(s.settings) for name, s in self.models.items()}
        return {"models": {**models, **{n: jsonable(v) for n, v in self.kept.items()}}}

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "protocol": self.protocol,
                "metric": self.metric,
                "models": {n: s.summary() for n, s in self.models.items()},
                "files": self.files,
                "budget": self.budget,
                "storage": self.storage,
                "seconds": self.seconds,
                **self.extra,
            }
        )

    def markdown(self) -> str:
        lines = [f"# Tuning ({self.protocol}, maximising validation {self.metric})", ""]
        lines += ["| model | source | best | starting settings | trials | seconds |"]
        lines += ["|---|---|---:|---:|---|---:|"]
        for name, s in self.models.items():
            states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(s.states().items()))
            lines.append(
                f"| {name} | {s.skipped or s.source} | {_num(s.best_value)} | "
                f"{_num(s.baseline_value)} | {states or '-'} | {s.seconds:.1f} |"
            )
        for name, s in self.models.items():
            if not s.trials:
                continue
            lines += ["", f"## {name} ({s.study_name})", ""]
            lines += ["| # | state | value | seconds | best epoch | params | note |"]
            lines += ["|---:|---|---:|---:|---:|---|---|"]
            done = [t for t in s.trials if t.value is not None]
            rest = [t for t in s.trials if t.value is None]
            for t in sorted(done, key=lambda t: -float(t.value or 0.0)) + rest:
                params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
                lines.append(
                    f"| {t.number} | {t.state} | {_num(t.value)} | {_num(t.seconds, 1)} | "
                    f"{t.best_epoch or ''} | {params} | {t.note} |"
                )
        return "\n".join(lines) + "\n"


def write_report(report: TuneReport, out: Path) -> None:
    """``trials.csv``, ``trials.md``, ``params.yaml`` and ``tuning.json`` under ``out``."""
    out = Path(out)
    io.write_csv(report.table(), out / TRIALS_CSV)
    io.write_text(report.markdown(), out / TRIALS_MD)
    header = (
        f"# Written by `recsys tune` ({report.protocol}, validation {report.metric}); "
        "read by `recsys benchmark --params` and the pipeline.\n"
    )
    io.write_text(header + yaml.safe_dump(report.params_file(), sort_keys=False), out / PARAMS_FILE)
    io.write_json(report.to_dict(), out / SUMMARY_FILE)


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """The ``models`` section of a params file written by ``write_report`` (or by hand)."""
    from recsys.benchmark.config import load_model_params

    return load_model_params(Path(path))


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def merged(base: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    return {**base, **chosen}
