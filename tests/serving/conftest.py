"""Serving fixtures: tiny models in a temporary BENTOML_HOME, a bento built through the CLI,
and that bento served on 127.0.0.1 (one server per test module, stopped with its process
group; every wait bounded)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import cli
from recsys.serving import package
from tests.serving import fixtures

READY_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fixtures.StoredModels]:
    home = tmp_path_factory.mktemp("bentoml")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENTOML_HOME", str(home))
    yield fixtures.store_models(home)
    mp.undo()


@pytest.fixture(scope="module")
def bento(models: fixtures.StoredModels) -> str:
    """Built through the CLI (`recsys bento build`), default serving settings."""
    code = cli.main(
        [
            "bento",
            "build",
            "--champion",
            models.champion,
            "--catalogue",
            models.catalogue,
        ]
    )
    assert code == 0
    bentos = [p for p in (models.home / "bentos" / "recsys").iterdir() if p.name != "latest"]
    assert len(bentos) == 1
    return f"recsys:{bentos[0].name}"


@pytest.fixture(scope="module")
def serve_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served bento's log (stdout and stderr of `bentoml serve` and its workers)."""
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def served(
    bento: str, models: fixtures.StoredModels, serve_log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(base URL, the `bentoml serve` process): the fault tests need the process tree."""
    with package.serving(bento, home=models.home, log=serve_log) as (url, proc, log):
        ready = package.wait_ready(url, proc, READY_TIMEOUT_S)
        assert ready is not None, log.read_text()[-3000:]
        yield url, proc


@pytest.fixture(scope="module")
def server(served: tuple[str, subprocess.Popen[bytes]]) -> str:
    return served[0]
