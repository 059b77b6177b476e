"""Complete parameter files for tests: the repository's params.yaml with some values changed
(``load_params`` refuses a file that lacks a section)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def complete_params(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The repository's parameters with ``overrides`` merged in, key by key; a ``models``
    override replaces the candidates (its keys are the candidate list)."""
    params: dict[str, Any] = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    for section, values in overrides.items():
        if section == "models" or not isinstance(values, Mapping):
            params[section] = copy.deepcopy(values)
        else:
            params[section] = _merged(params.get(section) or {}, values)
    return params


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
