"""The gate's inputs: ``ModelEvaluation`` (one model's evaluation on one split, and its cost),
the split fingerprints that tell whether two evaluations are comparable, and slice means."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recsys.errors import DataError
from recsys.fingerprint import mapping_digest
from recsys.schema import id_array

if TYPE_CHECKING:
    import pandas as pd

    from recsys.evaluation.evaluate import TopKResult
    from recsys.gate.cost import LatencyStats

LOWER_IS_BETTER: Final = frozenset({"rmse", "mae"})
"""Metrics where smaller is better; every other metric is higher-is-better."""
EVALUATION_FORMAT: Final = 1


def higher_is_better(metric: str) -> bool:
    """``ndcg@10`` -> True, ``rmse`` -> False (the name before ``@`` decides)."""
    return metric.split("@")[0] not in LOWER_IS_BETTER


@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """What the gate reads about one model: its evaluation on one split, and its cost."""

    tag: str
    """The model's registry tag (``name:version``)."""
    split_fingerprint: str
    """``split_fingerprint(train=..., test=...)`` of the split it was evaluated on."""
    metrics: dict[str, float]
    """Means over users, e.g. ``{"ndcg@10": 0.19, "recall@10": 0.18}``."""
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    """[n_users] float64 per metric, row i = ``user_ids[i]`` (for the paired bootstrap)."""
    user_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """[n_users] evaluated raw user ids."""
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    """Slice name -> metric means on that slice (``slice_metrics`` computes them)."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    model_bytes: int | None = None
    ranker_metrics: dict[str, float] | None = None
    """For a two-stage ranking: its ranker's metrics when it ranks every item (same split);
    None for a single model."""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_topk(
        cls,
        result: TopKResult,
        *,
        tag: str,
        split_fingerprint: str,
        slices: Mapping[str, np.ndarray | Sequence[int]] | None = None,
        latency: LatencyStats | None = None,
        model_bytes: int | None = None,
    ) -> ModelEvaluation:
        """From an ``evaluate_topk`` result; ``slices`` maps a name to the raw user ids in it."""
        return cls(
            tag=tag,
            split_fingerprint=split_fingerprint,
            metrics=dict(result.metrics),
            per_user={k: np.asarray(v, dtype=np.float64) for k, v in result.per_user.items()},
            user_ids=id_array(result.user_ids),
            slices={
                name: slice_metrics(result.per_user, result.user_ids, members)
                for name, members in (slices or {}).items()
            },
            latency_p50_ms=None if latency is None else latency.p50_ms,
            latency_p99_ms=None if latency is None else latency.p99_ms,
            model_bytes=model_bytes,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, per-user arrays included (the champion's are needed next time)."""
        return {
            "format_version": EVALUATION_FORMAT,
            "tag": self.tag,
            "split_fingerprint": self.split_fingerprint,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "per_user": {k: np.asarray(v).tolist() for k, v in self.per_user.items()},
            "user_ids": np.asarray(self.user_ids).tolist(),
            "slices": {k: dict(v) for k, v in self.slices.items()},
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "model_bytes": self.model_bytes,
            "ranker_metrics": self.ranker_metrics,
        }

    @classmethod
    def from_dict(
        cls, raw: Any, where: str = "evaluation", *, tag: str | None = None
    ) -> ModelEvaluation:
        """Inverse of ``to_dict``; also reads the metrics file of ``recsys evaluate``.

        That file names its split by per-table checksums (``split``), keeps ``user_ids`` inside
        ``per_user`` and has no tag: ``tag`` (the registry tag of the evaluated model) fills it.

        Raises:
          DataError: naming the field when one is missing or malformed.
        """
        if not isinstance(raw, dict):
            raise DataError("an evaluation must be a JSON object", where=where)
        if raw.get("format_version") != EVALUATION_FORMAT:
            raise DataError(
                f"unsupported evaluation format {raw.get('format_version')!r}",
                where=where,
                fix="write it with `recsys evaluate` or ModelEvaluation.to_dict()",
            )
        raw = dict(raw)
        per_user = dict(raw.get("per_user") or {})
        if "user_ids" in per_user:  # the `recsys evaluate` metrics file
            raw["user_ids"] = per_user.pop("user_ids")
            split = raw.get("split")
            if isinstance(split, dict) and split:
                raw["split_fingerprint"] = checksums_fingerprint(split)
            latency = raw.get("latency_ms") or {}
            raw.setdefault("latency_p50_ms", latency.get("p50"))
            raw.setdefault("latency_p99_ms", latency.get("p99"))
            raw.setdefault("model_bytes", raw.get("size_bytes"))
            if isinstance(raw.get("two_stage"), dict):
                raw.setdefault("ranker_metrics", raw["two_stage"].get("ranker_metrics"))
        raw["tag"] = tag or raw.get("tag")
        for key in ("tag", "split_fingerprint"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                fix = "pass the model's registry tag (--tag)" if key == "tag" else None
                raise DataError(f"field '{key}' must be a non-empty string", where=where, fix=fix)
        try:
            return cls(
                tag=raw["tag"],
                split_fingerprint=raw["split_fingerprint"],
                metrics={str(k): _float(v) for k, v in (raw.get("metrics") or {}).items()},
                per_user={str(k): np.asarray(v, dtype=np.float64) for k, v in per_user.items()},
                user_ids=id_array(raw.get("user_ids") or np.zeros(0, dtype=np.int64)),
                slices={
                    str(s): {str(k): _float(v) for k, v in m.items()}
                    for s, m in (raw.get("slices") or {}).items()
                },
                latency_p50_ms=_opt_float(raw.get("latency_p50_ms")),
                latency_p99_ms=_opt_float(raw.get("latency_p99_ms")),
                model_bytes=None if raw.get("model_bytes") is None else int(raw["model_bytes"]),
                ranker_metrics=None
                if raw.get("ranker_metrics") is None
                else {str(k): _float(v) for k, v in raw["ranker_metrics"].items()},
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"malformed evaluation: {exc}", where=where) from exc


def _float(value: Any) -> float:
    # JSON has no NaN literal we write; None stands for a metric that could not be computed.
    return math.nan if value is None else float(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def slice_metrics(
    per_user: Mapping[str, np.ndarray], user_ids: np.ndarray, members: np.ndarray | Sequence[int]
) -> dict[str, float]:
    """Metric means over the evaluated users that belong to a slice (NaN when none do).

    Args:
      per_user: metric -> [n_users] values, row i = ``user_ids[i]``.
      user_ids: [n_users] raw ids.
      members: raw user ids of the slice (e.g. users with few training interactions).
    """
    mask = np.isin(np.asarray(user_ids), np.asarray(members))
    if not mask.any():
        return {k: math.nan for k in per_user}
    return {k: float(np.asarray(v)[mask].mean()) for k, v in per_user.items()}


def checksums_fingerprint(checksums: Mapping[str, str]) -> str:
    """One fingerprint from per-table checksums (the ``split`` of a ``recsys evaluate`` file).

    Pass the same value to ``recsys.serving.store.save_model(split_fingerprint=...)``, so that
    promotion can match the model with its gate decision.
    """
    return mapping_digest(checksums)


def split_fingerprint(**tables: pd.DataFrame) -> str:
    """sha256 over the named tables' columns and values: equal only for the same split.

    Example: ``split_fingerprint(train=split.train, test=split.test)``.
    """
    digest = hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        digest.update(f"{name}:{len(frame)}".encode())
        for column in sorted(frame.columns):
            values = frame[column].to_numpy()
            digest.update(f"|{column}:{values.dtype}|".encode())
            if values.dtype == object:
                digest.update("\x1f".join(map(str, values)).encode())
            else:
                digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()
