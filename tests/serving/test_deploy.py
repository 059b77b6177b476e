"""Issue 18 §3: Kubernetes manifests derived from a measured footprint, validated against the
Kubernetes API schemas (kubernetes-validate, strict: unknown fields are errors), and the image
names a cluster pulls and a push goes to. The measurement itself, the push and the prune run
on a real image in test_container.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from recsys.config_ops import KubernetesConfig
from recsys.serving import container, deploy, images

KUBERNETES_VERSIONS = ("1.29.0", "1.32.0", "1.35.0")
"""Releases from two years back to recent ones: the manifests use only stable APIs."""
MIB = 1 << 20
LABELS = {
    "org.recsys.bento": "recsys:abc123",
    "org.recsys.champion": "recsys-twostage_x7oea7hsow5a4ax4",
    "org.recsys.data_version": "34bc44299e42c7c1e031174e322a54da.dir",
    "org.recsys.gate_decision": "decisions/recsys-twostage/x7oea7hsow5a4ax4.json",
    "org.recsys.base.fingerprint": "21774ce6e9246d3d",
    "org.opencontainers.image.revision": "5357b39e",
}
# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{NAME}$")
LABEL_VALUE = re.compile(rf"^({NAME})?$")


def footprint(**changes: Any) -> deploy.Footprint:
    values: dict[str, Any] = {
        "image": "localhost/recsys:abc123",
        "ready_s": 6.5,
        "idle_memory_bytes": 850 * MIB,
        "peak_memory_bytes": 900 * MIB + 12345,
        "load_cpu_cores": 1.234,
        "clients": 8,
        "load_s": 10.0,
        "throughput_rps": 2000.0,
        "p99_ms": 12.5,
        "uid": 1034,
        "host_cpus": 2,
    }
    return deploy.Footprint(**{**values, **changes})


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def quantity_mib(text: str) -> int:
    assert text.endswith("Mi"), text
    return int(text[:-2])


def quantity_millicores(text: str) -> int:
    assert text.endswith("m"), text
    return int(text[:-1])


def test_requests_and_limits_follow_the_measurement() -> None:
    fp = footprint()
    res = deploy.resources(fp)
    mem_req, mem_lim = (
        quantity_mib(res["requests"]["memory"]),
        quantity_mib(res["limits"]["memory"]),
    )
    peak_mib = fp.peak_memory_bytes / MIB
    assert mem_req % 32 == 0 and mem_lim % 32 == 0
    assert peak_mib * 1.25 <= mem_req < peak_mib * 1.25 + 32
    assert peak_mib * 2 <= mem_lim < peak_mib * 2 + 32
    cpu_req = quantity_millicores(res["requests"]["cpu"])
    assert cpu_req % 50 == 0 and 1234 <= cpu_req < 1234 + 50
    assert quantity_millicores(res["limits"]["cpu"]) >= max(1000, 2 * cpu_req)
    # a light service still asks for a floor and may burst to a core
    light = deploy.resources(footprint(load_cpu_cores=0.01, peak_memory_bytes=10 * MIB))
    assert light["requests"]["cpu"] == "100m" and light["limits"]["cpu"] == "1000m"
    # twice the memory measured: twice the request (give or take the rounding)
    double = deploy.resources(footprint(peak_memory_bytes=2 * fp.peak_memory_bytes))
    assert abs(quantity_mib(double["requests"]["memory"]) - 2 * mem_req) <= 32


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    docs = deploy.kubernetes_manifests("localhost/recsys:abc123", footprint(), LABELS)
    assert {d["kind"] for d in docs} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_what_a_cluster_would_refuse() -> None:
    """The schema check is live: a misspelt field and a wrong type are errors."""
    deployment = by_kind(deploy.kubernetes_manifests("localhost/recsys:v1", footprint(), {}))[
        "Deployment"
    ]
    spec = deployment["spec"]["template"]["spec"]["containers"][0]
    spec["readinessProbe"]["httpGet"]["pth"] = spec["readinessProbe"]["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = by_kind(deploy.kubernetes_manifests("localhost/recsys:v1", footprint(), {}))[
        "Deployment"
    ]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_deployment_probes_runs_unprivileged_and_carries_the_lineage() -> None:
    fp = footprint(ready_s=40.0, uid=1034)
    docs = by_kind(
        deploy.kubernetes_manifests(
            "localhost/recsys:abc123", fp, LABELS, KubernetesConfig(min_replicas=3)
        )
    )
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (box,) = pod["containers"]
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["livenessProbe"]["httpGet"]["path"] == "/livez"
    startup = box["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 3 * fp.ready_s
    assert box["ports"][0]["containerPort"] == deploy.PORT
    assert box["resources"] == deploy.resources(fp)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1034
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = deployment["metadata"]["annotations"]
    assert annotations["recsys/champion"] == LABELS["org.recsys.champion"]
    assert annotations["recsys/bento"] == "recsys:abc123"
    assert not any("fingerprint" in key or "opencontainers" in key for key in annotations)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert docs["Service"]["spec"]["selector"] == selector
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    for doc in docs.values():
        for key, value in doc["metadata"].get("labels", {}).items():
            assert KEY.match(key) and LABEL_VALUE.match(value), (key, value)
        for key in doc["metadata"].get("annotations", {}):
            assert KEY.match(key), key


def test_the_autoscaler_follows_the_container_settings() -> None:
    config = KubernetesConfig(min_replicas=2, max_replicas=9, target_cpu_percent=55)
    hpa = by_kind(deploy.kubernetes_manifests("localhost/recsys:v1", footprint(), {}, config))[
        "HorizontalPodAutoscaler"
    ]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deploy.APP,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 9)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 55
    with pytest.raises(ValueError, match="min_replicas"):
        KubernetesConfig(min_replicas=5, max_replicas=2)


def test_a_registry_names_the_image_the_cluster_pulls() -> None:
    assert images.image_reference("localhost/recsys:v1") == "localhost/recsys:v1"
    assert (
        images.image_reference("localhost/recsys:v1", "registry.shop.example:5000/ml/")
        == "registry.shop.example:5000/ml/recsys:v1"
    )
    docs = deploy.kubernetes_manifests(
        "localhost/recsys:v1", footprint(), {}, registry="ghcr.io/shop"
    )
    image = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/shop/recsys:v1"
    assert images.push_destination("localhost/recsys:v1", "ghcr.io/shop") == (
        "docker://ghcr.io/shop/recsys:v1"
    )
    assert images.push_destination("localhost/recsys:v1", "oci-archive:/tmp/x.tar") == (
        "oci-archive:/tmp/x.tar"
    )


def test_pushing_without_a_registry_says_how_to_name_one() -> None:
    with pytest.raises(container.ContainerError) as caught:
        images.push("localhost/recsys:v1", "")
    assert "container.registry" in (caught.value.fix or "")


def test_the_written_file_applies_as_it_was_generated(tmp_path: Path) -> None:
    fp = footprint()
    docs = deploy.kubernetes_manifests("localhost/recsys:v1", fp, LABELS)
    path = deploy.write_manifests(docs, fp, tmp_path / "v1.kubernetes.yaml")
    text = path.read_text()
    assert "&id" not in text and "*id" not in text, "anchors and aliases confuse reviewers"
    assert text.startswith("# Generated by `recsys bento manifests`")
    assert list(yaml.safe_load_all(text)) == docs
    again = deploy.Footprint.from_dict(yaml.safe_load((tmp_path / "v1.footprint.json").read_text()))
    assert again == fp


def test_manifests_live_beside_the_bento_report(tmp_path: Path) -> None:
    path = deploy.manifests_path(tmp_path, "recsys:abc123")
    assert path == tmp_path / "bentos" / "recsys" / "abc123.kubernetes.yaml"
