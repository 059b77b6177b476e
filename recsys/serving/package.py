"""Bento packaging: the item catalogue model, the champion's lineage and ``bentoml build``.

::

    catalogue = save_catalogue(processed_dir, data_version="...")         # item genres
    tag = build_bento(champion_tag, catalogue, registry=...)              # `bentoml build`
    report = validate_bento(tag, registry=Registry("data/registry"))      # serve, probe, stop
    report.deployable                                                     # True only if all passed

``build_bento`` runs ``bentoml build`` (no Docker needed) in a subprocess over the repository's
``bentofile.yaml``, passing the two model tags, the serving settings and the lineage as bento
arguments (``--arg-file``), so the bento carries the exact model versions and BentoML hands the
same arguments back when it serves the bento. A subprocess, because the service module reads its
arguments once, at import: a second build in the same process would reuse the first's tags.

Infra validation (``validate_bento``, ``serving``, ``wait_ready``, ``http``, ...) lives in
``recsys.serving.infra`` and is re-exported here, so that ``recsys.serving.package`` remains the
one import for the last steps of the pipeline; ``recsys.serving.bentoml_cli`` runs the
``bentoml`` command and reads its bento store for both.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from recsys.config import ServingConfig
from recsys.data import io
from recsys.data.preprocess import Processed, load_processed
from recsys.data.records import Record
from recsys.errors import DataError, RecsysError
from recsys.fingerprint import tree_digest
from recsys.schema import STR_IDS
from recsys.serving import store
from recsys.serving.bentoml_cli import PROJECT_DIR, bentoml_command, bentoml_env, tail_lines
from recsys.serving.engine import Catalogue
from recsys.serving.infra import (
    Check,
    ValidationError,
    ValidationReport,
    deployable,
    free_port,
    http,
    process_cmdline,
    process_tree,
    record_validation,
    sample_requests,
    service_workers,
    serving,
    stop,
    validate_bento,
    wait_ready,
)
from recsys.serving.paths import BENTOS_DIR, DEPLOYABLE_FILE

__all__ = [
    "BENTOFILE",
    "BENTOS_DIR",
    "BUILD_TIMEOUT_S",
    "CATALOGUE_NAME",
    "DEPLOYABLE_FILE",
    "PROJECT_DIR",
    "BentoBuildError",
    "BentoResult",
    "Check",
    "ValidationError",
    "ValidationReport",
    "bento_arguments",
    "bento_exists",
    "build_bento",
    "build_champion_bento",
    "deployable",
    "free_port",
    "http",
    "lineage",
    "process_cmdline",
    "process_tree",
    "record_validation",
    "sample_requests",
    "save_catalogue",
    "service_workers",
    "serving",
    "stop",
    "validate_bento",
    "wait_ready",
]

CATALOGUE_NAME: Final = "recsys-catalogue"
IDS_KEY: Final = "ids"
"""Catalogue metadata and bento argument naming the id kind of each side and example ids when
either side is text (``service.IdArgs``); absent for integer ids."""
BENTOFILE: Final = "bentofile.yaml"
REQUIREMENTS_FILE: Final = "requirements-serving.txt"
"""The bento's Python pins (bentofile.yaml's ``python.requirements_txt``; recsys.serving.pins)."""
BUILD_TIMEOUT_S: Final = 600


class BentoBuildError(RecsysError):
    """``bentoml build`` failed."""


# --- models the service needs besides the two Recommenders ---------------------------------------
def save_catalogue(
    data: Processed | Path | str,
    *,
    data_version: str = "unknown",
    home: Path | str | None = None,
) -> str:
    """Store the item catalogue (ids, genres with names) of a processed data set as a BentoML
    model ``recsys-catalogue``; returns its tag. ``data``: a ``Processed`` or its directory."""
    import bentoml

    processed = data if isinstance(data, Processed) else load_processed(Path(data))
    catalogue = Catalogue.from_processed(processed)
    metadata: dict[str, Any] = {
        "n_items": len(catalogue.item_ids),
        "genres": list(catalogue.genre_names),
    }
    vocab = processed.vocab
    if STR_IDS in (vocab.user_kind, vocab.item_kind):  # integer ids: the metadata as before
        metadata[IDS_KEY] = {
            "user_kind": vocab.user_kind,
            "item_kind": vocab.item_kind,
            "example_user": vocab.user_ids[:1].tolist()[0],
            "example_items": vocab.item_ids[:2].tolist(),
        }
    with bentoml.models.create(
        CATALOGUE_NAME,
        labels={"data_version": data_version},
        metadata=metadata,
        _model_store=store.model_store(home),
    ) as ref:
        catalogue.save(Path(ref.path))
    return str(ref.tag)


# --- build -------------------------------------------------------------------------------------
def lineage(
    champion_tag: str, *, registry: Path | str | None = None, home: Path | str | None = None
) -> dict[str, str]:
    """What blessed ``champion_tag``: the data version and params hash it was registered
    with, and its recorded gate decision (``<registry>/decisions/...``, relative to the
    registry; "ungated" when the registry holds none: a bento built by hand, outside the
    pipeline, says so in every answer)."""
    labels = store.model_info(champion_tag, home=home)["labels"]
    decision = "ungated"
    if registry is not None:
        path = store.Registry(registry, home=home).decision_path(champion_tag)
        if path.is_file():
            decision = str(path.relative_to(Path(registry)))
    return {
        "data_version": str(labels.get("data_version", "unknown")),
        "params_hash": str(labels.get("params_hash", "unknown")),
        "gate_decision": decision,
    }


def bento_arguments(
    champion_tag: str,
    catalogue_tag: str,
    serving: ServingConfig | None = None,
    *,
    registry: Path | str | None = None,
    home: Path | str | None = None,
) -> dict[str, Any]:
    """The service's arguments (``service.BentoArgs``) with every tag resolved to its version."""
    champion = store.resolve_tag(champion_tag, home=home)
    catalogue = store.resolve_tag(catalogue_tag, home=home)
    args = {
        "champion": champion,
        "catalogue": catalogue,
        "serving": (serving or ServingConfig()).to_dict(),
        "lineage": lineage(champion, registry=registry, home=home),
    }
    ids = store.model_info(catalogue, home=home)["metadata"].get(IDS_KEY)
    if ids is not None:  # string ids: the service's requests carry text (service.IdArgs)
        args["ids"] = ids
    return args


