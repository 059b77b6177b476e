"""The operations sections of ``params.yaml``: ``container`` (the bento's OCI image and its
Kubernetes manifests) and ``monitoring`` (the service-health sensor). ``recsys.config``
re-exports every name."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContainerBaseConfig:
    """The base image ``recsys bento containerize`` bootstraps with debootstrap
    (``recsys.serving.container``): rebuilt when the release or the package list changes."""

    release: str = "bookworm"
    """Debian release; bookworm's python3 is 3.11, the project's Python."""
    packages: tuple[str, ...] = ("python3.11", "python3-venv", "python3-pip", "ca-certificates")
    mirror: str = "http://deb.debian.org/debian"

    def __post_init__(self) -> None:
        if not self.release or not self.packages or not self.mirror:
            raise ValueError("release, packages and mirror must not be empty")


@dataclass(frozen=True)
class KubernetesConfig:
    """The manifests ``recsys bento manifests`` writes beside the bento
    (``recsys.serving.deploy``); requests and limits come from measuring the container."""

    min_replicas: int = 2
    max_replicas: int = 6
    target_cpu_percent: int = 70
    """The HorizontalPodAutoscaler's target: mean CPU use, in percent of the request."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")
        if not 1 <= self.target_cpu_percent <= 100:
            raise ValueError("target_cpu_percent must be within 1..100")


@dataclass(frozen=True)
class ContainerConfig:
    """The OCI image of the champion's bento (issue 18): opt-in, since it needs root, buildah
    and debootstrap; ``enabled`` builds it after the bento (the ``bento_image`` asset)."""

    enabled: bool = False
    registry: str = ""
    """A team's registry (``host[:port]/path``): the manifests name the image there and
    ``recsys bento push`` pushes it; "" keeps the local name."""
    keep_images: int = 3
    """``recsys bento prune``: images kept besides the deployable bento's (newest first)."""
    base: ContainerBaseConfig = field(default_factory=ContainerBaseConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)

    def __post_init__(self) -> None:
        if self.keep_images < 0:
            raise ValueError("keep_images must be >= 0")


@dataclass(frozen=True)
class MonitoringConfig:
    """What ``service_health_sensor`` reads (orchestration/defs/sensors.py): the Prometheus
    that scrapes the service and evaluates ``recsys/serving/prometheus/alerts.yml``."""

    prometheus_url: str = ""
    """e.g. http://prometheus:9090; "": the sensor records that it has nothing to read."""
    retrain_on: tuple[str, ...] = (
        "RecsysUnknownUsersHigh",
        "RecsysFallbackRateHigh",
        "RecsysServedPopularityDrift",
    )
    """Firing alerts that mean the champion is stale against the traffic: they start a run."""
    cooldown_s: int = 21_600
    """After starting a run, the sensor waits this long before it starts another."""

    def __post_init__(self) -> None:
        if self.cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")


@dataclass(frozen=True)
class ModelUpdate:
    """One model's own ``update`` settings (``update.models.<name>``); None: the section's."""

    epochs: int | None = None
    replay: float | None = None


@dataclass(frozen=True)
class UpdateConfig:
    """``recsys update`` (recsys/update.py): a challenger from the champion and a batch of new
    interactions without a full retrain, and when a full retrain is due instead."""

    epochs: int = 2
    """Warm-start epochs over the batch and its replay sample (Keras models)."""
    replay: float = 1.0
    """Old training rows replayed per batch row."""
    incoming: str = "data/incoming"
    """Where batches arrive (``new_raw_data_sensor`` starts ``update_job`` for each file)."""
    max_age_hours: float = 168.0
    """A full retrain is due when the champion's last full training is older than this."""
    max_updates: int = 24
    """... or when this many updates have been chained onto it."""
    full_on_drift: bool = True
    """... or when the batch moves the data past ``validation.drift``'s tolerances."""
    models: dict[str, ModelUpdate] = field(default_factory=dict)
    """Per model name (``neumf``, ``twotower``, ...): its own ``epochs`` / ``replay``."""

    def for_model(self, name: str) -> tuple[int, float]:
        """(epochs, replay) of model ``name``: its own where set, else the section's."""
        own = self.models.get(name, ModelUpdate())
        epochs = self.epochs if own.epochs is None else own.epochs
        replay = self.replay if own.replay is None else own.replay
        return int(epochs), float(replay)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.replay <= 100:
            raise ValueError(f"replay must be in [0, 100], got {self.replay}")
        if self.max_age_hours <= 0 or self.max_updates < 1:
            raise ValueError("max_age_hours must be > 0 and max_updates >= 1")
        for name, own in self.models.items():
            if (own.epochs is not None and own.epochs < 1) or not 0 <= (own.replay or 0) <= 100:
                raise ValueError(f"models.{name}: epochs must be >= 1 and replay in [0, 100]")
