"""The decision: ``decide`` applies every rule of the ``gate`` section to a challenger (and
the champion, if any) and returns a ``GateDecision`` with one ``Reason`` per rule. Pure."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from recsys.config import GateConfig
from recsys.errors import DataError, malformed
from recsys.evaluation.metrics import paired_bootstrap
from recsys.gate.inputs import ModelEvaluation, higher_is_better

FIRST_RUN: Final = "first run: only absolute thresholds applied"


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
    context: dict[str, Any] = field(default_factory=dict)
    """How the challenger came to be, when not by a full run: ``update`` (``recsys update``:
    incremental, from which champion, on which data versions)."""

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
        update = self.context.get("update")
        if update:
            lines.append(
                f"  incremental update of {update['from_champion']}: data "
                f"{update['data_versions']['champion']} -> {update['data_versions']['new']}"
            )
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
            **({"context": self.context} if self.context else {}),
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "decision") -> GateDecision:
        if not isinstance(raw, dict):
            raise DataError("a gate decision must be a JSON object", where=where)
        with malformed("gate decision", where=where, fix="write it with `recsys gate --out FILE`"):
            decision = cls(
                promote=raw["promote"],
                challenger=raw["challenger"],
                champion=raw["champion"],
                split_fingerprint=raw["split_fingerprint"],
                reasons=tuple(Reason(**r) for r in raw["reasons"]),
                config=dict(raw.get("config") or {}),
                context=dict(raw.get("context") or {}),
            )
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
        reason = _threshold(ev.latency_p99_ms, "latency_p99_ms", limit, False, "latency")
        if ev.latency_p99_ms is None:  # metrics files hold no timings: the gate measures it
            message = "latency_p99_ms not measured: measure the challenger's saved model"
            reason = dataclasses.replace(reason, message=message)
        out.append(reason)
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
