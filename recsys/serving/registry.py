"""The champion registry: a pointer file ``<root>/champion.json`` written atomically (temp file
+ ``os.replace``) with the stack of earlier champions for rollback, an append-only history
``<root>/promotions.jsonl`` (every promotion and rollback, with time, tag and reasons), and the
recorded gate decisions ``<root>/decisions/<name>/<version>.json``. Every change happens under
an exclusive file lock, so concurrent promotions serialize, and promoting the current champion
again changes nothing.

``Registry.promote`` re-checks the recorded gate decision for that exact tag (``promote`` true,
every reason passed, the split fingerprint the model was saved with, and the champion that is
current now): a model trained or evaluated outside the gated job is refused. The check guards
against mistakes and skipped steps, not against someone hand-writing a decision file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.data import io
from recsys.errors import DataError, RecsysError, Refused, malformed
from recsys.gate import GateDecision
from recsys.serving.model_store import SPLIT_KEY, get_model, resolve_tag
from recsys.serving.paths import (
    CHAMPION_FILE,
    DECISIONS_DIR,
    DEFAULT_REGISTRY_DIR,
    HISTORY_FILE,
    LOCK_FILE,
)


class PromotionRefused(Refused):
    """The registry will not change the champion (no blessing, stale or mismatched decision)."""


@dataclass(frozen=True)
class ChampionRecord:
    """The content of ``champion.json``."""

    tag: str
    since: str
    """UTC time of the promotion or rollback that installed it (ISO 8601)."""
    action: str
    """``promote`` or ``rollback``."""
    split_fingerprint: str
    reasons: tuple[str, ...] = ()
    """The gate's reasons (or the rollback's), one line each."""
    previous: tuple[str, ...] = ()
    """Earlier champions, most recent first: ``rollback`` returns to ``previous[0]``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ChampionRecord:
        fix = "restore it from promotions.jsonl (or DVC), or remove it to start afresh"
        with malformed("champion pointer", where=where, fix=fix):
            return cls(
                tag=str(raw["tag"]),
                since=str(raw["since"]),
                action=str(raw["action"]),
                split_fingerprint=str(raw["split_fingerprint"]),
                reasons=tuple(raw.get("reasons") or ()),
                previous=tuple(raw.get("previous") or ()),
            )


@dataclass(frozen=True)
class PromotionResult:
    record: ChampionRecord
    changed: bool
    """False when ``tag`` already was the champion (the promotion is idempotent)."""


