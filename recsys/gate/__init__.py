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

Layout: ``inputs`` (``ModelEvaluation``, split fingerprints, slice means), ``decision``
(``decide``, its rules, ``GateDecision``) and ``cost`` (``measure_latency``, ``dir_size``);
every name is importable from ``recsys.gate``.
"""

from recsys.gate.cost import LatencyStats, dir_size, measure_latency
from recsys.gate.decision import FIRST_RUN, GateDecision, Reason, decide
from recsys.gate.inputs import (
    EVALUATION_FORMAT,
    LOWER_IS_BETTER,
    ModelEvaluation,
    checksums_fingerprint,
    higher_is_better,
    slice_metrics,
    split_fingerprint,
)

__all__ = [
    "EVALUATION_FORMAT",
    "FIRST_RUN",
    "LOWER_IS_BETTER",
    "GateDecision",
    "LatencyStats",
    "ModelEvaluation",
    "Reason",
    "checksums_fingerprint",
    "decide",
    "dir_size",
    "higher_is_better",
    "measure_latency",
    "slice_metrics",
    "split_fingerprint",
]
