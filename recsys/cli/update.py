"""``recsys update``: a challenger from the champion and a batch of new interactions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from recsys.cli.common import (
    Commands,
    add_command,
    add_params_option,
    add_registry_option,
    params_from,
)

if TYPE_CHECKING:
    from recsys.config import Params
    from recsys.schema import Dataset

FULL_RETRAIN_DUE: Final = 4
"""Exit status of ``recsys update`` when a full retrain is due instead (``--plan`` alike); 3
is every command's internal error (``recsys.cli.INTERNAL_ERROR``)."""
BUILD_FILE: Final = Path("reports") / "bento" / "build.json"


def add_parsers(commands: Commands) -> None:
    """Add ``recsys update``."""
    update = add_command(commands, "update", cmd_update)
    update.add_argument(
        "--batch",
        type=Path,
        metavar="FILE",
        help="new interactions: user_id,item_id,rating|weight,timestamp (CSV, TSV, Parquet "
        "or any format of docs/data.md)",
    )
    update.add_argument("--format", help="the batch's format (default: detected)")
    update.add_argument("--items", type=Path, metavar="FILE", help="side rows of its new items")
    update.add_argument("--users", type=Path, metavar="FILE", help="side rows of its new users")
    update.add_argument(
        "--plan",
        action="store_true",
        help="only say whether an update or a full retrain is due (exit 0 or 4); change nothing",
    )
    update.add_argument(
        "--promote",
        action="store_true",
        help="promote the challenger when the gate blesses it, then build its bento",
    )
    update.add_argument(
        "--out", type=Path, default=Path("reports") / "update" / "latest.json", metavar="FILE"
    )
    add_params_option(update)
    add_registry_option(update)


def cmd_update(args: argparse.Namespace) -> int:
    """update the champion with a batch of new interactions, without a full retrain

    Validate the batch with the accepted data (nothing changes when it fails), check that the
    champion was trained on an ancestor of the new data, keep the batch (data.batches), then
    warm-start the champion's deep models on it with a replay sample of the old rows (new
    users and items get rows), fold new users into EASE/ALS-like models, compose the served
    ranking and gate it against the champion on the new split; the recorded decision says it
    was incremental, from which champion, on which data versions (recsys/update.py). With
    --promote, a blessed challenger becomes the champion and its bento is built.

    A full retrain is due instead when there is no champion, the last full training is older
    than update.max_age_hours, update.max_updates updates are chained, or the batch drifts
    past validation.drift (update.full_on_drift): then this exits 4 and says why; run
    bin/pipeline (the training_job). Exit status: 0 challenger built (promoted with --promote
    when blessed), 1 validation failed, refused, or the gate rejected it, 2 bad input,
    3 internal error, 4 a full retrain is due.
    """
    from recsys import update
    from recsys.data import io
    from recsys.serving.store import Registry

    params = params_from(args.params)
    registry = Registry(args.registry)
    if args.plan:
        plan = update.plan(registry, params)
        print(json.dumps({"mode": plan.mode, "reasons": list(plan.reasons)}))
        return 0 if plan.mode == "incremental" else FULL_RETRAIN_DUE
    if args.batch is None:
        from recsys.errors import ConfigError

        raise ConfigError("no batch given", fix="pass --batch FILE (or --plan)")
    batch = read_batch(args, params)
    outcome = update.run_update(batch, params, registry)
    promoted = False
    if outcome.mode == "incremental" and outcome.promote and args.promote:
        assert outcome.challenger is not None and outcome.processed is not None
        promoted = _promote_and_build(outcome.challenger, Path(outcome.processed), args, params)
    io.write_json({**outcome.to_dict(), "promoted": promoted}, args.out)
    if outcome.mode == "full":
        print("a full retrain is due: " + "; ".join(outcome.reasons))
        if outcome.batch.get("file"):
            print(f"the batch was accepted ({outcome.batch['file']}): the full run includes it")
        print("run bin/pipeline (the training_job)")
        return FULL_RETRAIN_DUE
    print(outcome.decision)
    print(f"update of {outcome.champion} in {outcome.seconds:.1f} s -> {outcome.challenger}")
    if promoted:
        print(f"promoted {outcome.challenger}; bento: {BUILD_FILE}")
    return 0 if outcome.promote else 1


def read_batch(args: argparse.Namespace, params: Params) -> Dataset:
    """The batch as a canonical ``Dataset``, read by the reader layer of every other input."""
    from recsys.data.sources import formats
    from recsys.data.sources.ids import check_dataset_ids
    from recsys.schema import Dataset

    csv_cfg = params.data.csv
    log = formats.read_log_file(args.batch, formats.resolve_format(args.format), csv_cfg=csv_cfg)
    items = formats.read_items_file(args.items, csv_cfg=csv_cfg) if args.items else None
    users = formats.read_users_file(args.users, csv_cfg=csv_cfg) if args.users else None
    batch = Dataset(
        log.interactions, items, users, name=args.batch.stem, feedback=log.feedback,
        source_files={"interactions": str(args.batch)},
    )  # fmt: skip
    check_dataset_ids(batch)
    return batch


def _promote_and_build(tag: str, processed: Path, args: argparse.Namespace, params: Params) -> bool:
    from recsys.data import io
    from recsys.serving import package
    from recsys.serving.store import Registry

    Registry(args.registry).promote(tag)
    result = package.build_champion_bento(
        registry=args.registry,
        serving=params.serving,
        champion=None,
        catalogue=None,
        processed=processed,
        version=None,
        previous=None,
    )
    io.write_json(result.to_dict(), BUILD_FILE)
    print(f"built bento {result.bento} (champion {result.champion})")
    return True
