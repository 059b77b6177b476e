"""Deploying the bento's OCI image on Kubernetes: manifests whose numbers are measured.

**Manifests** (``kubernetes_manifests``): a Deployment, a Service, a HorizontalPodAutoscaler
and a PodDisruptionBudget for one image. Their numbers come from running that image here
(``measure_footprint``: ``buildah run``, then ``clients`` closed-loop clients on
``POST /recommend`` for ``duration_s`` seconds), by these rules:

- memory request: the container's peak proportional set size (PSS, summed over its
  processes, so pages shared between them count once, as a cgroup counts them) + 25 %,
  rounded up to 32 MiB; memory limit: twice the peak (a pod past its limit is killed, so the
  limit leaves room for a larger catalogue or batch);
- CPU request: the cores the container used under that load, rounded up to 50 m (at least
  100 m); CPU limit: twice the request, at least one core (a tight CPU limit throttles the
  TensorFlow threads and shows up as p99 latency);
- the autoscaler adds replicas when the mean CPU use passes ``target_cpu_percent`` of the
  request: a replica is scaled out before it reaches the load it was measured at;
- probes: ``/readyz`` (readiness), ``/livez`` (liveness) and a startup probe on ``/livez``
  that allows three times the measured start (the model loads before the server answers);
- the pod runs as the user the image's server ran as (numeric, as ``runAsNonRoot`` needs).

The load generator runs on the same machine, so on a small host the measured CPU is what the
server got while sharing the cores with its clients: a floor for a dedicated node.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from recsys.config_ops import KubernetesConfig
from recsys.data import io
from recsys.serving import container, infra, loadgen
from recsys.serving.images import APP, image_reference
from recsys.serving.paths import BENTOS_DIR

PORT = 3000
MIB = 1 << 20
ANNOTATION_PREFIX = "recsys"
"""Lineage annotations on the manifests: ``recsys/champion``, ``recsys/data_version`` ..."""


@dataclass(frozen=True)
class Footprint:
    """What one container used, serving ``clients`` closed-loop clients on this machine."""

    image: str
    ready_s: float
    idle_memory_bytes: int
    peak_memory_bytes: int
    load_cpu_cores: float
    clients: int
    load_s: float
    throughput_rps: float
    p99_ms: float
    uid: int
    host_cpus: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Footprint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _pss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:  # ended meanwhile
            continue
    return total


def _cpu_seconds(pids: Sequence[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise container.ContainerError(f"no Uid line in /proc/{pid}/status")


def measure_footprint(
    image: str,
    bodies: Sequence[bytes],
    *,
    log: Path,
    clients: int = 8,
    duration_s: float = 10.0,
    ready_timeout_s: float = 300.0,
) -> Footprint:
    """Run ``image``, wait for ``/readyz``, warm it for 2 s, then drive ``POST /recommend``
    with ``clients`` clients for ``duration_s`` s while sampling the memory (PSS) and CPU
    time of the container's processes."""
    port = infra.free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with container.running(image, port, log=log) as proc:
        ready = infra.wait_ready(url, proc, ready_timeout_s, interval_s=0.1)
        if ready is None:
            raise container.ContainerError(
                f"{image} did not become ready within {ready_timeout_s:.0f} s",
                where=str(log),
                fix="read the container's log; `recsys bento validate` checks the bare bento",
            )
        ready_s = time.monotonic() - start
        pids = container.container_processes(proc.pid)
        server = pids[0]
        idle = _pss_bytes(pids)
        loadgen.run_load(url, "/recommend", bodies, concurrency=clients, duration_s=2.0)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                peak.append(_pss_bytes(container.container_processes(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        cpu0, t0 = _cpu_seconds(container.container_processes(proc.pid)), time.monotonic()
        sampler.start()
        try:
            result = loadgen.run_load(
                url, "/recommend", bodies, concurrency=clients, duration_s=duration_s
            )
        finally:
            done.set()
            sampler.join()
        cpu1, t1 = _cpu_seconds(container.container_processes(proc.pid)), time.monotonic()
        uid = _uid(server)
    summary = result.summary()
    if not summary.get("ok"):
        raise container.ContainerError(
            f"{image} answered no POST /recommend with 200 under load",
            where=str(log),
            fix="read the container's log",
        )
    return Footprint(
        image=image,
        ready_s=round(ready_s, 2),
        idle_memory_bytes=idle,
        peak_memory_bytes=max(peak),
        load_cpu_cores=round((cpu1 - cpu0) / (t1 - t0), 3),
        clients=clients,
        load_s=round(t1 - t0, 2),
        throughput_rps=float(summary["throughput_rps"]),
        p99_ms=float(summary["p99_ms"]),
        uid=uid,
        host_cpus=os.cpu_count() or 1,
    )


def _round_up(value: float, step: float) -> float:
    return math.ceil(value / step - 1e-9) * step


def resources(footprint: Footprint) -> dict[str, dict[str, str]]:
    """Requests and limits from a measured footprint (the rules in the module docstring)."""
    memory = _round_up(footprint.peak_memory_bytes * 1.25, 32 * MIB)
    memory_limit = _round_up(footprint.peak_memory_bytes * 2, 32 * MIB)
    cpu_m = max(100, int(_round_up(footprint.load_cpu_cores * 1000, 50)))
    cpu_limit_m = max(1000, int(_round_up(2 * cpu_m, 100)))
    return {
        "requests": {"cpu": f"{cpu_m}m", "memory": f"{int(memory // MIB)}Mi"},
        "limits": {"cpu": f"{cpu_limit_m}m", "memory": f"{int(memory_limit // MIB)}Mi"},
    }


def kubernetes_manifests(
    image: str,
    footprint: Footprint,
    labels: Mapping[str, str],
    config: KubernetesConfig | None = None,
    *,
    registry: str = "",
) -> list[dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget of ``image``
    (``labels``: the image's labels, whose ``org.recsys.*`` lineage becomes annotations)."""
    config = config or KubernetesConfig()
    version = image.rpartition(":")[2]
    selector = {"app.kubernetes.io/name": APP}
    meta_labels = {
        **selector,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": "recommender",
        "app.kubernetes.io/managed-by": "recsys",
    }
    lineage = {
        f"{ANNOTATION_PREFIX}/{key.removeprefix('org.recsys.')}": value
        for key, value in sorted(labels.items())
        if key.startswith("org.recsys.") and not key.startswith("org.recsys.base.")
    }
    lineage[f"{ANNOTATION_PREFIX}/measured"] = (
        f"peak {footprint.peak_memory_bytes / MIB:.0f} MiB, {footprint.load_cpu_cores:.2f} cores"
        f" at {footprint.clients} clients ({footprint.throughput_rps:.0f} rps, p99"
        f" {footprint.p99_ms:.1f} ms) on a {footprint.host_cpus}-core host; ready in"
        f" {footprint.ready_s:.1f} s"
    )
    metadata = {"name": APP, "labels": meta_labels, "annotations": lineage}

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    startup_failures = max(30, math.ceil(3 * footprint.ready_s / 2))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": config.min_replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": meta_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": footprint.uid,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": APP,
                            "image": image_reference(image, registry),
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["serve", "--host", "0.0.0.0", "--port", str(PORT)],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "resources": resources(footprint),
                            "startupProbe": probe("/livez", 2, startup_failures),
                            "readinessProbe": probe("/readyz", 5, 3),
                            "livenessProbe": probe("/livez", 10, 3),
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": APP, "labels": meta_labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP, "labels": meta_labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "minReplicas": config.min_replicas,
            "maxReplicas": config.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": config.target_cpu_percent,
                        },
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": APP, "labels": meta_labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [deployment, service, autoscaler, budget]


def manifests_path(registry: Path | str, bento_tag: str) -> Path:
    """``<registry>/bentos/<name>/<version>.kubernetes.yaml``: beside the bento's validation
    report, versioned with the registry."""
    name, _, version = bento_tag.partition(":")
    return Path(registry) / BENTOS_DIR / name / f"{version}.kubernetes.yaml"


class _PlainDumper(yaml.SafeDumper):
    """Writes a mapping used twice (the labels) twice, not as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_manifests(
    docs: Sequence[Mapping[str, Any]], footprint: Footprint, path: Path | str
) -> Path:
    """The manifests as one multi-document YAML file (``kubectl apply -f PATH``), and the
    footprint they were derived from beside it (``*.footprint.json``)."""
    path = Path(path)
    header = (
        "# Generated by `recsys bento manifests` from measuring the image (recsys.serving.deploy;\n"
        '# docs/operations.md "Kubernetes"). Apply with: kubectl apply -f '
        f"{path.name}\n"
    )
    body = yaml.dump_all(list(docs), Dumper=_PlainDumper, sort_keys=False)
    io.write_text(header + body, path)
    io.write_text(
        json.dumps(footprint.to_dict(), indent=2) + "\n",
        path.with_name(path.name.replace(".kubernetes.yaml", ".footprint.json")),
    )
    return path
