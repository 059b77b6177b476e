"""The machine and library versions a benchmark ran on, recorded with every result."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

from recsys.hardware import hardware as machine

LIBRARIES = ("numpy", "pandas", "pyarrow", "great-expectations", "dvc", "tensorflow", "keras")


def hardware() -> dict[str, Any]:
    """``recsys.hardware.hardware()`` plus Python and the pinned library versions."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {**machine(), "python": platform.python_version(), **versions}
