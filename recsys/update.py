"""``recsys update``: a challenger from the champion and a batch of new interactions, without a
full retrain, through the same validation, gate and bento as a full run (issue 19 §1).

Steps, each refusing with its reason before anything is changed:

1. **Plan.** A full retrain is due instead when there is no champion, when the champion's last
   full training is older than ``update.max_age_hours``, or when ``update.max_updates`` updates
   are already chained onto it (``plan``; cheap, read from the registry). The batch is then
   still validated and accepted (steps 2 and 4), so that the full run learns from it.
2. **Validate.** The accepted data (the source and the batches accepted before,
   ``load_source``) with the batch appended goes through the Great Expectations suites with
   the drift check against the accepted data. A failure stops here: the batch is not kept,
   nothing is written but the report.
3. **Ancestry.** Every interaction the champion trained on must be in the new data (an
   append-only history): a champion trained on other data, or on rows since removed, is
   refused (a full retrain then).
4. **Accept** the batch into ``data.batches``, so every later run, full or not, has it. With
   drift past ``validation.drift``'s tolerances (``update.full_on_drift``), stop here: the
   outcome says a full retrain is due.
5. **Update** the champion's ranker and retriever (``recsys.models.update``: warm start, fold-in
   or refit) on the new data preprocessed with the champion's feature vocabularies, compose the
   served two-stage ranking and score it, all under ``models/update/<data version>/``.
6. **Gate** it against the champion on the new test split (``promotion.gate_candidates``); the
   recorded decision carries ``update``: incremental, from which champion, on which data
   versions, the lineage (last full training, updates since), and what each model did.
   Promotion and the bento are the caller's (``recsys update --promote``, the Dagster job).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from recsys.config import Params
from recsys.data.preprocess import ContentFeatures, load_processed, preprocess, save_processed
from recsys.errors import ConfigError, Refused, ValidationFailed
from recsys.schema import ITEM_ID, USER_ID, Dataset

UPDATE_DIR: Final = Path("models") / "update"
"""``<data version>/`` per update: processed data, updated models, served ranking, metrics."""
REPORT_DIR: Final = Path("reports") / "update"
KEEP_VERSIONS: Final = 3
"""Update directories kept besides the one the champion came from."""
CONTEXT_KEY: Final = "update"


class UpdateRefused(Refused):
    """The update cannot be made from this champion and data (the CLI exits with status 1)."""


@dataclass(frozen=True)
class Lineage:
    """Where a champion's data and weights come from, as far as updates go."""

    full_trained_at: str
    """UTC time (ISO 8601) of the last full training in its line."""
    updates: int
    """Updates chained onto that full training."""
    data_version: str


@dataclass(frozen=True)
class Plan:
    mode: str
    """``incremental`` or ``full``."""
    reasons: tuple[str, ...]
    champion: str | None = None
    lineage: Lineage | None = None


@dataclass(frozen=True)
class UpdateOutcome:
    """``reports/update/latest.json``: what ``run_update`` did."""

    mode: str
    """``incremental`` (a challenger was built and gated) or ``full`` (a full retrain is due)."""
    reasons: tuple[str, ...]
    champion: str | None
    batch: dict[str, Any] = field(default_factory=dict)
    challenger: str | None = None
    promote: bool = False
    decision: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    processed: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def champion_lineage(registry: Any) -> tuple[str, Lineage] | None:
    """The champion's tag and lineage: from its gate decision's ``update`` record, or, for a
    fully trained champion, its promotion time and its data version label."""
    from recsys.serving import store

    record = registry.champion()
    if record is None:
        return None
    context = registry.read_decision(record.tag).context.get(CONTEXT_KEY)
    if context:
        return record.tag, Lineage(**context["lineage"])
    labels = store.model_info(record.tag, home=registry.home).get("labels", {})
    return record.tag, Lineage(record.since, 0, str(labels.get("data_version", "unknown")))


def plan(registry: Any, params: Params, *, now: float | None = None) -> Plan:
    """Incremental, or a full retrain with the reasons (module docstring, step 1)."""
    found = champion_lineage(registry)
    if found is None:
        return Plan("full", ("no champion yet: the first model is a full training",))
    tag, lineage = found
    cfg = params.update
    age_h = (
        (now or time.time()) - datetime.fromisoformat(lineage.full_trained_at).timestamp()
    ) / 3600
    reasons = []
    if age_h > cfg.max_age_hours:
        reasons.append(
            f"the champion's last full training is {age_h:.1f} h old "
            f"(update.max_age_hours {cfg.max_age_hours:g})"
        )
    if lineage.updates >= cfg.max_updates:
        reasons.append(
            f"{lineage.updates} updates are chained onto its last full training "
            f"(update.max_updates {cfg.max_updates})"
        )
    if reasons:
        return Plan("full", tuple(reasons), tag, lineage)
    why = f"{tag}: {lineage.updates} update(s) since its full training, {age_h:.1f} h ago"
    return Plan("incremental", (why,), tag, lineage)


