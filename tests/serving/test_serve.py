"""``recsys serve`` (issue 16 part 5): listed by ``--help``; a clear error (what, where, how
to fix) when there is no champion, no deployable bento, or one built for another model; and a
real serve of the registry's deployable bento on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys import cli
from recsys.data import io
from recsys.serving import package
from recsys.serving.store import ChampionRecord, Registry
from tests.serving import fixtures

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
READY_TIMEOUT_S = 150.0


def make_registry(root: Path, champion: str | None, bento: str | None) -> Path:
    """A registry whose champion pointer and deployable bento are ``champion`` and ``bento``
    (written as promotion and validation write them; None: absent)."""
    registry = Registry(root)
    if champion is not None:
        record = ChampionRecord(tag=champion, since="2026-01-01T00:00:00+00:00",
                                action="promote", split_fingerprint="test")  # fmt: skip
        io.write_json(record.to_dict(), registry.champion_file)
    if bento is not None:
        io.write_json({"bento_tag": bento}, root / package.DEPLOYABLE_FILE)
    return root


def test_help_lists_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    assert "serve the champion's deployable bento" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    usage = capsys.readouterr().out
    assert all(option in usage for option in ("--registry", "--bento", "--host", "--port"))


def test_no_champion_is_an_error_naming_what_where_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = make_registry(tmp_path / "registry", None, None)
    assert cli.main(["serve", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "there is no champion yet" in err
    assert f"where: {registry / 'champion.json'}" in err
    assert "recsys promote" in err and "recsys bento build" in err


def test_a_champion_without_a_deployable_bento_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = make_registry(tmp_path / "registry", "recsys-ease:v1", None)
    assert cli.main(["serve", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "the champion recsys-ease:v1 has no deployable bento yet" in err
    assert f"where: {registry / 'deployable.json'}" in err and "recsys bento validate" in err


def test_a_bento_missing_from_the_store_or_built_for_another_model_is_an_error(
    bento: str, models: fixtures.StoredModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = make_registry(tmp_path / "a", models.champion, "recsys:nosuchversion")
    assert cli.main(["serve", "--registry", str(registry)]) == 2
    assert "bento 'recsys:nosuchversion' is not in the bento store" in capsys.readouterr().err
    registry = make_registry(tmp_path / "b", "recsys-other:v2", bento)
    assert cli.main(["serve", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err
    assert f"the deployable bento {bento} serves {models.champion}" in err
    assert "not the champion recsys-other:v2" in err and "--bento TAG" in err


def test_serve_serves_the_champions_deployable_bento(
    bento: str, models: fixtures.StoredModels, tmp_path: Path
) -> None:
    registry = make_registry(tmp_path / "registry", models.champion, bento)
    port = package.free_port()
    cmd = [sys.executable, "-m", "recsys.cli", "serve", "--registry", str(registry)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    env = {**os.environ, "BENTOML_HOME": str(models.home), "BENTOML_DO_NOT_TRACK": "True"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=package.PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            assert package.wait_ready(url, proc, READY_TIMEOUT_S) is not None, log.read_text()
            status, body = package.http("POST", f"{url}/recommend", {"user_id": 1, "k": 3})
            assert status == 200 and body["model_tag"] == models.champion, body
        finally:
            package.stop(proc)
    assert f"serving {bento}: " in log.read_text().splitlines()[0]
    assert json.loads((registry / package.DEPLOYABLE_FILE).read_text())["bento_tag"] == bento
