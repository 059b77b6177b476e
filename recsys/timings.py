"""What a pipeline step measured, kept beside its outputs and never in them.

The DVC-tracked outputs of ``recsys train``, ``evaluate`` and ``compose`` (saved models,
``train.json``, the metrics files) are a function of code, params and data alone, so a rerun
on the same machine writes the same bytes and leaves ``dvc.lock`` as it was. What a run
measures (fit, epoch and validation seconds, throughput, recommend seconds, single-request
latency, the machine and its load) goes to an untracked record that the same command writes
(atomically), one per command and model::

    reports/timings/train-<family>.json              # recsys train: TrainResult.timings()
    reports/timings/evaluate-<family>.json           # recsys evaluate: recommend s, latency_ms
    reports/timings/evaluate-twostage-<family>.json  # recsys compose: the served ranking's

``reports/`` is git-ignored and no stage lists it in ``dvc.yaml``. A record names the output it
measured by content (``output_sha256``): ``read_timings`` returns it only for those very bytes,
so a reader shows the measurement of the run that wrote an output, or ``NOT_MEASURED`` (a
fresh clone, outputs pulled from the DVC cache), never another output's numbers.

Only the standard library is imported at module level: the CLI reads ``TIMINGS_DIR`` when it
starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from recsys.hardware import hardware

TIMINGS_DIR: Final = Path("reports") / "timings"
"""Where the pipeline's commands write their records (``--timings``), relative to the project."""
TIMINGS_FORMAT: Final = 1
NOT_MEASURED: Final = "not measured in this run"
TIMING_KEYS: Final = frozenset(
    {"fit_seconds", "samples_per_second", "train_seconds", "epoch_train_seconds", "eval_seconds"}
)
"""Keys of a ``TrainResult`` (its fields, its ``extra``, a part's or member's summary inside
it) that measure wall-clock time, not the model: the only ones in which two fits with the same
seed on the same data differ."""


def split_timings(facts: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``facts`` without its ``TIMING_KEYS`` (at any depth), and those keys alone, nested as
    they were: ``{"epochs": 3, "extra": {"train_seconds": 1.2}}`` gives
    ``({"epochs": 3, "extra": {}}, {"extra": {"train_seconds": 1.2}})``."""
    kept: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for key, value in facts.items():
        if key in TIMING_KEYS:
            timings[key] = value
        elif isinstance(value, Mapping):
            kept[key], inner = split_timings(value)
            if inner:
                timings[key] = inner
        else:
            kept[key] = value
    return kept, timings


@dataclass(frozen=True)
class Timings:
    """``<timings dir>/<command>-<family>.json``: what one command measured writing ``output``."""

    command: str
    """``train`` or ``evaluate`` (``recsys compose`` evaluates the served ranking)."""
    family: str
    """The model's family: ``ease``, ``twostage-ease``, ..."""
    output: str
    """The output measured, as the command was given it (a model directory, a metrics file)."""
    output_sha256: str
    """``tree_digest`` of ``output`` as written: ties the record to those bytes."""
    measured: dict[str, Any]
    hardware: dict[str, Any]
    """``recsys.hardware.hardware()``: CPU, cores, memory, load average, GPUs."""
    measured_at: str
    """UTC, ISO 8601."""
    format_version: int = TIMINGS_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, path: Path) -> Timings:
        """The record in ``path``, read strictly (``recsys.data.records.read_record``)."""
        from recsys.data.records import read_record

        fix = "run the command again, or delete the record"
        return read_record(cls, path, what="timing record", fix=fix, version=TIMINGS_FORMAT)

    def value(self, *keys: str) -> Any:
        """``measured[keys[0]][keys[1]]...``; None where a key is missing."""
        found: Any = self.measured
        for key in keys:
            found = found.get(key) if isinstance(found, Mapping) else None
        return found


def timings_path(directory: Path, command: str, family: str) -> Path:
    return Path(directory) / f"{command}-{family}.json"


def write_timings(
    directory: Path | None, command: str, family: str, output: Path, measured: Mapping[str, Any]
) -> Timings | None:
    """Record ``measured`` for ``output`` (already written) with the hardware and the time,
    atomically; nothing when ``directory`` is None."""
    if directory is None:
        return None
    from recsys.data import io

    record = Timings(
        command=command,
        family=family,
        output=str(output),
        output_sha256=_digest(output),
        measured=dict(measured),
        hardware=hardware(),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    io.write_json(record.to_dict(), timings_path(directory, command, family))
    return record


def read_timings(directory: Path, command: str, family: str, output: Path) -> Timings | None:
    """The record of ``command`` for ``family`` when it measured ``output`` as it is now
    (same content); None when there is none (show ``NOT_MEASURED``)."""
    path = timings_path(directory, command, family)
    if not path.is_file() or not Path(output).exists():
        return None
    record = Timings.read(path)
    return record if record.output_sha256 == _digest(output) else None


def _digest(output: Path) -> str:
    from recsys.fingerprint import tree_digest

    return tree_digest([Path(output)])
