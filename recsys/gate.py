"""The promotion gate: may a challenger replace the champion? A pure, fail-closed decision.

Like TFX's Evaluator, ``decide`` blesses a model only when every rule passes, and anything it
cannot check counts as a failure:

- no thresholds configured, an empty test set, a missing or NaN metric -> not promoted;
- absolute thresholds (``GateConfig.min_metrics`` / ``max_metrics``) always apply;
- against a champion, both evaluated on the same split (same ``split_fingerprint``, same
  users): the challenger must beat it on the primary metric by ``min_gain``, and the lower
  bound of the paired-bootstrap (1 - alpha) CI of the per-user difference must be above 0;
- slices (cold users, tail items, ...) may not regress beyond their allowed drop;
- cost: p99 single-request ``recommend`` latency and model size within their budgets (a budget
  without a measurement fails);
- a two-stage ranking (what the service answers: ANN retrieval of M candidates, then the
  ranker) may score at most ``max_two_stage_loss`` below its ranker's own full ranking on the
  primary metric, both measured on the same test split.

The first run, with no champion, applies only the absolute rules and says so in the decision.
Every rule, passed or failed, leaves a ``Reason`` (metric, value, threshold) in the decision,
which serialises to JSON (``to_dict`` / ``from_dict``) for the promotion log.

Inputs are ``ModelEvaluation`` records (``from_topk`` builds one from ``evaluate_topk``).
``measure_latency`` and ``dir_size`` measure the cost side; they are the only impure functions
here and ``decide`` never calls them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recsys.config import GateConfig
from recsys.errors import DataError
from recsys.evaluation.metrics import paired_bootstrap

if TYPE_CHECKING:
    import pandas as pd

    from recsys.evaluation.evaluate import TopKResult
    from recsys.models.base import Recommender

LOWER_IS_BETTER: Final = frozenset({"rmse", "mae"})
"""Metrics where smaller is better; every other metric is higher-is-better."""
FIRST_RUN: Final = "first run: only absolute thresholds applied"
EVALUATION_FORMAT: Final = 1


def higher_is_better(metric: str) -> bool:
    """``ndcg@10`` -> True, ``rmse`` -> False (the name before ``@`` decides)."""
    return metric.split("@")[0] not in LOWER_IS_BETTER


# --- inputs -------------------------------------------------------------------------------------
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
            user_ids=np.asarray(result.user_ids, dtype=np.int64),
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
                user_ids=np.asarray(raw.get("user_ids") or [], dtype=np.int64),
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
    return hashlib.sha256(json.dumps(dict(checksums), sort_keys=True).encode()).hexdigest()


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


# --- the decision -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reason:
    """One rule's verdict: ``passed``, and the numbers it compared."""

    rule: str
    """``config``, ``test_set``, ``threshold``, ``primary``, ``split``, ``margin``,
    ``significance``, ``slice``, ``latency``, ``size``, ``two_stage`` or ``champion``."""
    passed: bool
    message: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.rule}: {self.message}"


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict with every reason; ``promote`` only when all of them passed."""

    promote: bool
    challenger: str
    """The challenger's tag."""
    champion: str | None
    """The champion's tag, None on the first run."""
    split_fingerprint: str
    reasons: tuple[Reason, ...]
    config: dict[str, Any] = field(default_factory=dict)
    """The ``GateConfig`` applied (JSON-ready), so the record is self-contained."""

    @property
    def passed(self) -> bool:
        return self.promote

    @property
    def champion_present(self) -> bool:
        return self.champion is not None

    @property
    def failures(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if not r.passed)

    def report(self) -> str:
        """Readable lines: the verdict, then every reason."""
        verdict = "PROMOTE" if self.promote else "REJECT"
        against = f"champion {self.champion}" if self.champion else "no champion"
        lines = [f"gate: {verdict} {self.challenger} (against {against})"]
        lines += [f"  {r.line()}" for r in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "challenger": self.challenger,
            "champion": self.champion,
            "champion_present": self.champion_present,
            "split_fingerprint": self.split_fingerprint,
            "reasons": [dataclasses.asdict(r) for r in self.reasons],
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "decision") -> GateDecision:
        if not isinstance(raw, dict):
            raise DataError("a gate decision must be a JSON object", where=where)
        try:
            reasons = tuple(Reason(**r) for r in raw["reasons"])
            decision = cls(
                promote=raw["promote"],
                challenger=raw["challenger"],
                champion=raw["champion"],
                split_fingerprint=raw["split_fingerprint"],
                reasons=reasons,
                config=dict(raw.get("config") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"malformed gate decision: {exc!r}",
                where=where,
                fix="write it with `recsys gate --out FILE`",
            ) from exc
        if not isinstance(decision.promote, bool) or not isinstance(decision.challenger, str):
            raise DataError("malformed gate decision: 'promote' or 'challenger'", where=where)
        return decision

    def as_metadata(self) -> dict[str, Any]:
        """Flat primitives for asset metadata (one entry per reason)."""
        out: dict[str, Any] = {
            "promote": self.promote,
            "challenger": self.challenger,
            "champion": self.champion or "(none: first run)",
        }
        for i, r in enumerate(self.reasons):
            out[f"reason_{i:02d}_{r.rule}"] = r.line()
        return out


def decide(
    challenger: ModelEvaluation, champion: ModelEvaluation | None, config: GateConfig
) -> GateDecision:
    """Apply every gate rule; promote only when all pass (see the module docstring).

    Args:
      challenger: the new model's evaluation.
      champion: the current champion's evaluation on the same split, or None (first run).
      config: thresholds, margin, bootstrap settings, cost budgets and slices.
    """
    reasons: list[Reason] = []
    reasons += _config_rules(config)
    reasons += _test_set_rules(challenger, config)
    reasons += _absolute_rules(challenger, config)
    reasons += _cost_rules(challenger, config)
    reasons += _two_stage_rules(challenger, config)
    if champion is None:
        reasons.append(Reason("champion", True, FIRST_RUN))
    else:
        reasons += _champion_rules(challenger, champion, config)
    reasons += _slice_rules(challenger, champion, config)
    return GateDecision(
        promote=bool(reasons) and all(r.passed for r in reasons),
        challenger=challenger.tag,
        champion=None if champion is None else champion.tag,
        split_fingerprint=challenger.split_fingerprint,
        reasons=tuple(reasons),
        config=dataclasses.asdict(config),
    )


def _is_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _config_rules(cfg: GateConfig) -> list[Reason]:
    n = len(cfg.min_metrics) + len(cfg.max_metrics)
    if n == 0:
        return [
            Reason(
                "config",
                False,
                "no absolute thresholds configured (gate.min_metrics / gate.max_metrics): "
                "the gate fails closed",
            )
        ]
    return [Reason("config", True, f"{n} absolute threshold(s) configured")]


def _test_set_rules(ev: ModelEvaluation, cfg: GateConfig) -> list[Reason]:
    if ev.n_users == 0:
        return [Reason("test_set", False, "empty test set: no evaluated users", value=0.0)]
    primary = ev.per_user.get(cfg.primary_metric)
    if primary is None or len(primary) != ev.n_users:
        return [
            Reason(
                "test_set",
                False,
                f"per-user values of '{cfg.primary_metric}' missing or not one per user",
                metric=cfg.primary_metric,
            )
        ]
    return [Reason("test_set", True, f"{ev.n_users} evaluated users", value=float(ev.n_users))]


def _absolute_rules(ev: ModelEvaluation, cfg: GateConfig) -> list[Reason]:
    out: list[Reason] = []
    value = ev.metrics.get(cfg.primary_metric)
    if not _is_number(value):
        out.append(
            Reason(
                "primary",
                False,
                f"primary metric '{cfg.primary_metric}' is missing or not finite ({value})",
                metric=cfg.primary_metric,
            )
        )
    for limits, higher in ((cfg.min_metrics, True), (cfg.max_metrics, False)):
        for metric, limit in limits.items():
            out.append(_threshold(ev.metrics.get(metric), metric, limit, higher, "threshold"))
    return out


def _threshold(
    value: float | None, metric: str, limit: float, higher: bool, rule: str, where: str = ""
) -> Reason:
    op = ">=" if higher else "<="
    if not _is_number(value):
        return Reason(
            rule, False, f"{metric}{where} missing or not finite", metric=metric, threshold=limit
        )
    assert value is not None
    ok = value >= limit if higher else value <= limit
    return Reason(
        rule,
        ok,
        f"{metric}{where} = {value:.6g} {'' if ok else 'not '}{op} {limit:.6g}",
        metric=metric,
        value=float(value),
        threshold=float(limit),
    )


def _cost_rules(ev: ModelEvaluation, cfg: GateConfig) -> list[Reason]:
    # A budget without a measurement fails: an unmeasured model is not known to fit it.
    out = []
    if cfg.max_latency_p99_ms is not None:
        limit = cfg.max_latency_p99_ms
        out.append(_threshold(ev.latency_p99_ms, "latency_p99_ms", limit, False, "latency"))
    if cfg.max_model_bytes is not None:
        size = None if ev.model_bytes is None else float(ev.model_bytes)
        out.append(_threshold(size, "model_bytes", float(cfg.max_model_bytes), False, "size"))
    return out


def _two_stage_rules(ev: ModelEvaluation, cfg: GateConfig) -> list[Reason]:
    """The served two-stage ranking against its ranker scoring every item (single models: none)."""
    if ev.ranker_metrics is None or cfg.max_two_stage_loss is None:
        return []
    metric, margin = cfg.primary_metric, cfg.max_two_stage_loss
    full, served = ev.ranker_metrics.get(metric), ev.metrics.get(metric)
    if not (_is_number(full) and _is_number(served)):
        return [Reason("two_stage", False, f"{metric} of the two stages or of the ranker missing")]
    assert full is not None and served is not None
    floor = full - margin if higher_is_better(metric) else full + margin
    reason = _threshold(served, metric, floor, higher_is_better(metric), "two_stage", " served")
    detail = f" (ranker alone {full:.6g}, allowed loss {margin:.6g})"
    return [dataclasses.replace(reason, message=reason.message + detail)]


def _champion_rules(ch: ModelEvaluation, champ: ModelEvaluation, cfg: GateConfig) -> list[Reason]:
    metric = cfg.primary_metric
    if ch.split_fingerprint != champ.split_fingerprint:
        return [
            Reason(
                "split",
                False,
                f"challenger and champion were evaluated on different splits "
                f"({ch.split_fingerprint[:12]} vs {champ.split_fingerprint[:12]}): "
                "re-evaluate both on the same split",
            )
        ]
    a, b = ch.per_user.get(metric), champ.per_user.get(metric)
    if b is None or len(b) != champ.n_users or champ.n_users == 0:
        return [Reason("split", False, f"champion has no per-user '{metric}'", metric=metric)]
    if a is None or not np.array_equal(ch.user_ids, champ.user_ids):
        return [
            Reason(
                "split",
                False,
                "challenger and champion were evaluated on different users: "
                "re-evaluate both on the same split",
            )
        ]
    out = [Reason("split", True, f"same split {ch.split_fingerprint[:12]}, {ch.n_users} users")]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        out.append(Reason("margin", False, f"non-finite per-user '{metric}'", metric=metric))
        return out
    sign = 1.0 if higher_is_better(metric) else -1.0
    gain = sign * float(np.mean(a) - np.mean(b))
    ok = gain >= cfg.min_gain
    out.append(
        Reason(
            "margin",
            ok,
            f"{metric} gain over champion {gain:+.6g} {'>=' if ok else '<'} margin "
            f"{cfg.min_gain:.6g}",
            metric=metric,
            value=gain,
            threshold=cfg.min_gain,
        )
    )
    test = paired_bootstrap(
        sign * a, sign * b, n_boot=cfg.n_bootstrap, seed=cfg.seed, alpha=cfg.alpha
    )
    low, high = test.ci
    ok = low > 0
    out.append(
        Reason(
            "significance",
            ok,
            f"paired bootstrap {1 - cfg.alpha:.0%} CI of the {metric} gain "
            f"[{low:+.6g}, {high:+.6g}] (p={test.p_value:.4f}): lower bound "
            f"{'>' if ok else '<='} 0",
            metric=metric,
            value=low,
            threshold=0.0,
        )
    )
    return out


def _slice_rules(
    ch: ModelEvaluation, champ: ModelEvaluation | None, cfg: GateConfig
) -> list[Reason]:
    out = []
    for name, rule in cfg.slices.items():
        where = f" on slice '{name}'"
        value = ch.slices.get(name, {}).get(rule.metric)
        higher = higher_is_better(rule.metric)
        if rule.min_value is not None:
            out.append(_threshold(value, rule.metric, rule.min_value, higher, "slice", where))
        if champ is None:
            if rule.min_value is None:  # still fail closed on a missing slice value
                ok = _is_number(value)
                out.append(
                    Reason(
                        "slice",
                        ok,
                        f"{rule.metric}{where} = {value}"
                        + ("" if ok else ": missing or not finite"),
                        metric=rule.metric,
                        value=value if ok else None,
                    )
                )
            continue
        base = champ.slices.get(name, {}).get(rule.metric)
        if not _is_number(base) or not _is_number(value):
            out.append(
                Reason(
                    "slice",
                    False,
                    f"{rule.metric}{where}: challenger {value}, champion {base}: "
                    "missing or not finite",
                    metric=rule.metric,
                )
            )
            continue
        assert value is not None and base is not None
        drop = (base - value) if higher else (value - base)
        ok = drop <= rule.max_regression
        out.append(
            Reason(
                "slice",
                ok,
                f"{rule.metric}{where}: {value:.6g} vs champion {base:.6g}, regression "
                f"{drop:+.6g} {'<=' if ok else '>'} allowed {rule.max_regression:.6g}",
                metric=rule.metric,
                value=drop,
                threshold=rule.max_regression,
            )
        )
    return out


# --- cost measurements (impure helpers; decide() never calls them) ------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Single-request ``recommend`` latency, in milliseconds."""

    p50_ms: float
    p99_ms: float
    n_requests: int
    max_ms: float = math.nan
    k: int = 10
    """The ``k`` every timed call asked for."""


def measure_latency(
    model: Recommender,
    user_ids: np.ndarray | Sequence[int],
    *,
    k: int = 10,
    n_requests: int = 200,
    warmup: int = 10,
    seed: int = 0,
) -> LatencyStats:
    """Time ``n_requests`` one-user ``recommend`` calls (users drawn with a seed), after warm-up.

    This is the in-process cost of the model: the serving stack adds its own overhead on top.
    """
    users = np.asarray(user_ids, dtype=np.int64).ravel()
    if not len(users) or n_requests < 1:
        raise ValueError("measure_latency needs at least one user and one request")
    rng = np.random.default_rng(seed)
    picks = rng.choice(users, size=warmup + n_requests)
    times = np.empty(n_requests, dtype=np.float64)
    for i, user in enumerate(picks):
        start = time.perf_counter()
        model.recommend(np.array([user]), k=k)
        if i >= warmup:
            times[i - warmup] = (time.perf_counter() - start) * 1e3
    p50, p99 = np.percentile(times, [50, 99])
    return LatencyStats(
        p50_ms=float(p50),
        p99_ms=float(p99),
        n_requests=n_requests,
        max_ms=float(times.max()),
        k=k,
    )


def dir_size(path: Path | str) -> int:
    """Bytes of every regular file under ``path`` (the on-disk size of a saved model)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("model directory not found", where=str(path))
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = Path(root) / name
            if full.is_file() and not full.is_symlink():
                total += full.stat().st_size
    return total
