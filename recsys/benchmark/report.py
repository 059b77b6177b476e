"""What a benchmark run reports: per-fold and per-model outcomes, results.json and results.md."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys import __version__
from recsys.benchmark.config import MARKDOWN_COLUMNS, OUTPUT_FILES
from recsys.benchmark.tuning import Tuning
from recsys.evaluation.evaluate import (
    RatingResult,
)
from recsys.evaluation.harness import (
    ProtocolName,
    Trial,
)
from recsys.models.requirements import cold_user_answer
from recsys.schema import (
    ITEM_ID,
    USER_ID,
)

COLD_ANSWER: Final = {
    "topk": {
        "users": "not evaluated (PROTOCOL.md: nothing to exclude, no history to rank from)",
        "items": "outside the candidates (the training items): each such test row is a miss",
    },
    "loo": {
        "users": "each model's cold-user answer (models[...].cold_users)",
        "items": "each model's score of an item it never saw trained (0 or a content score)",
    },
    "rating": {
        "users": "the mean training rating (evaluate_rating's fallback)",
        "items": "the mean training rating, unless the model scores items from content",
    },
}
"""Protocol -> what answers a test user without training rows, and a test item without any."""


def cold_start_counts(
    train: pd.DataFrame, test: pd.DataFrame, protocol: ProtocolName
) -> dict[str, Any]:
    """How many test users and items of a split had no training interaction, and what
    answered them under ``protocol`` (``COLD_ANSWER``)."""
    users, items = test[USER_ID].drop_duplicates(), test[ITEM_ID].drop_duplicates()
    cold_users = ~users.isin(train[USER_ID])
    cold_items = ~items.isin(train[ITEM_ID])
    cold_rows = ~test[USER_ID].isin(train[USER_ID]) | ~test[ITEM_ID].isin(train[ITEM_ID])
    return {
        "test_users": len(users),
        "cold_users": int(cold_users.sum()),
        "test_items": len(items),
        "cold_items": int(cold_items.sum()),
        "test_rows": len(test),
        "cold_rows": int(cold_rows.sum()),
        "answered_by": dict(COLD_ANSWER[protocol]),
    }


# --- running ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FoldOutcome(Trial):
    """One fit and evaluation of a model (a ``Trial``) on one split or fold."""

    name: str | None = None

    @property
    def recommend_seconds(self) -> float:
        """Time to produce the protocol's output (recommend, score or predict)."""
        return self.output_seconds

    @property
    def n_users(self) -> int:
        ev = self.evaluation
        if isinstance(ev, RatingResult):
            return int(ev.predictions[USER_ID].nunique())
        return ev.n_users

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "fold": self.name,
            "config": self.config,
            "metrics": dict(ev.metrics),
            "ci": ev.to_dict()["ci"],
            "n_users": self.n_users,
            **({"n_rows": ev.n_rows} if isinstance(ev, RatingResult) else {}),
            "fit_seconds": self.train.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "train": self.train.summary(),
            "evaluation": {k: v for k, v in ev.to_dict().items() if k not in ("metrics", "ci")},
        }