class Registry:
    """The champion pointer, its history and the recorded gate decisions under ``root``."""

    def __init__(
        self, root: Path | str = DEFAULT_REGISTRY_DIR, *, home: Path | str | None = None
    ) -> None:
        self.root = Path(root)
        self.home = home
        """BentoML home (None: ``$BENTOML_HOME`` or ``~/bentoml``)."""

    # --- reading ----------------------------------------------------------------------------
    @property
    def champion_file(self) -> Path:
        return self.root / CHAMPION_FILE

    @property
    def history_file(self) -> Path:
        return self.root / HISTORY_FILE

    def champion(self) -> ChampionRecord | None:
        """The current champion, or None before the first promotion."""
        if not self.champion_file.exists():
            return None
        return ChampionRecord.from_dict(io.read_json(self.champion_file), str(self.champion_file))

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first (the last ``limit`` when given)."""
        if not self.history_file.exists():
            return []
        entries = []
        lines = self.history_file.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"corrupt history line: {exc.msg}", where=f"{self.history_file}:{n}"
                    ) from exc
        return entries[-limit:] if limit else entries

    def decision_path(self, tag: str) -> Path:
        name, _, version = tag.partition(":")
        if not name or not version or "/" in tag or ".." in tag:
            raise DataError(f"'{tag}' is not a concrete model tag name:version")
        return self.root / DECISIONS_DIR / name / f"{version}.json"

    def record_decision(self, decision: GateDecision) -> Path:
        """Keep ``decision`` as the blessing (or rejection) of its challenger's tag."""
        path = self.decision_path(decision.challenger)
        io.write_json(decision.to_dict(), path)
        return path

    def read_decision(self, tag: str, path: Path | str | None = None) -> GateDecision:
        path = Path(path) if path is not None else self.decision_path(tag)
        if not path.is_file():
            raise PromotionRefused(
                f"no recorded gate decision for '{tag}'",
                where=str(path),
                fix="run the gate on this model (`recsys gate ... --out FILE`) and pass "
                "--decision FILE; only gated models can be promoted",
            )
        return GateDecision.from_dict(io.read_json(path), str(path))

    # --- changing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock over the registry (blocks until other promotions finish)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def promote(self, tag: str, *, decision_file: Path | str | None = None) -> PromotionResult:
        """Make ``tag`` the champion if its recorded gate decision still blesses it.

        Raises:
          PromotionRefused: no decision, a rejection, a decision for another tag, split or
            champion; the pointer is unchanged.
          DataError: the model is not in the store.
        """
        resolved = resolve_tag(tag, home=self.home)
        with self._locked():
            current = self.champion()
            if current is not None and current.tag == resolved:
                return PromotionResult(current, changed=False)
            decision = self.read_decision(resolved, decision_file)
            self._check_blessing(resolved, decision, current)
            record = ChampionRecord(
                tag=resolved,
                since=_now(),
                action="promote",
                split_fingerprint=decision.split_fingerprint,
                reasons=tuple(r.line() for r in decision.reasons),
                previous=() if current is None else (current.tag, *current.previous),
            )
            if decision_file is not None:  # keep the blessing with the registry
                self.record_decision(decision)
            self._install(record, previous=current)
            return PromotionResult(record, changed=True)

    def rollback(self) -> ChampionRecord:
        """Repoint the champion to the previous blessed one, and record it.

        Raises:
          RecsysError: no champion, or no earlier champion to return to.
        """
        with self._locked():
            current = self.champion()
            if current is None or not current.previous:
                raise RecsysError(
                    "nothing to roll back to: "
                    + ("no champion yet" if current is None else "the champion has no predecessor"),
                    where=str(self.champion_file),
                )
            target = current.previous[0]
            get_model(target, home=self.home)  # still in the store: else refuse, pointer kept
            decision = self.read_decision(target)
            if not decision.promote or decision.challenger != target:
                raise PromotionRefused(
                    f"the recorded decision for '{target}' does not bless it",
                    where=str(self.decision_path(target)),
                )
            record = ChampionRecord(
                tag=target,
                since=_now(),
                action="rollback",
                split_fingerprint=decision.split_fingerprint,
                reasons=(f"rollback from {current.tag}",),
                previous=current.previous[1:],
            )
            self._install(record, previous=current)
            return record

    def _check_blessing(
        self, tag: str, decision: GateDecision, current: ChampionRecord | None
    ) -> None:
        where = str(self.decision_path(tag))
        if decision.challenger != tag:
            raise PromotionRefused(
                f"the gate decision is for '{decision.challenger}', not '{tag}'", where=where
            )
        if not decision.promote or not decision.reasons or decision.failures:
            failed = "; ".join(r.line() for r in decision.failures) or "no reasons recorded"
            raise PromotionRefused(
                f"the gate did not bless '{tag}': {failed}",
                where=where,
                fix="train a better model; the gate decides, not the promote command",
            )
        saved_split = get_model(tag, home=self.home).info.metadata.get(SPLIT_KEY)
        if saved_split != decision.split_fingerprint:
            raise PromotionRefused(
                f"'{tag}' was saved with split {str(saved_split)[:12]!r} but the decision is "
                f"for split {decision.split_fingerprint[:12]!r}",
                where=where,
                fix="save and gate the model in the same pipeline run",
            )
        expected = None if current is None else current.tag
        if decision.champion != expected:
            raise PromotionRefused(
                f"the decision compared '{tag}' with champion {decision.champion!r}, but the "
                f"champion now is {expected!r}",
                where=where,
                fix="re-run the gate against the current champion",
            )

    def _install(self, record: ChampionRecord, *, previous: ChampionRecord | None) -> None:
        """Append to the history, then swap the pointer (both atomic file replacements)."""
        entry = {
            "time": record.since,
            "action": record.action,
            "tag": record.tag,
            "from": None if previous is None else previous.tag,
            "reasons": list(record.reasons),
        }
        old = self.history_file.read_text(encoding="utf-8") if self.history_file.exists() else ""
        io.write_text(old + json.dumps(entry, sort_keys=True) + "\n", self.history_file)
        io.write_json(record.to_dict(), self.champion_file)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe(registry: Registry, history: int = 5) -> str:
    """Readable lines: the champion and the last ``history`` promotions/rollbacks."""
    current = registry.champion()
    if current is None:
        lines = [f"no champion yet ({registry.champion_file} does not exist)"]
    else:
        lines = [
            f"champion: {current.tag} ({current.action} at {current.since})",
            f"previous: {', '.join(current.previous) or '(none)'}",
        ]
    entries: Sequence[dict[str, Any]] = registry.history(history)
    if entries:
        lines.append("history (oldest first):")
        for e in entries:
            lines.append(f"  {e['time']}  {e['action']:<8} {e['tag']}  (from {e['from']})")
    return "\n".join(lines)
