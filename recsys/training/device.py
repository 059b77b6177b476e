"""Where a model trains: ``resolve_device("auto" | "cpu" | "gpu")`` -> a ``DevicePlan``.

The plan holds the description ``TrainResult.device`` records, mixed precision, XLA, and a
``MirroredStrategy`` on several GPUs with TensorFlow. Asking for a GPU where none is visible
raises ``DeviceError``; nothing is downgraded silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import keras

from recsys.errors import ConfigError, RecsysError


class DeviceError(RecsysError):
    """The requested device is not available."""


def _tf_gpus() -> list[Any]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # One process may not grab every GPU's whole memory (RELIABILITY.md item 10).
        with contextlib.suppress(RuntimeError, ValueError):  # already initialized
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def visible_gpus() -> list[str]:
    """Names of the GPUs the Keras backend can use (empty on a CPU-only host)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for gpu in _tf_gpus():
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except (RuntimeError, ValueError):
                details = {}
            names.append(str(details.get("device_name", "GPU")))
        return names
    if backend == "jax":
        import jax

        try:
            return [str(d.device_kind) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU backend
            return []
    if backend == "torch":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [str(torch.cuda.get_device_name(j)) for j in range(n)]
    return []


def describe_device(gpus: Sequence[str] | None = None) -> str:
    """``"cpu"``, ``"gpu:NVIDIA H100 80GB HBM3"`` or ``"gpu x2:NVIDIA H100 80GB HBM3"``."""
    names = visible_gpus() if gpus is None else list(gpus)
    if not names:
        return "cpu"
    if len(names) == 1:
        return f"gpu:{names[0]}"
    return f"gpu x{len(names)}:{names[0]}"


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a model trains. Build, compile and fit the model inside ``scope()``."""

    kind: Literal["cpu", "gpu"]
    description: str
    """What ``TrainResult.device`` records, e.g. ``"gpu:NVIDIA H100 80GB HBM3"``."""
    replicas: int = 1
    """GPUs used (``MirroredStrategy`` when > 1)."""
    mixed_precision: bool = False
    """``mixed_float16``: float16 compute, float32 variables; output layers stay float32."""
    jit_compile: bool = False
    """XLA-compile the train step."""
    hide_gpus: bool = False
    """CPU requested on a host that has GPUs: pin the computation to the CPU."""
    strategy: Any = field(default=None, compare=False, repr=False)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The dtype policy and device/distribution scope; the global policy is restored."""
        previous = keras.config.dtype_policy()
        if self.mixed_precision:
            keras.config.set_dtype_policy("mixed_float16")
        try:
            with self._device_scope():
                yield
        finally:
            keras.config.set_dtype_policy(previous)

    def _device_scope(self) -> contextlib.AbstractContextManager[Any]:
        backend = keras.backend.backend()
        if self.strategy is not None:
            return self.strategy.scope()  # type: ignore[no-any-return]
        if self.hide_gpus and backend == "tensorflow":
            import tensorflow as tf

            return tf.device("/CPU:0")  # type: ignore[no-any-return]
        if self.hide_gpus and backend == "jax":
            import jax

            return jax.default_device(jax.devices("cpu")[0])  # type: ignore[no-any-return]
        return contextlib.nullcontext()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "replicas": self.replicas,
            "mixed_precision": self.mixed_precision,
            "jit_compile": self.jit_compile,
        }


def resolve_device(
    requested: str = "auto",
    *,
    mixed_precision: bool | None = None,
    jit_compile: bool | None = None,
) -> DevicePlan:
    """Turn ``"auto" | "cpu" | "gpu"`` into a ``DevicePlan``.

    ``auto`` takes the GPU(s) when visible. On a GPU, mixed precision and XLA default to on
    (``None``); on several GPUs with TensorFlow, a ``MirroredStrategy`` (without XLA, which
    ``tf.distribute`` does not combine with Keras' train step). Other backends use one GPU.

    Raises:
      DeviceError: ``"gpu"`` requested and no GPU is visible.
      ConfigError: an unknown ``requested`` value.
    """
    if requested not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'gpu', got {requested!r}")
    gpus = visible_gpus()
    if requested == "gpu" and not gpus:
        raise DeviceError(
            f"device='gpu' was requested but the {keras.backend.backend()} backend sees no GPU",
            fix="set device: auto (uses the CPU and records it) or cpu, or check "
            "CUDA_VISIBLE_DEVICES and the CUDA install",
        )
    if requested == "cpu" or not gpus:
        return DevicePlan(kind="cpu", description="cpu", hide_gpus=bool(gpus))
    backend = keras.backend.backend()
    strategy = None
    used = gpus[:1]
    if len(gpus) > 1 and backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        used = gpus
    return DevicePlan(
        kind="gpu",
        description=describe_device(used),
        replicas=len(used),
        mixed_precision=True if mixed_precision is None else mixed_precision,
        jit_compile=(strategy is None) if jit_compile is None else jit_compile,
        strategy=strategy,
    )
