"""How recsys runs the ``bentoml`` command and reads its bento store: shared by packaging
(``recsys.serving.package``), infra validation (``recsys.serving.infra``) and
``recsys serve`` (``recsys.serving.serve``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Final

from recsys.errors import DataError
from recsys.serving import store

PROJECT_DIR: Final = Path(__file__).resolve().parents[2]
"""The repository root: ``bentofile.yaml`` and the ``recsys`` package (the build context, and
where ``bentoml serve`` imports the service from)."""


def bentoml_command() -> list[str]:
    """The ``bentoml`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "bentoml"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bentoml"]


def bentoml_env(home: Path | str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(store.bentoml_home(home))
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return env


def load_bento(tag: str, home: Path | str | None) -> Any:
    import bentoml
    from bentoml._internal.bento import BentoStore  # pinned bentoml 1.4.40
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.get(tag, _bento_store=BentoStore(str(store.bentoml_home(home) / "bentos")))
    except BentoMLException as exc:
        raise DataError(
            f"bento '{tag}' is not in the bento store", fix="run `recsys bento build`"
        ) from exc


def bento_model_path(bento: Any, model_tag: str, home: Path | str | None) -> Path:
    """A model of the bento: inside it when exported/imported (``models/``), else in the store
    (BentoML 1.4 bentos refer to the local model store until exported or containerized)."""
    name, _, version = model_tag.partition(":")
    inside = Path(bento.path) / "models" / name / version
    if (inside / "recommender.json").is_file():
        return inside
    return store.model_path(model_tag, home=home)


def tail_lines(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
