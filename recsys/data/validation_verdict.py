"""The verdict of one validation run, and the key that says when a verdict can be reused.

``ValidationResult`` is what ``recsys data validate --result FILE`` and ``recsys data prepare
--result FILE`` write: a small typed JSON file that callers (the Dagster check) read instead of
parsing the command's output.

``validation_key`` digests everything a verdict depends on: the raw input files, the ``data``
and ``validation`` params, the code that reads and validates them, the library versions that
run the suites and the accepted baseline profile that drift is measured against. Two runs with
the same key reach the same verdict, so a passing verdict recorded for a key
(``--reuse-verdict FILE``) lets ``recsys data prepare`` write the data the check just validated
without validating it a second time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from recsys.config import DataConfig, ValidationConfig
from recsys.data import io
from recsys.data.records import Record
from recsys.errors import DataError
from recsys.fingerprint import iter_files

PACKAGE_ROOT: Final = Path(__file__).resolve().parents[1]
"""The ``recsys`` package whose code runs the validation (this installation's)."""
VALIDATION_CODE: Final = (
    "data/validation*.py",
    "data/sources",
    "data/synthetic",
    "data/io.py",
    "data/records.py",
    "fingerprint.py",
    "schema.py",
    "config*.py",
)
"""Globs, relative to the package root, of every module a verdict depends on: the suites and
their report, drift and docs modules, the source readers (what the raw bytes mean), the
synthetic generator, the file and record readers, the fingerprints, the schema, the config
types and their loader.
Directories count with every file under them, so a new module is covered without editing this
list."""
LIBRARIES: Final = ("great_expectations", "pandas", "numpy")
RESULT_FORMAT: Final = 1


@dataclass(frozen=True)
class ValidationResult(Record):
    """What one ``recsys data validate`` / ``prepare`` found, as the JSON its ``--result`` holds.

    Paths are as the command saw them (relative to its working directory, the repository root
    when run by DVC or Dagster)."""

    key: str
    """``validation_key`` of the validated input."""
    passed: bool
    """No blocking (error-severity) expectation failed."""
    failures: int
    warnings: int
    report: str
    """The ``report.json`` of the validation that reached this verdict."""
    data_docs: str
    """Its Data Docs entry page (``data_docs/index.html``)."""
    dataset: str
    reused: bool = False
    """True when this run did not validate: an identical input passed before (``report``)."""

    RECORD_WHAT = "validation result"
    RECORD_FIX = "validate again (recsys data validate --result FILE)"
    RECORD_VERSION = RESULT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": RESULT_FORMAT, **dataclasses.asdict(self)}

    def write(self, path: Path) -> None:
        io.write_json(self.to_dict(), Path(path))


def validation_key(
    data: DataConfig,
    validation: ValidationConfig,
    *,
    baseline: Path | None,
    code_root: Path = PACKAGE_ROOT,
) -> str:
    """sha256 over everything the verdict on ``data`` depends on (see the module docstring).

    Args:
      data: the data section as the command applies it (with ``--source``/``--path``); its
        files (``input_paths``) are read relative to the working directory.
      validation: the thresholds.
      baseline: the accepted ``profile.json`` drift is measured against; absent or None: none.
      code_root: the ``recsys`` package to digest (tests pass a modified copy).
    """
    digest = hashlib.sha256()

    def add(label: str, value: str) -> None:
        digest.update(f"{label}\0{value}\n".encode())

    add("params", json.dumps(_params(data, validation), sort_keys=True, default=str))
    for label, base in input_paths(data):
        for name, f in iter_files(base):
            add(f"{label}:{name}", io.sha256_file(f))
    for name, f in code_files(code_root):
        add(f"code:{name}", io.sha256_file(f))
    has_baseline = baseline is not None and baseline.is_file()
    add("baseline", io.sha256_file(baseline) if baseline is not None and has_baseline else "none")
    for lib in LIBRARIES:
        add(f"library:{lib}", _version(lib))
    return digest.hexdigest()


def input_paths(data: DataConfig) -> list[tuple[str, Path]]:
    """``(label, path)`` of every raw input the source reads: ``data.path`` (a file or a
    directory) and the CSV source's side tables, at each place the reader looks for them
    (beside the log first, then as given)."""
    if not data.path:
        return []
    log = Path(data.path)
    paths = [("input", log)]
    for key in ("items_path", "users_path"):
        side = getattr(data.csv, key)
        if data.source == "csv" and side:
            options = [Path(side)] if Path(side).is_absolute() else [log.parent / side, Path(side)]
            paths += [(f"{key}:{i}", p) for i, p in enumerate(options)]
    return paths


def code_files(code_root: Path = PACKAGE_ROOT) -> list[tuple[str, Path]]:
    """``(name relative to the package root, path)`` of every file ``VALIDATION_CODE`` names,
    sorted; caches (``__pycache__``) excluded."""
    found: dict[str, Path] = {}
    for pattern in VALIDATION_CODE:
        for match in code_root.glob(pattern):
            for name, f in iter_files(match):
                found[(match.relative_to(code_root) / name).as_posix()] = f
    return sorted(found.items())


def reusable_verdict(path: Path | None, key: str) -> ValidationResult | None:
    """The passing result recorded at ``path`` for this very ``key`` whose report still
    exists, or None (no file, another key, a failed verdict, a malformed file)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        recorded = ValidationResult.read(path)
    except (DataError, TypeError, ValueError):
        return None
    if recorded.key != key or not recorded.passed or not Path(recorded.report).is_file():
        return None
    return dataclasses.replace(recorded, reused=True)


def _params(data: DataConfig, validation: ValidationConfig) -> dict[str, Any]:
    return {"data": dataclasses.asdict(data), "validation": dataclasses.asdict(validation)}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
