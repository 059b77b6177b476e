"""Typed results written as JSON and read back strictly: the files steps hand each other
(``GateOutcome``, ``ValidationResult``, ``BentoResult``), never parsed from command output; and
the versioned ``meta.json`` of a saved directory (processed data, a trained model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from recsys.data import io
from recsys.errors import DataError

T = TypeVar("T")
VERSION_KEY = "format_version"


def read_record(cls: type[T], path: Path, *, what: str, fix: str, version: int | None = None) -> T:
    """The frozen dataclass ``cls`` from the JSON object in ``path`` (``dataclasses.asdict``).

    A ``DataError`` naming ``what``, the file and ``fix`` when the file is missing, is not an
    object, has another ``format_version`` than ``version`` (when given), lacks a field without
    a default or holds a field ``cls`` does not have."""
    raw: Any = io.read_json(io.require_file(Path(path), what))
    if not isinstance(raw, dict):
        raise DataError(f"a {what} must be a JSON object", where=str(path), fix=fix)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if version is not None and raw.get(VERSION_KEY) != version:
        raise DataError(f"not a {what} of this version", where=str(path), fix=fix)
    if VERSION_KEY not in fields:
        raw.pop(VERSION_KEY, None)
    required = {
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing, unknown = sorted(required - set(raw)), sorted(set(raw) - set(fields))
    if missing or unknown:
        raise DataError(
            f"malformed {what}: missing {missing}, unknown {unknown}", where=str(path), fix=fix
        )
    return cls(**raw)


class Record:
    """Base of a frozen dataclass written as JSON: ``read`` is ``read_record`` with the class's
    ``RECORD_WHAT`` (what the file is), ``RECORD_FIX`` (how to write a new one) and
    ``RECORD_VERSION`` (the ``format_version`` the file must have; None: not checked)."""

    RECORD_WHAT: ClassVar[str]
    RECORD_FIX: ClassVar[str]
    RECORD_VERSION: ClassVar[int | None] = None

    @classmethod
    def read(cls, path: Path) -> Self:
        return read_record(
            cls, path, what=cls.RECORD_WHAT, fix=cls.RECORD_FIX, version=cls.RECORD_VERSION
        )


def read_versioned_json(path: Path, version: int, *, what: str, fix: str) -> Any:
    """The JSON in ``path`` when its ``format_version`` is ``version``, else a ``DataError``
    ("unsupported <what> format <found>") naming the file and ``fix``."""
    meta = io.read_json(path)
    if meta.get(VERSION_KEY) != version:
        raise DataError(
            f"unsupported {what} format {meta.get(VERSION_KEY)!r}", where=str(path), fix=fix
        )
    return meta
