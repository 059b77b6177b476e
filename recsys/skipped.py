"""The records of a pipeline candidate that was not trained (issue 17, part 2).

A candidate whose data lacks what it needs (``recsys.models.requirements``) is skipped by
``recsys.pipeline.train_candidate``: its model directory holds only ``train.json`` with the
reason under ``skipped``; its metrics file and its served ranking's directory say the same, so
``dvc repro`` runs every stage and the Dagster metadata shows why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from recsys.data import io
from recsys.models.base import META_FILE

__all__ = ["TRAIN_SUMMARY", "read_summary", "skipped_metrics", "skipped_reason", "write_skipped"]

TRAIN_SUMMARY: Final = "train.json"
"""``models/<family>/train.json``: ``recsys.pipeline.TrainSummary``."""
METRICS_FORMAT_VERSION: Final = 1


def read_summary(model_dir: Path) -> dict[str, Any]:
    """The ``train.json`` in ``model_dir`` (a ``DataError`` when it is missing)."""
    summary: dict[str, Any] = io.read_json(io.require_file(Path(model_dir) / TRAIN_SUMMARY))
    return summary


def write_skipped(out: Path, summary: dict[str, Any]) -> None:
    """``out`` replaced atomically by a directory holding only ``summary`` as ``train.json``
    (``summary["skipped"]`` the reason)."""
    with io.atomic_dir(Path(out)) as tmp:
        io.write_json(summary, tmp / TRAIN_SUMMARY)


def skipped_reason(model_dir: Path) -> str | None:
    """Why the candidate in ``model_dir`` was skipped; None: it was trained (a saved model is
    there) or nothing is there yet."""
    model_dir = Path(model_dir)
    if (model_dir / META_FILE).is_file() or not (model_dir / TRAIN_SUMMARY).is_file():
        return None
    reason = read_summary(model_dir).get("skipped")
    return None if reason is None else str(reason)


def skipped_metrics(model_dir: Path, out: Path, split: dict[str, str]) -> dict[str, Any]:
    """The metrics file of a skipped candidate, written to ``out``: no metrics, the reason
    under ``skipped`` (``best_candidate`` finds no value and passes it by)."""
    summary = read_summary(model_dir)
    report = {
        "format_version": METRICS_FORMAT_VERSION,
        "model": summary["train"].get("model"),
        "family": summary["family"],
        "protocol": "topk",
        "skipped": summary.get("skipped"),
        "metrics": {},
        "split": split,
    }
    io.write_json(report, Path(out))
    return report
