"""Issue 18: the OCI image of a bento, built with buildah on a Debian base bootstrapped with
debootstrap, and run with `buildah run` (chroot isolation, the host's network).

The build and run tests need root, buildah and debootstrap (``container.unavailable`` says
which is missing; .ci/run installs the two tools from Debian's archive) and skip with that
reason otherwise. The rest runs everywhere.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from recsys import cli
from recsys.serving import container, deploy, images, infra, package, pins
from recsys.serving.bentoml_cli import load_bento
from tests.recsys.test_models_contract import synthetic_data
from tests.serving import fixtures

REPO = Path(__file__).resolve().parents[2]
WHY_NOT = container.unavailable()
needs_buildah = pytest.mark.skipif(
    WHY_NOT is not None, reason=f"this machine cannot build container images: {WHY_NOT}"
)
USERS = synthetic_data().vocab.user_ids[:50].tolist()


def test_the_bento_builds_on_the_base_image_that_containerize_bootstraps(
    bento: str, models: fixtures.StoredModels
) -> None:
    """bentofile.yaml and the service name the same base image, and the bento's image adds no
    system packages (BentoML's default build-essential/git line: 588 MB serving never uses)."""
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bentofile["docker"]["base_image"] == container.BASE_IMAGE
    image = load_bento(bento, models.home).info.image
    assert image is not None and image.base_image == container.BASE_IMAGE
    assert not any("apt-get" in command for command in image.commands), image.commands


def test_the_bento_installs_the_pins_of_requirements_lock() -> None:
    """requirements-serving.txt is current: the service's packages and all they require,
    each at the lock's version (regenerate with `python -m recsys.serving.pins`)."""
    text = (REPO / package.REQUIREMENTS_FILE).read_text()
    assert text == pins.render(REPO), (
        "requirements-serving.txt is stale: .venv/bin/python -m recsys.serving.pins > "
        "requirements-serving.txt"
    )
    served = pins.read_lock(REPO / package.REQUIREMENTS_FILE)
    lock = pins.read_lock(REPO / pins.LOCK_FILE)
    assert {pins.normalize(p) for p in pins.SERVING_PACKAGES} <= served.keys()
    assert {"python-dateutil", "uvicorn", "grpcio"} <= served.keys()  # transitive ones too
    for name, version in served.items():
        assert lock.get(name, version) == version, name
    assert served.keys() - lock.keys() <= pins.UNLOCKED_TOOLING
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bentofile["python"]["requirements_txt"] == package.REQUIREMENTS_FILE


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


FREEZE = (
    "import importlib.metadata as m\n"
    "for d in m.distributions(): print(d.metadata['Name'] + '==' + d.version)"
)


@pytest.mark.slow
@needs_buildah
def test_the_image_holds_exactly_the_pinned_packages(
    image: tuple[container.BuiltImage, container.BuiltImage],
) -> None:
    _, built = image
    ctr = container.tool(["buildah", "from", built.name], what="buildah from", fix="").strip()
    try:
        out = container.tool(
            ["buildah", "run", ctr, "--", "/app/.venv/bin/python", "-c", FREEZE],
            what="python in the image",
            fix="",
        )
    finally:
        container.tool(["buildah", "rm", ctr], what="buildah rm", fix="")
    installed = {
        pins.normalize(name): version
        for name, _, version in (line.partition("==") for line in out.splitlines() if line)
    }
    assert installed == pins.read_lock(REPO / package.REQUIREMENTS_FILE)


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


@needs_buildah
def test_manifests_of_a_bento_without_an_image_say_how_to_build_it(
    bento: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = f"{bento.partition(':')[0]}:neverbuilt000000"
    code = cli.main(["bento", "manifests", "--bento", other, "--registry", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no image localhost/recsys:neverbuilt000000" in err
    assert "recsys bento containerize --bento" in err


@pytest.mark.slow
@needs_buildah
def test_manifests_measured_from_the_running_image_validate(
    image: tuple[container.BuiltImage, container.BuiltImage], bento: str, tmp_path: Path
) -> None:
    _, built = image
    out = tmp_path / "v.kubernetes.yaml"
    args = ["bento", "manifests", "--bento", bento, "--registry", str(tmp_path)]
    assert cli.main([*args, "--duration", "3", "--out", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.35.0", strict=True)
    fp = deploy.Footprint.from_dict(json.loads((tmp_path / "v.footprint.json").read_text()))
    assert fp.image == built.name
    assert fp.uid != 0, "the server ran as root inside the container"
    assert 64 << 20 < fp.idle_memory_bytes <= fp.peak_memory_bytes < 16 << 30
    assert fp.load_cpu_cores > 0.05 and fp.throughput_rps > 0 and fp.ready_s > 0
    deployment = docs[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == fp.uid
    (box,) = pod["containers"]
    assert box["image"] == built.name
    assert box["resources"] == deploy.resources(fp)
    assert (
        deployment["metadata"]["annotations"]["recsys/champion"]
        == (built.labels["org.recsys.champion"])
    )


def _registry_get(url: str, accept: str = "application/json") -> Any:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1, plain http."""
    if shutil.which("docker-registry") is None:
        pytest.skip("no local registry: apt-get install docker-registry (.ci/run does)")
    port = infra.free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "blobs")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    with open(tmp_path / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while infra.http("GET", f"http://127.0.0.1:{port}/v2/")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "registry.log"
            ).read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
@needs_buildah
def test_the_image_pushed_to_a_registry_is_the_one_built(
    image: tuple[container.BuiltImage, container.BuiltImage], bento: str, local_registry: str
) -> None:
    """`recsys bento push` to a registry over http; the registry then serves the tag, and the
    image config it holds carries the bento's lineage labels."""
    _, built = image
    args = ["bento", "push", "--bento", bento, "--to", f"{local_registry}/team", "--insecure"]
    assert cli.main(args) == 0
    version = bento.partition(":")[2]
    base = f"http://{local_registry}/v2/team/{images.APP}"
    assert version in _registry_get(f"{base}/tags/list")["tags"]
    manifest = _registry_get(
        f"{base}/manifests/{version}", "application/vnd.oci.image.manifest.v1+json"
    )
    config = _registry_get(f"{base}/blobs/{manifest['config']['digest']}")
    assert config["config"]["Labels"]["org.recsys.bento"] == bento
    assert config["config"]["Labels"] == built.labels
    assert config["config"]["User"] not in ("", "root", "0")


@pytest.mark.slow
@needs_buildah
def test_prune_keeps_the_protected_and_the_newest_images(
    image: tuple[container.BuiltImage, container.BuiltImage],
) -> None:
    _, built = image
    repository = "localhost/recsys-prune-test"
    names = [f"{repository}:{tag}" for tag in ("a", "b", "c")]
    for name in names:
        container.tool(["buildah", "tag", built.name, name], what="buildah tag", fix="")
    try:
        removed = images.prune_images(1, protect=[names[0]], repository=repository)
        assert removed == [names[1]]
        assert container.inspect(names[0]) is not None and container.inspect(names[2]) is not None
        assert container.inspect(names[1]) is None
        assert container.inspect(built.name) is not None, "another repository's image went"
    finally:
        for name in names:
            with contextlib.suppress(container.ContainerError):
                container.tool(["buildah", "rmi", name], what="buildah rmi", fix="")
