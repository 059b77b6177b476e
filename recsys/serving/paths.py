"""Where the registry keeps its files, in one place: every module that reads or writes the
registry names its paths from here."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_REGISTRY_DIR: Final = Path("data") / "registry"
"""The registry's root (DVC-tracked as ``data/registry.dvc``)."""
CHAMPION_FILE: Final = "champion.json"
"""The champion pointer (``ChampionRecord``)."""
HISTORY_FILE: Final = "promotions.jsonl"
"""Every promotion and rollback, appended one JSON object per line."""
DECISIONS_DIR: Final = "decisions"
"""The gate decisions that blessed a tag, one file per tag."""
BENTOS_DIR: Final = "bentos"
"""Each bento's infra-validation report: ``bentos/<name>/<version>.json``."""
DEPLOYABLE_FILE: Final = "deployable.json"
"""The bento that passed infra validation last (what ``recsys serve`` starts)."""
LOCK_FILE: Final = ".lock"
"""Serialises writers of the registry."""
