"""The only module that reads and writes data files.

Every write is atomic: a file is written beside its target and renamed over it, and an output
directory is built in a sibling temporary directory and swapped in only when complete. A failed
or interrupted stage therefore leaves the previous good artifacts exactly as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import DataError, location
from recsys.schema import Dataset

TABLE_SUFFIX = ".parquet"


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``out`` when the block succeeds.

    On an exception the temporary directory is removed and ``out`` is untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path that is renamed onto ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as Parquet, atomically, without the pandas index."""
    with atomic_file(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet table written by ``write_table``; a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "table not found", where=location(path), fix="run the stage that produces it first"
        )
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(
            f"cannot read Parquet table: {exc}", where=location(path), fix="re-create the file"
        ) from exc


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", where=location(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", where=location(path, row=exc.lineno)) from exc


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_file(path: Path, what: str = "input file") -> Path:
    """Return ``path`` if it is a non-empty file; otherwise a ``DataError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} not found", where=location(path), fix="check the --path option")
    if path.is_dir():
        raise DataError(f"{what} is a directory, expected a file", where=location(path))
    if path.stat().st_size == 0:
        raise DataError(f"{what} is empty", where=location(path), fix="provide a non-empty file")
    return path


# --- canonical data sets on disk ------------------------------------------------------------
DATASET_META = "dataset.json"


def save_dataset(dataset: Dataset, out: Path, extra_files: dict[str, Any] | None = None) -> None:
    """Write ``dataset`` as ``<table>.parquet`` files plus ``dataset.json``, atomically.

    ``extra_files`` maps a relative file name to a JSON-serializable object written beside the
    tables in the same atomic swap (e.g. the validation report and the data profile).
    """
    with atomic_dir(Path(out)) as tmp:
        for name, table in dataset.tables().items():
            table.to_parquet(tmp / f"{name}{TABLE_SUFFIX}", index=False)
        meta = {
            "name": dataset.name,
            "feedback": dataset.feedback,
            "rating_scale": list(dataset.rating_scale) if dataset.rating_scale else None,
            "source_files": dataset.source_files,
            "rows": {name: len(t) for name, t in dataset.tables().items()},
        }
        (tmp / DATASET_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for rel, obj in (extra_files or {}).items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
            )


def load_dataset(directory: Path) -> Dataset:
    """Read a data set written by ``save_dataset``."""
    directory = Path(directory)
    meta = read_json(directory / DATASET_META)
    tables = {
        name: read_table(directory / f"{name}{TABLE_SUFFIX}")
        if (directory / f"{name}{TABLE_SUFFIX}").is_file()
        else None
        for name in ("interactions", "items", "users")
    }
    if tables["interactions"] is None:
        raise DataError(
            "interactions table missing", where=location(directory / "interactions.parquet")
        )
    scale = meta.get("rating_scale")
    return Dataset(
        interactions=tables["interactions"],
        items=tables["items"],
        users=tables["users"],
        name=meta.get("name", directory.name),
        feedback=meta.get("feedback", "explicit"),
        rating_scale=(float(scale[0]), float(scale[1])) if scale else None,
        source_files=meta.get("source_files", {}),
    )
