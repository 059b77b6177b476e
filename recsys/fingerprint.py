"""Content fingerprints: the one way the project names a version of files and settings.

A fingerprint is a sha256 hex digest; equal fingerprints mean equal inputs. Used for what DVC
does not version itself: a stored model's content (``recsys.promotion`` registers it once), the
split a metrics file was scored on (``recsys.gate``), a bento's inputs (reused only when they
are unchanged), the raw inputs and code of a validation verdict, and Dagster's code and data
versions of what no DVC stage writes.

::

    tree_digest([Path("models/twostage-ease")])                  # every file under it
    tree_digest([Path("recsys"), Path("bentofile.yaml")], root=Path("."), extra={"M": 200})
    mapping_digest({"train": "<sha256>", "test": "<sha256>"})    # order-independent
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from recsys.data.io import sha256_file

__all__ = ["iter_files", "mapping_digest", "tree_digest"]

CACHE_DIRS = frozenset({"__pycache__"})
"""Byte-code caches come and go with imports: never part of a version."""


def iter_files(base: Path) -> Iterator[tuple[str, Path]]:
    """``(name, path)`` of ``base`` itself (a file: name ``.``) or of every file under it
    (names relative to ``base``, POSIX, sorted; caches excluded). A missing path yields
    nothing."""
    base = Path(base)
    if base.is_file():
        yield ".", base
    elif base.is_dir():
        for f in sorted(base.rglob("*")):
            if f.is_file() and not CACHE_DIRS & set(f.parts):
                yield f.relative_to(base).as_posix(), f


def tree_digest(paths: Iterable[Path], *, root: Path | None = None, extra: Any = None) -> str:
    """sha256 over every file of ``paths`` (each a file or a directory): its name (relative
    to ``root``, else to the directory given) and the sha256 of its bytes, then ``extra`` as
    sorted JSON. Renaming, adding, removing or changing a file changes it."""
    digest = hashlib.sha256()
    for base in paths:
        base = Path(base)
        for name, f in iter_files(base):
            if root is not None and f.is_relative_to(root):
                label = f.relative_to(root).as_posix()
            else:
                label = f.name if name == "." else name
            digest.update(f"{label}\0{sha256_file(f)}\n".encode())
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def mapping_digest(mapping: Mapping[str, Any]) -> str:
    """sha256 of ``mapping`` as sorted JSON: the same for the same keys and values, in any
    order (e.g. the per-table checksums of a split)."""
    return hashlib.sha256(json.dumps(dict(mapping), sort_keys=True).encode()).hexdigest()
