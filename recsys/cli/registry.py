"""``recsys gate``, ``gate-candidates``, ``champion``, ``promote`` and ``rollback``: the metric
gate and the registry of champions."""

from __future__ import annotations

import argparse
from pathlib import Path

from recsys.cli.common import (
    DEFAULT_REGISTRY,
    Commands,
    add_command,
    add_in_option,
    add_out_option,
    add_params_option,
    add_registry_option,
    add_timings_option,
    params_from,
)


def add_parsers(commands: Commands) -> None:
    """Add ``recsys gate``, ``champion``, ``promote`` and ``rollback``."""
    gate = add_command(commands, "gate", cmd_gate, raw=True)
    gate.add_argument("--challenger", type=Path, required=True, metavar="EVAL.json")
    gate.add_argument(
        "--challenger-model",
        type=Path,
        metavar="DIR",
        help="the challenger's saved model: its latency is measured now, on the test users",
    )
    gate.add_argument("--champion", type=Path, metavar="EVAL.json", help="omit on the first run")
    gate.add_argument("--challenger-tag", metavar="TAG", help="registry tag of the challenger")
    gate.add_argument("--champion-tag", metavar="TAG", help="registry tag of the champion")
    add_params_option(gate)
    add_timings_option(gate)
    gate.add_argument("--out", type=Path, required=True, metavar="DECISION.json")
    gate.add_argument(
        "--registry", type=Path, metavar="DIR", help="also record the decision in this registry"
    )

    registry_help = f"registry directory (default: {DEFAULT_REGISTRY})"
    champion = add_command(commands, "champion", cmd_champion)
    add_registry_option(champion, registry_help)
    champion.add_argument("--history", type=int, default=5, metavar="N", help="entries shown")

    promote = add_command(commands, "promote", cmd_promote)
    promote.add_argument("tag", metavar="TAG", help="name:version (or name:latest)")
    promote.add_argument(
        "--decision",
        type=Path,
        metavar="FILE",
        help="the gate decision (default: the one recorded in the registry)",
    )
    add_registry_option(promote, registry_help)

    rollback = add_command(commands, "rollback", cmd_rollback)
    add_registry_option(rollback, registry_help)


def add_gate_candidates_parser(commands: Commands) -> None:
    """Add ``recsys gate-candidates``, the pipeline's gate step."""
    gate_run = add_command(commands, "gate-candidates", cmd_gate_candidates)
    add_params_option(gate_run)
    gate_run.add_argument("--models", type=Path, default=Path("models"), help="models directory")
    add_in_option(gate_run)
    add_registry_option(gate_run)
    gate_run.add_argument(
        "--data-version", required=True, help="version of the processed data (its DVC hash)"
    )
    add_timings_option(gate_run)
    add_out_option(gate_run, "outcome JSON to write")


def cmd_gate_candidates(args: argparse.Namespace) -> int:
    """register every served ranking, gate the best against the champion

    The pipeline's gate step (recsys.promotion.gate_candidates): register each candidate's
    served ranking (models/twostage-<family>, written by `recsys compose`) in the BentoML store
    once per content, pick the best on the gate's primary metric, measure its latency and
    re-evaluate the champion on the same split, decide (the 'gate' section) and record the
    decision in the registry. --out gets the outcome as JSON. Exit status: 0 the challenger
    may be promoted, 1 it may not (rejected, already champion or already rejected), 2 bad
    input.
    """
    from recsys import promotion
    from recsys.data import io
    from recsys.serving.store import Registry

    outcome = promotion.gate_candidates(
        args.models,
        args.inp,
        params_from(args.params),
        Registry(args.registry),
        data_version=args.data_version,
        work_dir=args.out.parent,
        timings_dir=args.timings,
    )
    io.write_json(outcome.to_dict(), args.out)
    print(outcome.report)
    return 0 if outcome.promote else 1


def cmd_gate(args: argparse.Namespace) -> int:
    """decide whether a challenger may replace the champion

    Decide whether a challenger may replace the champion (recsys.gate.decide, the 'gate'
    section of the parameter file). Fails closed: no thresholds, an empty test set or a
    missing/NaN metric rejects; absolute thresholds always apply; against a champion evaluated
    on the same split the challenger must beat it on the primary metric by the margin, with the
    paired-bootstrap CI of the gain above 0; slices and the latency/size budgets must hold.
    EVAL.json: the metrics file of `recsys evaluate` (give --challenger-tag, the model's
    registry tag) or ModelEvaluation.to_dict(). Writes the decision with every reason to --out.

    The challenger's latency (gate.max_latency_p99_ms): measured now on --challenger-model DIR
    when given; else the one EVAL.json holds; else the one `recsys evaluate` recorded when it
    wrote EVAL.json (--timings/evaluate-FAMILY.json); else the budget rejects it as missing.

    Exit status: 0 promoted, 1 rejected (every reason is printed), 2 bad input.
    """
    from recsys import gate, promotion
    from recsys.data import io

    challenger, latency_from = promotion.gate_evaluation(
        args.challenger,
        tag=args.challenger_tag,
        model_dir=args.challenger_model,
        timings_dir=args.timings,
    )
    champion = None
    if args.champion is not None:
        raw = io.read_json(args.champion)
        champion = gate.ModelEvaluation.from_dict(raw, str(args.champion), tag=args.champion_tag)
    decision = gate.decide(challenger, champion, params_from(args.params).gate)
    io.write_json(decision.to_dict(), args.out)
    if args.registry is not None:
        from recsys.serving.store import Registry

        print(f"recorded: {Registry(args.registry).record_decision(decision)}")
    print(decision.report())
    print(f"challenger's {latency_from}")
    print(f"decision: {args.out}")
    return 0 if decision.promote else 1


def cmd_champion(args: argparse.Namespace) -> int:
    """show the current champion and its recent history

    Print the champion model's tag and the last promotions and rollbacks.
    """
    from recsys.serving.store import Registry, describe

    print(describe(Registry(args.registry), history=args.history))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """make a gated model the champion

    Make TAG (a model in the BentoML store, $BENTOML_HOME) the champion. The recorded gate
    decision for that exact tag is re-checked: it must bless the model, on the split the model
    was saved with, against the champion that is current now. Promoting the current champion
    again changes nothing. Exit status: 0 promoted (or already champion), 1 refused, 2 bad input.
    """
    from recsys.serving.store import Registry

    result = Registry(args.registry).promote(args.tag, decision_file=args.decision)
    if result.changed:
        previous = result.record.previous[0] if result.record.previous else "none"
        print(f"promoted {result.record.tag} (previous champion: {previous})")
    else:
        print(f"{result.record.tag} already is the champion: nothing changed")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """repoint the champion to the previous blessed model

    Make the previous champion the champion again and record the rollback. Exit status:
    0 rolled back, 1 refused, 2 nothing to roll back to.
    """
    from recsys.serving.store import Registry

    record = Registry(args.registry).rollback()
    print(f"rolled back: champion is {record.tag} again ({record.reasons[0]})")
    return 0