def data_version(dataset: Dataset) -> str:
    """A content hash of the interactions (the update's data version)."""
    digest = hashlib.sha256()
    for column in dataset.interactions.columns:
        digest.update(column.encode())
        digest.update(dataset.interactions[column].astype(str).str.cat(sep="\n").encode())
    return "u" + digest.hexdigest()[:15]


def run_update(
    batch: Dataset,
    params: Params,
    registry: Any,
    *,
    root: Path = Path("."),
    processed_dirs: tuple[Path, ...] = (Path("data") / "processed",),
) -> UpdateOutcome:
    """The module docstring's steps 1-6 (promotion excluded). ``root``: the project directory
    (``models/update``, ``reports/update`` and ``data.batches`` are under it)."""
    from recsys import promotion
    from recsys.data import sources, validation
    from recsys.data.sources.batches import merge, write_batch
    from recsys.serving.store import load_model

    start = time.perf_counter()
    steps = plan(registry, params)
    facts: dict[str, Any] = {
        "rows": len(batch.interactions),
        "users": int(batch.interactions[USER_ID].nunique()),
        "items": int(batch.interactions[ITEM_ID].nunique()),
    }
    accepted = sources.load_source(params.data)
    grown = merge(accepted, batch)
    report = validation.validate(
        grown, params.validation, previous_profile=validation.profile(accepted)
    )
    report_dir = root / REPORT_DIR / "validation"
    report.write(report_dir)
    if not report.success:
        failed = ", ".join(
            f"{o.check} on {o.table} ({o.unexpected_count or 'table'} rows)"
            for o in report.failures
        )
        raise ValidationFailed(
            f"the batch fails validation with the accepted data: {failed}; it was not "
            "accepted and nothing changed",
            report=report,
            where=str(report_dir),
        )
    parts: dict[str, Any] = {}
    if steps.mode == "incremental":
        assert steps.champion is not None
        parts = _components(load_model(steps.champion, home=registry.home))
        _check_ancestry(parts, grown, steps.champion)
    version = data_version(grown)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{version}"
    kept = write_batch(batch, root / params.data.batches, name)
    facts.update(file=str(kept), data_version=version)
    drifted = [o.check for o in report.warnings if o.table == "drift"]
    reasons = steps.reasons if steps.mode == "full" else ()
    if drifted and params.update.full_on_drift:
        reasons += (f"the batch moves the data past the drift tolerances ({', '.join(drifted)})",)
    if reasons:  # the batch is accepted: the full run learns from it
        return UpdateOutcome("full", reasons, steps.champion, facts)
    assert steps.champion is not None and steps.lineage is not None
    work = root / UPDATE_DIR / version
    features = _champion_features(parts["ranker"], (*processed_dirs, *_update_dirs(root)))
    if params.preprocess.split.method == "predefined":
        raise UpdateRefused(
            "a predefined split cannot take new interactions",
            fix="use another preprocess.split.method, or retrain fully",
        )
    processed = _trained_rows_in_train(
        preprocess(grown, params.preprocess, features_like=features), parts
    )
    save_processed(processed, work / "processed")
    methods = _update_parts(parts, processed, params, work)
    ranker_family = parts["ranker"].name
    _compose_and_score(ranker_family, parts["retriever"].name, work, params)
    context = {
        CONTEXT_KEY: {
            "incremental": True,
            "from_champion": steps.champion,
            "data_versions": {"champion": steps.lineage.data_version, "new": version},
            "lineage": dataclasses.asdict(
                Lineage(steps.lineage.full_trained_at, steps.lineage.updates + 1, version)
            ),
            "models": methods,
            "batch": {k: v for k, v in facts.items() if k != "file"},
        }
    }
    outcome = promotion.gate_candidates(
        work,
        work / "processed",
        params,
        registry,
        data_version=version,
        work_dir=root / REPORT_DIR,
        families=[ranker_family],
        context=context,
    )
    _prune(root / UPDATE_DIR, keep={version, steps.lineage.data_version})
    return UpdateOutcome(
        "incremental",
        steps.reasons,
        steps.champion,
        facts,
        challenger=outcome.challenger,
        promote=outcome.promote,
        decision=outcome.report,
        context=context,
        processed=str(work / "processed"),
        seconds=round(time.perf_counter() - start, 2),
    )


def _components(champion: Any) -> dict[str, Any]:
    from recsys.models.twostage import two_stage_of

    served = two_stage_of(champion)
    if served.ranker is None or served.retriever is None:
        raise UpdateRefused("the champion is not a composed two-stage ranking", fix="retrain")
    return {"ranker": served.ranker, "retriever": served.retriever}