@dataclass(frozen=True, eq=False)
class ModelOutcome:
    """A model's benchmark: its folds (one for a plain split) and how it was configured."""

    name: str
    protocol: ProtocolName
    config_source: str
    """``defaults``, ``params`` (``models.<name>``) or ``tuned`` (on validation)."""
    tuning: Tuning | None
    folds: tuple[FoldOutcome, ...]
    mean: dict[str, float]
    std: dict[str, float]

    @property
    def studied(self) -> bool:
        """Its settings came from an Optuna study (``recsys benchmark --tune-trials``)."""
        return self.tuning is not None and self.tuning.method.startswith("optuna")

    @property
    def cross_validated(self) -> bool:
        return len(self.folds) > 1 or self.folds[0].name is not None

    @property
    def fit_seconds(self) -> float:
        return round(float(np.mean([f.train.fit_seconds for f in self.folds])), 4)

    @property
    def recommend_seconds(self) -> float:
        return round(float(np.mean([f.recommend_seconds for f in self.folds])), 4)

    @property
    def samples_per_second(self) -> float | None:
        rates = [f.train.samples_per_second for f in self.folds]
        known = [r for r in rates if r is not None]
        return round(float(np.mean(known)), 1) if known else None

    def summary(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        last = self.folds[-1]
        out: dict[str, Any] = {
            "model": self.name,
            "protocol": self.protocol,
            "output": OUTPUT_FILES[self.protocol],
            "config": last.config,
            "config_source": self.config_source,
            "tuning": None if self.tuning is None else self.tuning.to_dict(),
            "metrics": dict(self.mean),
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "samples_per_second": self.samples_per_second,
            "n_parameters": last.train.n_parameters,
            "device": last.train.device,
            "cold_users": cold_user_answer(self.name),
        }
        if self.cross_validated:
            out["std"] = dict(self.std)
            out["folds"] = [f.summary() for f in self.folds]
        else:
            single = last.summary()
            for key in ("ci", "n_users", "n_rows", "train", "evaluation"):
                if key in single:
                    out[key] = single[key]
        return out


@dataclass(frozen=True, eq=False)
class BenchmarkReport:
    """Every model's outcome plus what is needed to trust and reproduce the numbers."""

    protocol: ProtocolName
    split: dict[str, Any]
    """Role -> file info (one split), or fold -> role -> file info."""
    models: dict[str, ModelOutcome]
    skipped: dict[str, str]
    hardware: dict[str, Any]
    versions: dict[str, str]
    n_items: int
    """Distinct items in train (the topk candidates; first fold)."""
    seconds: float
    cold_start: dict[str, dict[str, Any]]
    """Split or fold name (``test`` for one split) -> ``cold_start_counts``."""

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {
            "protocol": self.protocol,
            "split": self.split,
            "hardware": self.hardware,
            "versions": self.versions,
            "models": {name: m.summary() for name, m in self.models.items()},
            "skipped": dict(self.skipped),
            "cold_start": self.cold_start,
            "seconds": self.seconds,
        }

    def ranked(self) -> list[ModelOutcome]:
        """Best first by the protocol's primary metric (RMSE: lowest first)."""
        key = MARKDOWN_COLUMNS[self.protocol][0][1]
        sign = 1.0 if self.protocol == "rating" else -1.0
        return sorted(self.models.values(), key=lambda m: sign * m.mean[key])

    def markdown(self) -> str:
        """``results.md``: one table in REFERENCE.md's layout, then tuning and hardware."""
        columns = MARKDOWN_COLUMNS[self.protocol]
        models = self.ranked()
        cv = models[0].cross_validated
        head = ["model", *(label for label, _ in columns)]
        head += ["fit s", "recommend s", "samples/s", "parameters"]
        lines = [f"# Benchmark: protocol `{self.protocol}`", "", self._describe_split(models), ""]
        lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for m in models:
            cells = [m.name]
            for j, (_, key) in enumerate(columns):
                cell = f"{m.mean[key]:.4f}"
                if cv and key in m.std:
                    cell += f" ± {m.std[key]:.4f}"
                elif j == 0 and key in m.folds[0].evaluation.ci:
                    lo, hi = m.folds[0].evaluation.ci[key]
                    cell += f" ({lo:.4f}–{hi:.4f})"
                cells.append(cell)
            rate = m.samples_per_second
            cells += [
                _seconds(m.fit_seconds),
                _seconds(m.recommend_seconds),
                "—" if rate is None else f"{rate:,.0f}",
                f"{m.folds[-1].train.n_parameters:,}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        first = columns[0][0]
        unit = "test rows" if self.protocol == "rating" else "evaluated users"
        lines.append(
            f"{first}: mean ± std (population) over folds."
            if cv
            else f"{first}: mean (95% percentile bootstrap CI over {unit})."
        )
        tuned = [f"{m.name} {m.tuning.chosen}" for m in models if m.tuning is not None]
        if tuned:
            lines.append(f"Tuned on the validation files only: {'; '.join(tuned)}.")
        if self.skipped:
            why = "; ".join(f"{name}: {reason}" for name, reason in sorted(self.skipped.items()))
            lines.append(f"Skipped: {why}.")
        lines += self._describe_cold_start(models)
        for m in models:  # the ensemble: a blend, or its best member alone, and why
            if m.tuning is not None and "selection" in m.tuning.chosen:
                lines.append(f"{m.name}: {m.tuning.chosen['selection']['summary']}.")
        devices = sorted({m.folds[-1].train.device for m in models})
        hw = self.hardware
        lines.append(
            f"Hardware: {hw['cpu']} ({hw['nproc']} cores, {hw['memory_gib']} GiB), GPU: "
            f"{', '.join(hw['gpus']) or 'none'}; models ran on {', '.join(devices)}"
            + (
                f", in {hw['workers']} worker processes of {hw['threads_per_worker']} thread(s)."
                if hw.get("workers", 1) > 1
                else "."
            )
        )
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()) + ".")
        return "\n".join(lines) + "\n"

    def _describe_cold_start(self, models: list[ModelOutcome]) -> list[str]:
        """One line: cold test users and items summed over folds, and what answered them."""
        if not self.cold_start:
            return []
        total = {
            key: sum(c[key] for c in self.cold_start.values())
            for key in ("cold_users", "test_users", "cold_items", "test_items")
        }
        answer = next(iter(self.cold_start.values()))["answered_by"]
        line = (
            f"Cold start: {total['cold_users']:,} of {total['test_users']:,} test users and "
            f"{total['cold_items']:,} of {total['test_items']:,} test items had no training "
            f"interaction; users: {answer['users']}; items: {answer['items']}."
        )
        if total["cold_users"] and self.protocol == "loo":
            line += (
                " Cold users: "
                + "; ".join(f"{m.name}: {cold_user_answer(m.name)}" for m in models)
                + "."
            )
        return [line]

    def _describe_split(self, models: list[ModelOutcome]) -> str:
        fold = models[0].folds[0]
        if models[0].cross_validated:
            names = ", ".join(str(f.name) for f in models[0].folds)
            return f"Cross-validation over {len(models[0].folds)} folds ({names})."
        train, test = self.split["train"], self.split["test"]
        text = (
            f"Split: `{Path(train['path']).name}` ({train['rows']:,} rows) / "
            f"`{Path(test['path']).name}` ({test['rows']:,} rows)"
        )
        if isinstance(fold.evaluation, RatingResult):
            return text + f"; {fold.evaluation.n_rows:,} rows predicted."
        text += f"; {fold.n_users:,} evaluated users"
        return text + (f", {self.n_items:,} train items." if self.protocol == "topk" else ".")


def _seconds(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


# --- provenance ---------------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    """Python, recsys, the numeric stack, and the deep-learning libraries this run imported."""
    out = {"python": platform.python_version(), "recsys": __version__}
    for name in ("numpy", "pandas", "scipy", "pyarrow"):
        out[name] = importlib.metadata.version(name)
    for name in ("tensorflow", "keras", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        out["keras_backend"] = str(keras.backend.backend())
    return out
