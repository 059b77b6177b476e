"""A bento is rebuilt whenever anything it is built from changes (issue 16, part 2: every cache
key covers every input): the champion, its lineage, the serving settings, the bentofile and
the packaged code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recsys.config import ServingConfig
from recsys.serving import package
from tests.conftest import REPO
from tests.serving import fixtures

LINEAGE = {"data_version": "d1", "params_hash": "p1", "gate_decision": "decisions/x.json"}


def project_copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "recsys").mkdir(parents=True)
    shutil.copy(REPO / "bentofile.yaml", project / "bentofile.yaml")
    shutil.copy(REPO / package.REQUIREMENTS_FILE, project / package.REQUIREMENTS_FILE)
    (project / "recsys" / "a.py").write_text("x = 1\n")
    return project


def test_bento_inputs_cover_every_input(tmp_path: Path) -> None:
    project = project_copy(tmp_path)

    def key(**changes: object) -> str:
        args = {"champion": "recsys-twostage:v1", "serving": ServingConfig(), "blessing": LINEAGE}
        return package.bento_inputs(**{**args, **changes}, project_dir=project)  # type: ignore[arg-type]

    base = key()
    assert key() == base
    assert key(champion="recsys-twostage:v2") != base
    assert key(serving=ServingConfig(workers=2)) != base
    assert key(blessing={**LINEAGE, "gate_decision": "decisions/y.json"}) != base
    (project / "recsys" / "a.py").write_text("x = 2\n")
    assert key() != base
    changed = key()
    (project / "recsys" / "__pycache__").mkdir()
    (project / "recsys" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert key() == changed  # byte-code caches are not an input
    (project / "bentofile.yaml").write_text("service: x\n")
    assert key() != changed
    changed = key()
    pins = project / package.REQUIREMENTS_FILE
    pins.write_text(pins.read_text().replace("numpy==", "numpy<="))
    assert key() != changed  # the image's packages are an input


def test_a_previous_bento_is_reused_only_for_the_same_inputs(
    models: fixtures.StoredModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision of ``build_champion_bento``: the same inputs and the bento still stored:
    reused, nothing built; another serving setting: built again (``build_bento`` recorded)."""
    built: list[ServingConfig | None] = []

    def fake_build(champion: str, catalogue: str, **kwargs: object) -> str:
        built.append(kwargs.get("serving"))  # type: ignore[arg-type]
        return "recsys:new"

    monkeypatch.setattr(package, "build_bento", fake_build)
    args = {
        "registry": tmp_path / "registry",
        "champion": models.champion,
        "catalogue": models.catalogue,
        "home": models.home,
    }
    first = package.build_champion_bento(**args)  # type: ignore[arg-type]
    assert first.bento == "recsys:new" and not first.reused and len(built) == 1
    assert first.lineage["gate_decision"] == "ungated"
    (models.home / "bentos" / "recsys" / "new").mkdir(parents=True, exist_ok=True)
    again = package.build_champion_bento(**args, previous=first)  # type: ignore[arg-type]
    assert again.reused and again.bento == first.bento and len(built) == 1
    other = ServingConfig(max_batch=8)
    rebuilt = package.build_champion_bento(**args, serving=other, previous=first)  # type: ignore[arg-type]
    assert not rebuilt.reused and built[-1] == other and rebuilt.inputs != first.inputs