def _distinct(parts: Mapping[str, Any]) -> list[Any]:
    """The champion's parts, once each (a two-tower ranker is its own retriever)."""
    return list({id(p): p for p in parts.values()}.values())


def _check_ancestry(parts: Mapping[str, Any], grown: Dataset, tag: str) -> None:
    """Refuse when the new data lacks any interaction a part of the champion trained on."""
    import pandas as pd

    from recsys.models.update import trained_pairs

    rows = pd.MultiIndex.from_frame(grown.interactions[[USER_ID, ITEM_ID]])
    for part in _distinct(parts):
        pairs = pd.MultiIndex.from_frame(trained_pairs(part))
        missing = int((~pairs.isin(rows)).sum())
        if missing:
            raise UpdateRefused(
                f"the champion {tag} is not from an ancestor of the new data: {missing} of the "
                f"{len(pairs)} interactions its {part.name} model trained on are not in it",
                fix="retrain fully on the new data (bin/pipeline), then update from that model",
            )


def _trained_rows_in_train(processed: Any, parts: Mapping[str, Any]) -> Any:
    """``processed`` with every validation or test row the champion trained on moved to
    train: a re-split of the grown data (a random split draws afresh) must not test either
    model on what the champion learned (and handed on to its warm-started challenger)."""
    import pandas as pd

    from recsys.models.update import SPLIT_ORDER, trained_pairs

    pairs = pd.concat([trained_pairs(p) for p in _distinct(parts)])
    trained = pd.MultiIndex.from_frame(pairs.drop_duplicates())
    split = processed.split
    moved = {}
    for name in ("val", "test"):
        frame = getattr(split, name)
        hit = pd.MultiIndex.from_frame(frame[[USER_ID, ITEM_ID]]).isin(trained)
        moved[name] = frame[hit]
        split = dataclasses.replace(split, **{name: frame[~hit].reset_index(drop=True)})
    if not any(len(m) for m in moved.values()):
        return processed
    train = pd.concat([split.train, *moved.values()], ignore_index=True)
    train = train.sort_values(SPLIT_ORDER, kind="stable").reset_index(drop=True)
    info = {**split.info, "moved_to_train": {k: len(v) for k, v in moved.items()}}
    return dataclasses.replace(processed, split=dataclasses.replace(split, train=train, info=info))


def _update_dirs(root: Path) -> tuple[Path, ...]:
    base = root / UPDATE_DIR
    if not base.is_dir():
        return ()
    return tuple(p / "processed" for p in sorted(base.iterdir(), reverse=True))


def _champion_features(ranker: Any, dirs: tuple[Path, ...]) -> ContentFeatures | None:
    """The feature vocabularies of the processed data the ranker was trained on: the first of
    ``dirs`` whose vocabulary is the ranker's (None: none is, and the features are refitted)."""
    import numpy as np

    for directory in dirs:
        if not (directory / "meta.json").is_file():
            continue
        data = load_processed(directory)
        vocab = ranker.vocab
        if np.array_equal(data.vocab.user_ids, vocab.user_ids) and np.array_equal(
            data.vocab.item_ids, vocab.item_ids
        ):
            return data.features
    return None


def _update_parts(
    parts: Mapping[str, Any], processed: Any, params: Params, work: Path
) -> dict[str, Any]:
    """Update the ranker and the retriever (once when they are the same model) and save them
    under ``work/<name>``; what each did."""
    from recsys.models.update import UpdateSettings, update_model
    from recsys.pipeline import save_candidate

    done: dict[str, Any] = {}
    for part in _distinct(parts):
        epochs, replay = params.update.for_model(part.name)
        try:
            updated = update_model(part, processed, UpdateSettings(epochs=epochs, replay=replay))
        except ConfigError as exc:
            raise UpdateRefused(
                f"the champion's {part.name} model cannot be updated: {exc.what}", fix=exc.fix
            ) from exc
        save_candidate(updated.model, part.name, work / "processed", work / part.name)
        done[part.name] = updated.summary()
    return done


def _compose_and_score(ranker: str, retriever: str, work: Path, params: Params) -> None:
    """The served two-stage ranking of the updated parts and its metrics, as a full run's
    ``recsys compose`` writes them (``work`` laid out as ``models/``)."""
    from recsys import pipeline

    family = f"{pipeline.TWO_STAGE_PREFIX}{ranker}"
    processed = work / "processed"
    pipeline.compose_candidate(work / ranker, work / retriever, processed, work / family, params)
    pipeline.evaluate_candidate(work / family, processed, pipeline.metrics_file(work, family))


def _prune(base: Path, *, keep: set[str]) -> None:
    """Remove old update directories: the newest ``KEEP_VERSIONS`` and ``keep`` stay."""
    if not base.is_dir():
        return
    dirs = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in dirs[:-KEEP_VERSIONS]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
