"""Where the registry keeps its files, in one place: every module that reads or writes the
registry names its paths from here; and where the bento image's base is kept."""

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

BASE_IMAGE: Final = "localhost/recsys-base:bookworm-py3.11"
"""The base image in local image storage (``recsys.serving.container.BaseImage``): the
service's build image and bentofile.yaml's ``docker.base_image`` (a test keeps them equal)."""
BASE_DISTRO: Final = "debian-debootstrap"
"""The service image's distro: a name BentoML does not know, so that it adds no
``apt-get install build-essential git gnupg2 ...`` line (588 MB that serving does not use: the
bento's packages are all binary wheels)."""
