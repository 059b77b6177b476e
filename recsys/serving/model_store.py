"""Trained models in the BentoML model store (``save_model`` / ``load_model``).

Every trained ``Recommender`` goes into the BentoML model store with ``bentoml.models.create``
(BentoML 1.4; the ``bentoml.keras`` and ``bentoml.tensorflow`` modules are deprecated). Its saved
directory (``Recommender.save``: parameters, vocabularies, seen items) is the model's path, so a
service loads it with ``Recommender.load(Path(bento_model.path))``. Labels carry the data
version, git revision, params hash and primary metrics; metadata also carries the split
fingerprint that the gate decision must match. The store is ``$BENTOML_HOME/models`` (read when
called, not at import).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from recsys.data import io
from recsys.errors import DataError
from recsys.fingerprint import tree_digest
from recsys.models.base import META_FILE, Recommender

if TYPE_CHECKING:
    import bentoml
    from bentoml._internal.models import ModelStore

SPLIT_KEY: Final = "split_fingerprint"
"""Metadata key of the split the model was evaluated on (checked against the decision)."""


@dataclass(frozen=True)
class ModelLabels:
    """What every registered model is labelled with (BentoML labels are strings)."""

    data_version: str
    git_revision: str
    params_hash: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Primary metrics, e.g. ``{"ndcg@10": 0.19}``; label keys become ``ndcg_at_10``."""

    def as_labels(self) -> dict[str, str]:
        out = {
            "data_version": self.data_version,
            "git_revision": self.git_revision,
            "params_hash": self.params_hash,
        }
        out.update({k.replace("@", "_at_"): f"{v:.6g}" for k, v in self.metrics.items()})
        return out


def bentoml_home(home: Path | str | None = None) -> Path:
    """``home``, else ``$BENTOML_HOME``, else ``~/bentoml`` (BentoML's own default)."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def model_store(home: Path | str | None = None) -> ModelStore:
    """The model store under ``bentoml_home(home)``.

    Built per call: BentoML caches its default store for the life of the process, which would
    ignore a ``BENTOML_HOME`` set after the first use (tests, the CLI's options).
    """
    from bentoml._internal.models import ModelStore  # pinned bentoml 1.4.40 (pyproject)

    path = bentoml_home(home) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(path))


def save_model(
    model: Recommender | Path | str,
    name: str,
    labels: ModelLabels,
    *,
    split_fingerprint: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    home: Path | str | None = None,
) -> str:
    """Save a trained model into the BentoML model store; returns its tag ``name:version``.

    Args:
      model: a fitted recommender, or a directory ``Recommender.save`` wrote
        (e.g. ``models/<family>`` of the pipeline).
      name: store name, e.g. ``recsys-ease``.
      labels: data version, git revision, params hash, primary metrics.
      split_fingerprint: the split the model was evaluated on; promotion requires it.
      metadata: extra JSON-ready facts (train summary, ...).
    """
    import bentoml

    with tempfile.TemporaryDirectory(prefix="recsys-save-") as tmp:
        if isinstance(model, Recommender):
            model_dir = Path(tmp) / "model"
            model.save(model_dir)
        else:
            model_dir = Path(model)
        meta = io.read_json(io.require_file(model_dir / META_FILE, "saved model"))
        info: dict[str, Any] = {
            "recsys_model": meta.get("model"),
            "metrics": {k: float(v) for k, v in labels.metrics.items()},
            **(metadata or {}),
        }
        if split_fingerprint is not None:
            info[SPLIT_KEY] = split_fingerprint
        with bentoml.models.create(
            name, labels=labels.as_labels(), metadata=info, _model_store=model_store(home)
        ) as ref:
            shutil.copytree(model_dir, ref.path, dirs_exist_ok=True)
    return str(ref.tag)


def list_models(name: str, *, home: Path | str | None = None) -> list[dict[str, Any]]:
    """``{"tag", "labels", "metadata", "creation_time"}`` of every stored model ``name``
    (``[]`` when there is none)."""
    from bentoml.exceptions import NotFound

    try:
        models = list(model_store(home).list(name))
    except NotFound:
        return []
    return [
        {
            "tag": str(m.tag),
            "labels": dict(m.info.labels),
            "metadata": dict(m.info.metadata),
            "creation_time": m.info.creation_time,
        }
        for m in models
    ]


def get_model(tag: str, *, home: Path | str | None = None) -> bentoml.Model:
    """The stored model for ``tag`` (``name:version`` or ``name:latest``)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.models.get(tag, _model_store=model_store(home))
    except BentoMLException as exc:
        raise DataError(
            f"model '{tag}' is not in the BentoML model store",
            where=str(bentoml_home(home) / "models"),
            fix="check the tag with `bentoml models list`, or set BENTOML_HOME",
        ) from exc


def resolve_tag(tag: str, *, home: Path | str | None = None) -> str:
    """``name:latest`` (or ``name``) -> the concrete ``name:version`` in the store."""
    return str(get_model(tag, home=home).tag)


def model_path(tag: str, *, home: Path | str | None = None) -> Path:
    """The directory holding the saved ``Recommender`` of ``tag``."""
    return Path(get_model(tag, home=home).path)


def model_info(tag: str, *, home: Path | str | None = None) -> dict[str, Any]:
    """``{"tag", "labels", "metadata", "path"}`` of a stored model."""
    ref = get_model(tag, home=home)
    return {
        "tag": str(ref.tag),
        "labels": dict(ref.info.labels),
        "metadata": dict(ref.info.metadata),
        "path": ref.path,
    }


def load_model(tag: str, *, home: Path | str | None = None) -> Recommender:
    """Load the ``Recommender`` of ``tag`` back from the store (only from the store's own path)."""
    return Recommender.load(model_path(tag, home=home))


def params_hash(params: Any) -> str:
    """sha256 (16 hex digits) of a params dataclass or mapping, keys sorted."""
    raw = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else params  # type: ignore[arg-type]
    return tree_digest([], extra=raw)[:16]


def git_revision(cwd: Path | str | None = None) -> str:
    """``git rev-parse HEAD`` (with ``-dirty`` for local changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
