"""The machine a measurement ran on: recorded with every benchmark result and timing record."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def hardware() -> dict[str, Any]:
    """CPU model, usable cores, memory, platform and NVIDIA GPU models (none: ``[]``)."""
    cpu = platform.processor() or "unknown"
    gpus: list[str] = []
    try:  # system facts, not data files: read straight from /proc
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    gpus.append(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "gpus": gpus,
        "platform": platform.platform(),
    }
