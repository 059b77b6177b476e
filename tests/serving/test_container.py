"""Issue 18: the OCI image of a bento, built with buildah on a Debian base bootstrapped with
debootstrap, and run with `buildah run` (chroot isolation, the host's network).

The build and run tests need root, buildah and debootstrap (``container.unavailable`` says
which is missing; .ci/run installs the two tools from Debian's archive) and skip with that
reason otherwise. The rest runs everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from recsys import cli
from recsys.serving import container, infra
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures

REPO = Path(__file__).resolve().parents[2]
WHY_NOT = container.unavailable()
needs_buildah = pytest.mark.skipif(
    WHY_NOT is not None, reason=f"this machine cannot build container images: {WHY_NOT}"
)
USERS = synthetic_data().vocab.user_ids[:50].tolist()


def test_bentofile_builds_on_the_base_image_that_containerize_bootstraps() -> None:
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bentofile["docker"]["base_image"] == container.BASE_IMAGE


def test_base_fingerprint_follows_the_release_and_package_list_only() -> None:
    base = container.BaseImage()
    same = container.BaseImage(
        packages=tuple(reversed(base.packages)), mirror="http://mirror.example/debian"
    )
    assert same.fingerprint == base.fingerprint
    assert container.BaseImage(packages=(*base.packages, "curl")).fingerprint != base.fingerprint
    assert container.BaseImage(release="trixie").fingerprint != base.fingerprint


def test_image_name_carries_the_bento_version() -> None:
    assert container.image_name("recsys:abc123") == "localhost/recsys:abc123"
    for vague in ("recsys", "recsys:latest"):
        with pytest.raises(container.ContainerError, match="one bento version") as caught:
            container.image_name(vague)
        assert "bentoml list" in (caught.value.fix or "")


def test_labels_carry_the_lineage_and_the_git_revision() -> None:
    labels = container.lineage_labels(
        {"champion": "recsys-twostage:v1", "data_version": "d1", "gate_decision": "g.json"},
        "recsys:abc123",
    )
    assert labels["org.recsys.champion"] == "recsys-twostage:v1"
    assert labels["org.recsys.data_version"] == "d1"
    assert labels["org.recsys.gate_decision"] == "g.json"
    assert labels["org.recsys.bento"] == "recsys:abc123"
    assert labels["org.opencontainers.image.version"] == "abc123"
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"].startswith(head)


def test_missing_tools_are_named_with_the_command_that_installs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tool on it
    why = container.unavailable()
    assert why is not None
    assert "buildah and debootstrap not installed" in why
    assert "apt-get install" in why
    with pytest.raises(container.ContainerError, match="'buildah' is not installed"):
        container.tool(["buildah", "info"], what="buildah info", fix="install it")


def test_a_failing_tool_reports_its_output_and_the_fix() -> None:
    with pytest.raises(container.ContainerError) as caught:
        container.tool(
            ["sh", "-c", "echo the-reason >&2; exit 3"], what="a step", fix="do the thing"
        )
    assert "a step failed (exit 3)" in caught.value.what
    assert "the-reason" in caught.value.what
    assert caught.value.fix == "do the thing"


def test_containerize_without_a_champion_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["bento", "containerize", "--registry", str(tmp_path / "registry")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no champion" in err
    assert "promote" in err


def test_a_bento_whose_model_left_the_store_is_refused_before_building(
    bento: str, models: fixtures.StoredModels, tmp_path: Path
) -> None:
    home = tmp_path / "bentoml"
    shutil.copytree(models.home, home)
    name, _, version = models.catalogue.partition(":")
    shutil.rmtree(home / "models" / name / version)
    with pytest.raises(container.ContainerError, match="catalogue model") as caught:
        container.containerize_bento(bento, home=home)
    assert "recsys bento build" in (caught.value.fix or "")


@needs_buildah
def test_a_base_image_that_cannot_be_bootstrapped_leaves_no_image() -> None:
    broken = container.BaseImage(
        mirror="http://127.0.0.1:9/debian", name="localhost/recsys-base-test-broken:x"
    )
    with pytest.raises(container.ContainerError) as caught:
        container.ensure_base_image(broken)
    assert "debootstrap" in caught.value.what
    assert "127.0.0.1:9" in (caught.value.fix or "")
    assert container.inspect(broken.name) is None


@pytest.fixture(scope="module")
def image(
    bento: str, models: fixtures.StoredModels
) -> Iterator[tuple[container.BuiltImage, container.BuiltImage]]:
    if WHY_NOT is not None:
        pytest.skip(f"this machine cannot build container images: {WHY_NOT}")
    base, built = container.containerize_bento(bento, home=models.home)
    yield base, built
    container.tool(["buildah", "rmi", built.name], what="buildah rmi", fix="")


@pytest.mark.slow
@needs_buildah
def test_the_image_carries_the_bento_lineage_and_runs_unprivileged(
    image: tuple[container.BuiltImage, container.BuiltImage], bento: str
) -> None:
    base, built = image
    assert base.labels[container.FINGERPRINT_LABEL] == container.BaseImage().fingerprint
    assert built.name == container.image_name(bento)
    assert built.labels["org.recsys.bento"] == bento
    assert built.labels["org.recsys.champion"]
    assert built.labels["org.opencontainers.image.revision"]
    info = container.inspect(built.name)
    assert info is not None
    config = info["OCIv1"]["config"]
    assert config["User"] not in ("", "root", "0")
    assert "3000/tcp" in config["ExposedPorts"]
    assert built.size_bytes > base.size_bytes > 0


@pytest.mark.slow
@needs_buildah
def test_a_rebuild_with_unchanged_inputs_reuses_every_layer(
    image: tuple[container.BuiltImage, container.BuiltImage],
    bento: str,
    models: fixtures.StoredModels,
) -> None:
    _, first = image
    base, again = container.containerize_bento(bento, home=models.home)
    assert base.reused
    assert again.image_id == first.image_id


@pytest.mark.slow
@needs_buildah
def test_the_running_container_answers_as_the_bare_bento(
    image: tuple[container.BuiltImage, container.BuiltImage], server: str, tmp_path: Path
) -> None:
    """/recommend for 50 users (same items, order and model tag), /metrics, /livez, and the
    same 4xx for a malformed request; SIGTERM ends the container's processes."""
    _, built = image
    port = infra.free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "container.log"
    with container.running(built.name, port, log=log) as proc:
        ready = infra.wait_ready(url, proc, 180.0)
        assert ready is not None, log.read_text(errors="replace")[-3000:]
        for user in USERS:
            body = {"user_id": user, "k": 10}
            inside = infra.http("POST", f"{url}/recommend", body)
            outside = infra.http("POST", f"{server}/recommend", body)
            assert inside[0] == outside[0] == 200
            assert inside[1]["model_tag"] == outside[1]["model_tag"]
            assert [i["item_id"] for i in inside[1]["items"]] == [
                i["item_id"] for i in outside[1]["items"]
            ]
        bad = {"user_id": USERS[0], "k": -5}
        status_in, _ = infra.http("POST", f"{url}/recommend", bad)
        status_out, _ = infra.http("POST", f"{server}/recommend", bad)
        assert status_in == status_out and 400 <= status_in < 500
        status, text = infra.http("GET", f"{url}/metrics")
        assert status == 200 and "recsys_index_info" in str(text)
        assert infra.http("GET", f"{url}/livez")[0] == 200
        tree = infra.process_tree(proc.pid)
        assert any("bentoml" in infra.process_cmdline(p) for p in tree)
        code = container.stop_container(proc)
    assert code is not None, "buildah run did not end on SIGTERM"
    deadline = time.monotonic() + 10
    while any(infra.process_cmdline(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {p: infra.process_cmdline(p) for p in tree if infra.process_cmdline(p)}
    assert not left, f"orphaned container processes: {left}"
    assert infra.http("GET", f"{url}/livez")[0] == 0, "the port still answers"
