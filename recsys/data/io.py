"""The only module that reads and writes data files.

Every write is atomic: a file is written beside its target and renamed over it, and an output
directory is built in a sibling temporary directory and swapped in only when complete. A failed
or interrupted stage therefore leaves the previous good artifacts exactly as they were.

Why one module above 400 lines: it is the single place that touches data files (STYLE), and
about half of it is the delimited-text reader with its error diagnosis; splitting that off is
the natural next cut (issue #16), left for when io gets a package of its own.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output is a normal directory
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
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes it private; the output is a normal file
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    """Parse a JSON file; ``DataError`` naming the file (and line) when missing or not JSON."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", where=location(path, row=exc.lineno)) from exc


def _read_text(path: Path) -> str:
    """The UTF-8 text of the file at ``path``; ``DataError`` naming it when there is none."""
    if not Path(path).is_file():
        raise DataError("file not found", where=location(path))
    return Path(path).read_text(encoding="utf-8")


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


def require_rows(interactions: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Return ``interactions`` read from ``path`` unless it is empty (a ``DataError``)."""
    if interactions.empty:
        raise DataError(
            "file holds no interactions (only a header or blank lines)",
            where=location(path),
            fix="provide a file with at least one interaction",
        )
    return interactions


# --- canonical data sets on disk ------------------------------------------------------------
DATASET_META = "dataset.json"


def save_dataset(dataset: Dataset, out: Path, extra_files: dict[str, Any] | None = None) -> None:
    """Write ``dataset`` as ``<table>.parquet`` files plus ``dataset.json``, atomically.

    ``extra_files`` maps a relative file name to a JSON-serializable object written beside the
    tables in the same atomic swap (the data profile that the next run checks drift against).
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


# --- delimited text (CSV, TSV, MovieLens ``::`` and ``|`` files) ----------------------------
NA_TOKENS: tuple[str, ...] = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null")
"""Values that read as missing in ``numeric`` columns (kept as NaN, never dropped)."""

_UNIT_SEPARATOR = "\x1f"
"""Stands in for a multi-character separator (``::``) so the single-byte fast parser can run."""

_SEPARATOR_GUESSES = (",", "\t", ";", "|", "::", " ")


def describe_separator(sep: str) -> str:
    """``"\\t"`` -> ``tab``; ``","`` -> ``','`` (for messages)."""
    return "tab" if sep == "\t" else repr(sep)


def read_delimited(
    path: Path,
    columns: Sequence[str],
    *,
    sep: str,
    header: bool = False,
    encoding: str = "utf-8",
    quoted: bool = False,
    integer: Collection[str] = (),
    numeric: Collection[str] = (),
    what: str = "input file",
) -> pd.DataFrame:
    """Read a delimited text file into a frame with exactly ``columns``, vectorized (pyarrow).

    Args:
      path: the file; must exist and be non-empty.
      columns: without ``header``, the names of the fields of every line, in order (each line
        must have exactly that many); with ``header``, the header columns to read (others in the
        file are ignored; a missing one is an error that lists the columns found).
      sep: the field separator; may be several characters (MovieLens ``::``).
      quoted: honour ``"`` quoting (standard CSV); False for formats where ``"`` is data.
      integer: columns that must hold an integer on every line -> ``int64``.
      numeric: columns parsed as ``float64``; empty and ``NA_TOKENS`` values become NaN.

    Every other column is a string column (``""`` for an empty field, never NaN). Blank lines are
    skipped. A file that does not parse raises ``DataError`` naming the line, the column and the
    value, found by a second, line-by-line pass that only runs when the fast read fails.
    """
    path = require_file(path, what)
    columns = list(columns)
    if header:
        found = read_header(path, sep=sep, encoding=encoding, quoted=quoted)
        check_columns(path, columns, found, sep=sep)
    types = {
        c: pa.int64() if c in integer else pa.float64() if c in numeric else pa.string()
        for c in columns
    }
    source: Any = path
    if len(sep) > 1 or encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        source = pa.py_buffer(_to_utf8_single_sep(path, sep, encoding))
    read_options = pacsv.ReadOptions(column_names=None if header else columns)
    parse_options = pacsv.ParseOptions(
        delimiter=_UNIT_SEPARATOR if len(sep) > 1 else sep,
        quote_char='"' if quoted else False,
        newlines_in_values=quoted and len(integer) + len(numeric) < len(columns),
    )
    convert_options = pacsv.ConvertOptions(
        column_types=types,
        include_columns=columns,
        null_values=list(NA_TOKENS),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except (pa.ArrowInvalid, DataError, UnicodeDecodeError) as exc:
        if isinstance(exc, pa.ArrowInvalid) and "Empty CSV file" in str(exc):
            return _empty_frame(columns, integer, numeric)
        raise _diagnose(
            path, columns, sep, header, encoding, quoted, integer, numeric, exc
        ) from exc
    missing_ids = [c for c in columns if c in integer and table.column(c).null_count]
    if missing_ids:  # an empty id field: int64 cannot hold it, so locate and report it
        raise _diagnose(
            path, columns, sep, header, encoding, quoted, integer, numeric, missing_ids[0]
        )
    return table.to_pandas()


def read_header(
    path: Path, *, sep: str, encoding: str = "utf-8", quoted: bool = False
) -> list[str]:
    """The fields of the first non-blank line of ``path`` (a header, or the first record)."""
    for _, fields in iter_records(path, sep=sep, encoding=encoding, quoted=quoted):
        return [f.lstrip("\ufeff") if i == 0 else f for i, f in enumerate(fields)]
    raise DataError("file holds only blank lines", where=location(path), fix="provide the data")


def check_columns(
    path: Path, wanted: Sequence[str], found: Sequence[str], *, sep: str, fix: str | None = None
) -> None:
    """``DataError`` naming the first of ``wanted`` missing from ``found`` (a header)."""
    missing = [c for c in wanted if c not in found]
    if not missing:
        return
    hint = ""
    if len(found) == 1:
        guess = _guess_separator(found[0], sep, expected=len(wanted))
        if guess is not None:
            hint = (
                f"; the header has a single field - is the separator {describe_separator(guess)}"
                f" rather than {describe_separator(sep)}?"
            )
    raise DataError(
        f"expected column '{missing[0]}' not found; columns found: {list(found)}{hint}",
        where=location(path, column=missing[0], row=1),
        fix=fix or "rename the column in the file or map it to the file's name in the config",
    )


def iter_records(
    path: Path, *, sep: str, encoding: str = "utf-8", quoted: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for every non-blank record, in pure Python.

    The slow path used to locate problems (and to map a record index to its line); the line
    number is where the record starts, 1-based, counting every physical line.
    """
    if quoted and len(sep) == 1:
        try:
            with open(path, encoding=encoding, newline="") as fh:
                reader = csv.reader(fh, delimiter=sep, quotechar='"', strict=False)
                start = 1
                for fields in reader:
                    if fields:
                        yield start, fields
                    start = reader.line_num + 1
        except UnicodeDecodeError:
            check_encoding(path, encoding)  # raises DataError with the line and byte
            raise
        except LookupError as exc:
            raise DataError(f"unknown encoding '{encoding}'", where=location(path)) from exc
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            yield lineno, _decode_line(path, line, lineno, encoding).split(sep)


def check_encoding(path: Path, encoding: str) -> None:
    """``DataError`` naming the first line and byte of ``path`` that is not ``encoding``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            _decode_line(path, raw, lineno, encoding)


def record_line(
    path: Path,
    index: int,
    *,
    sep: str,
    header: bool = False,
    encoding: str = "utf-8",
    quoted: bool = False,
) -> int:
    """The line number where data record ``index`` (0-based, as read) starts in ``path``."""
    records = iter_records(path, sep=sep, encoding=encoding, quoted=quoted)
    for i, (lineno, _) in enumerate(records):
        if i == index + int(header):
            return lineno
    raise IndexError(f"{path} has no record {index}")


def _decode_line(path: Path, raw: bytes, lineno: int, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        raise DataError(
            f"not valid {encoding}: byte 0x{byte:02x} at position {exc.start + 1} of line "
            f"{lineno} ({raw[max(0, exc.start - 20) : exc.start + 10]!r})",
            where=location(path, row=lineno),
            fix=f"save the file as {encoding}, or declare its real encoding (often latin-1 or "
            "cp1252 for such bytes) in the source config",
        ) from exc
    except LookupError as exc:
        raise DataError(f"unknown encoding '{encoding}'", where=location(path)) from exc


def _to_utf8_single_sep(path: Path, sep: str, encoding: str) -> bytes:
    """The file's bytes as UTF-8 with a multi-character ``sep`` replaced by one byte."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        check_encoding(path, encoding)  # raises with the line number
        raise
    except LookupError as exc:
        raise DataError(f"unknown encoding '{encoding}'", where=location(path)) from exc
    if len(sep) > 1:
        if _UNIT_SEPARATOR in text:
            raise DataError(
                "file contains the control character 0x1f, which this reader reserves",
                where=location(path),
                fix="remove the control characters from the file",
            )
        text = text.replace(sep, _UNIT_SEPARATOR)
    return text.encode("utf-8")


def _guess_separator(line: str, sep: str, *, expected: int) -> str | None:
    """A separator that splits ``line`` into ``expected`` fields (or at least 2), if any."""
    candidates = [c for c in _SEPARATOR_GUESSES if c != sep and c in line]
    for c in candidates:
        if len(line.split(c)) == expected:
            return c
    return candidates[0] if candidates else None


_INT_RE = re.compile(r"\s*-?[0-9]{1,19}\s*")


def _diagnose(
    path: Path,
    columns: Sequence[str],
    sep: str,
    header: bool,
    encoding: str,
    quoted: bool,
    integer: Collection[str],
    numeric: Collection[str],
    cause: object,
) -> DataError:
    """Find the first bad line by a line-by-line pass; the error to raise."""
    if isinstance(cause, DataError):
        return cause
    positions: dict[str, int] = {}
    n_fields = len(columns)
    if not header:
        positions = {c: i for i, c in enumerate(columns)}
    try:
        for lineno, fields in iter_records(path, sep=sep, encoding=encoding, quoted=quoted):
            if header and not positions:  # the header line itself
                n_fields = len(fields)
                positions = {f.lstrip("\ufeff"): i for i, f in enumerate(fields)}
                continue
            if len(fields) != n_fields:
                hint = ""
                guess = _guess_separator(sep.join(fields), sep, expected=n_fields)
                if len(fields) < n_fields and guess is not None:
                    hint = f"; is the separator {describe_separator(guess)}?"
                return DataError(
                    f"expected {n_fields} {describe_separator(sep)}-separated fields, found "
                    f"{len(fields)} on line {lineno}{hint}",
                    where=location(path, row=lineno),
                    fix="fix or remove the malformed line, or set the right separator",
                )
            for column in columns:
                value = fields[positions[column]]
                if column in integer and not _is_int64(value):
                    problem = "is empty" if not value.strip() else f"holds {value!r}"
                    return DataError(
                        f"column '{column}' must hold an integer on every line, but line "
                        f"{lineno} {problem}",
                        where=location(path, column=column, row=lineno),
                        fix="fix the value, or map the column to the right one in the config",
                    )
                if column in numeric and value not in NA_TOKENS and not _is_float(value):
                    return DataError(
                        f"column '{column}' must be numeric, but line {lineno} holds {value!r}",
                        where=location(path, column=column, row=lineno),
                        fix="use '.' as the decimal point and leave missing values empty",
                    )
    except DataError as exc:
        return exc
    return DataError(
        f"cannot parse the file: {cause}",
        where=location(path),
        fix=f"check the separator ({describe_separator(sep)}), quoting and encoding ({encoding})",
    )


def _is_int64(value: str) -> bool:
    return _INT_RE.fullmatch(value) is not None and -(2**63) <= int(value) < 2**63


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return "_" not in value


def _empty_frame(
    columns: Sequence[str], integer: Collection[str], numeric: Collection[str]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(
                [], dtype="int64" if c in integer else "float64" if c in numeric else "str"
            )
            for c in columns
        }
    )


def read_parquet_columns(
    path: Path, columns: Sequence[str], what: str = "input file"
) -> pd.DataFrame:
    """Read ``columns`` of a Parquet file; a missing one names the columns the file has."""
    found = parquet_column_names(path, what)
    missing = [c for c in columns if c not in found]
    if missing:
        raise DataError(
            f"expected column '{missing[0]}' not found; columns found: {list(found)}",
            where=location(path, column=missing[0]),
            fix="rename the column in the file or map it to the file's name in the source config",
        )
    return pd.read_parquet(path, columns=list(dict.fromkeys(columns)))


def parquet_column_names(path: Path, what: str = "input file") -> list[str]:
    """The column names of a Parquet file (its schema only; no data is read)."""
    path = require_file(path, what)
    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several unrelated types for a non-Parquet file
        raise DataError(
            f"cannot read Parquet file: {exc}",
            where=location(path),
            fix="check that the file is Parquet (or give it a .csv/.tsv suffix)",
        ) from exc


# --- archives -------------------------------------------------------------------------------
class Readable(Protocol):
    """A binary stream such as an HTTP response."""

    def read(self, size: int = -1, /) -> bytes: ...


def copy_stream(src: Readable, dest: Path, chunk: int = 1 << 20) -> dict[str, str]:
    """Copy a readable binary stream to ``dest``; its ``md5`` and ``sha256`` hex digests."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(dest, "wb") as out:
        while block := src.read(chunk):
            md5.update(block)
            sha256.update(block)
            out.write(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def extract_zip(archive: Path, out: Path) -> Path:
    """Extract ``archive`` into ``out`` atomically; a single top-level folder is stripped.

    MovieLens archives hold one folder (``ml-100k/``, but ``ml-10M100K/`` for ml-10m); its
    contents land directly in ``out``. Members that would escape ``out`` are refused.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive: {exc}", where=location(archive)) from exc
    with zf, atomic_dir(out) as tmp:
        members = [m for m in zf.infolist() if m.filename.strip("/")]
        tops = {m.filename.split("/", 1)[0] for m in members}
        strip = len(tops) == 1 and all("/" in m.filename for m in members)
        for member in members:
            rel = member.filename.split("/", 1)[1] if strip else member.filename
            if not rel:
                continue
            target = (tmp / rel).resolve()
            if Path(rel).is_absolute() or not target.is_relative_to(tmp.resolve()):
                raise DataError(
                    f"unsafe path in archive: {member.filename!r}", where=location(archive)
                )
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return out


# --- numpy arrays ---------------------------------------------------------------------------
def write_array(arr: Any, path: Path) -> None:
    """Write one array as ``.npy`` (C order, no pickles), atomically; same array, same bytes."""
    import numpy as np

    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)


def read_array(path: Path) -> Any:
    """Read an array written by ``write_array``; object arrays (pickles) are refused."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise DataError("array file not found", where=location(path))
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"cannot read array: {exc}", where=location(path)) from exc


# --- text outputs (benchmark reports) -------------------------------------------------------
def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as comma-separated text with a header and no index, atomically.

    Floats are written in their shortest round-trip form (float32 columns as float32), so a
    reader gets back exactly the values written; ``-inf`` is written as ``-inf``.
    """
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def write_text(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; ``DataError`` naming the file when it is missing or not YAML."""
    import yaml

    text = _read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}", where=location(path)) from exc
