"""Download an official MovieLens archive, verify its MD5 and unpack it (the only network use
in ``recsys.data``)."""

from __future__ import annotations

import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException
from pathlib import Path
from typing import Final, Protocol

from recsys.data import io
from recsys.errors import ConfigError, DataError

MOVIELENS_URL: Final = "https://files.grouplens.org/datasets/movielens"

MOVIELENS_MD5: Final[Mapping[str, str]] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-10m": "ce571fd55effeba0271552578f2648bd",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
"""MD5 of the official archives, as GroupLens publishes them in ``<name>.zip.md5`` (and as several
independent projects pin them). ml-latest and ml-latest-small are re-released in place, so they
are checked against the ``.md5`` file fetched from the same server instead."""

_NAME_RE: Final = re.compile(r"ml-[a-z0-9]+(?:-[a-z0-9]+)*")
_MD5_RE: Final = re.compile(r"\b[0-9a-fA-F]{32}\b")


# --- download -------------------------------------------------------------------------------
def download_movielens(
    name: str,
    dest: Path | str,
    *,
    base_url: str = MOVIELENS_URL,
    timeout: float = 60,
) -> Path:
    """Download ``<base_url>/<name>.zip``, verify its MD5 and extract it into ``dest/<name>/``.

    The checksum is ``MOVIELENS_MD5[name]`` where known, else the one GroupLens publishes in
    ``<name>.zip.md5`` beside the archive. The archive is streamed to a temporary file; the
    directory is swapped in only after the checksum matched and extraction finished, so a
    failure (no network, HTTP error, mismatch, bad zip) raises ``DataError`` and leaves ``dest``
    as it was. An existing ``dest/<name>/`` is replaced.
    """
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"not a MovieLens archive name: {name!r}",
            fix="use a GroupLens name such as ml-100k, ml-1m, ml-10m, ml-25m or ml-latest-small",
        )
    dest = Path(dest)
    out = dest / name
    url = f"{base_url.rstrip('/')}/{name}.zip"
    expected = MOVIELENS_MD5.get(name) or _published_md5(url, out, timeout)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}.download-", dir=dest) as tmp:
            archive = Path(tmp) / f"{name}.zip"
            with _open_url(url, out, timeout) as response:
                try:
                    digests = io.copy_stream(response, archive)
                except (OSError, HTTPException) as exc:
                    raise _network_error(url, out, exc) from exc
            if digests["md5"] != expected.lower():
                raise DataError(
                    f"checksum mismatch for {url}: expected md5 {expected.lower()}, "
                    f"got {digests['md5']}",
                    where=url,
                    fix="retry the download; if it persists, fetch the archive by hand and "
                    "compare it with the .md5 file GroupLens publishes beside it",
                )
            io.extract_zip(archive, out)
    except BaseException:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave no trace of a failed download
        raise
    return out


def _published_md5(url: str, out: Path, timeout: float) -> str:
    md5_url = f"{url}.md5"
    with _open_url(md5_url, out, timeout) as response:
        try:
            text = response.read(4096).decode("ascii", errors="replace")
        except (OSError, HTTPException) as exc:
            raise _network_error(md5_url, out, exc) from exc
    match = _MD5_RE.search(text)
    if match is None:
        raise DataError(
            f"no MD5 digest in {md5_url}: {text[:80]!r}",
            where=md5_url,
            fix="check base_url, or download and verify the archive by hand",
        )
    return match.group(0).lower()


class _Response(io.Readable, Protocol):
    def __enter__(self) -> _Response: ...
    def __exit__(self, *exc: object) -> None: ...


def _open_url(url: str, out: Path, timeout: float) -> _Response:
    request = urllib.request.Request(url, headers={"User-Agent": "recsys-download"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raise DataError(
            f"download failed: HTTP {exc.code} {exc.reason} for {url}",
            where=url,
            fix=f"check the data set name and base_url, or {_manual_fix(url, out)}",
        ) from exc
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        raise _network_error(url, out, exc) from exc


def _network_error(url: str, out: Path, exc: BaseException) -> DataError:
    reason = getattr(exc, "reason", None) or exc
    return DataError(
        f"cannot download {url}: {reason} (no network, or the server is unreachable)",
        where=url,
        fix=_manual_fix(url, out),
    )


def _manual_fix(url: str, out: Path) -> str:
    url = url.removesuffix(".md5")  # the same advice when the checksum file was unreachable
    archive = url.rsplit("/", 1)[-1]
    return (
        f"download {url} on a machine with network access, unzip it and place its files "
        f"(u.data, ratings.dat or ratings.csv and the rest) in {out}/, then set data.path "
        f"to that directory; verify {archive} against {url}.md5 first"
    )