def build_bento(
    champion_tag: str,
    catalogue_tag: str,
    *,
    serving: ServingConfig | None = None,
    registry: Path | str | None = None,
    labels: Mapping[str, str] | None = None,
    version: str | None = None,
    home: Path | str | None = None,
    project_dir: Path | str = PROJECT_DIR,
    timeout_s: float = BUILD_TIMEOUT_S,
) -> str:
    """``bentoml build`` of the service around these models; returns the bento tag.

    Args:
      champion_tag: the gated two-stage model (e.g. ``Registry.champion().tag``).
      catalogue_tag: from ``save_catalogue``.
      serving: service settings (workers, batching, limits) baked into the bento.
      registry: where the champion's gate decision is recorded (its lineage).
      labels: extra bento labels; the model tags and the lineage are always added.
    """
    args = bento_arguments(champion_tag, catalogue_tag, serving, registry=registry, home=home)
    all_labels = {
        "champion": args["champion"],
        "catalogue": args["catalogue"],
        **args["lineage"],
        **(labels or {}),
    }
    project = Path(project_dir)
    io.require_file(project / BENTOFILE, "bentofile")
    with tempfile.TemporaryDirectory(prefix="recsys-bento-") as tmp:
        arg_file = Path(tmp) / "args.yaml"
        # JSON is YAML: no dependency on a YAML writer for one small file
        io.write_text(json.dumps(args, indent=2), arg_file)
        cmd = [
            *bentoml_command(),
            "build",
            "-f",
            str(project / BENTOFILE),
            "--arg-file",
            str(arg_file),
        ]
        cmd += ["--output", "tag"]
        for key, value in sorted(all_labels.items()):
            cmd += ["--label", f"{_label_key(key)}={_label_value(value)}"]
        if version:
            cmd += ["--version", version]
        cmd.append(str(project))
        proc = subprocess.run(
            cmd,
            cwd=project,
            env=bentoml_env(home),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    tags = [ln for ln in proc.stdout.splitlines() if ln.startswith("__tag__:")]
    if proc.returncode != 0 or not tags:
        raise BentoBuildError(
            f"bentoml build failed (exit {proc.returncode})",
            where=str(project / BENTOFILE),
            fix=tail_lines(proc.stdout + proc.stderr),
        )
    return tags[-1].removeprefix("__tag__:").strip()


@dataclass(frozen=True)
class BentoResult(Record):
    """What ``build_champion_bento`` did (``recsys bento build --out FILE`` writes it)."""

    RECORD_WHAT = "bento build result"
    RECORD_FIX = "build again (recsys bento build --out FILE)"

    bento: str
    champion: str
    catalogue: str
    lineage: dict[str, str]
    inputs: str = ""
    """``bento_inputs``: the fingerprint of everything the bento is built from."""
    reused: bool = False
    """True when an earlier build from the same inputs was kept (``--reuse``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bento_exists(tag: str, *, home: Path | str | None = None) -> bool:
    """The bento ``name:version`` is in the local bento store (``$BENTOML_HOME/bentos``)."""
    name, _, version = tag.partition(":")
    bentos = store.bentoml_home(home) / "bentos"
    return bool(name and version) and (bentos / name / version).is_dir()


def bento_inputs(
    champion: str,
    serving: ServingConfig | None,
    blessing: Mapping[str, str],
    project_dir: Path | str = PROJECT_DIR,
) -> str:
    """Fingerprint of everything a bento is built from: the champion's tag, its lineage, the
    serving settings, ``bentofile.yaml``, the pins it installs and the code it packages. A bento is
    reused only when this is unchanged (a new setting or a code change rebuilds it)."""
    project = Path(project_dir)
    extra = {
        "champion": champion,
        "lineage": dict(blessing),
        "serving": (serving or ServingConfig()).to_dict(),
    }
    files = [project / BENTOFILE, project / REQUIREMENTS_FILE, project / "recsys"]
    return tree_digest(files, root=project, extra=extra)


def build_champion_bento(
    *,
    registry: Path | str,
    serving: ServingConfig | None = None,
    champion: str | None = None,
    catalogue: str | None = None,
    processed: Path | str | None = None,
    version: str | None = None,
    previous: BentoResult | None = None,
    home: Path | str | None = None,
) -> BentoResult:
    """The bento of the registry's champion (or ``champion``), a two-stage model: stores the
    catalogue from ``processed`` unless ``catalogue`` names a stored one, then builds.
    ``previous``: an earlier result, kept as it is when it was built from the same inputs
    (``bento_inputs``) and its bento is still in the store (a pipeline re-run with nothing
    changed builds nothing)."""
    from recsys.models.twostage import TwoStage

    if champion is None:
        record = store.Registry(registry, home=home).champion()
        if record is None:
            raise DataError(
                "there is no champion yet",
                where=str(registry),
                fix="run the pipeline (bin/pipeline) or `recsys promote TAG`; or pass --champion",
            )
        champion = record.tag
    champion = store.resolve_tag(champion, home=home)
    blessing = lineage(champion, registry=registry, home=home)
    inputs = bento_inputs(champion, serving, blessing)
    if (
        previous is not None
        and previous.inputs == inputs
        and bento_exists(previous.bento, home=home)
    ):
        return dataclasses.replace(previous, reused=True)
    kind = store.model_info(champion, home=home)["metadata"].get("recsys_model")
    if kind != TwoStage.name:
        raise DataError(
            f"{champion} is a '{kind}' model, not a two-stage ranking: the service serves what "
            "the gate measured, a retriever and a ranker in one model",
            fix="run the pipeline (it gates and promotes a `twostage` model), or "
            "`recsys compose` one and gate it",
        )
    if catalogue is None:
        if processed is None:
            raise DataError("pass a stored catalogue tag or the processed data directory")
        catalogue = save_catalogue(
            processed, data_version=lineage(champion, home=home)["data_version"], home=home
        )
    tag = build_bento(
        champion, catalogue, serving=serving, registry=registry, version=version, home=home
    )
    return BentoResult(tag, champion, store.resolve_tag(catalogue, home=home), blessing, inputs)


def _label_key(key: str) -> str:
    return key.replace("@", "_at_")


def _label_value(value: str) -> str:
    # BentoML label values: <= 63 chars of [A-Za-z0-9_.-]; tags contain ':'
    return str(value).replace(":", "_")[:63]
