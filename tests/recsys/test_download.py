"""``download_movielens`` against a local HTTP server on 127.0.0.1; never the internet.

The archives served are built here from invented ml-100k-format lines.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recsys.data import io
from recsys.data.sources import MOVIELENS_MD5, download_movielens, read_movielens
from recsys.errors import ConfigError, DataError

U_DATA = "1\t10\t5\t881250949\n2\t20\t3\t891717742\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """``(base_url, root)``: a local HTTP server serving the files put in ``root``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/datasets/movielens", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def publish(root: Path, name: str, *, top: str | None = None, md5: str | None = "auto") -> str:
    """Write ``<name>.zip`` (files under ``top/``) and its BSD-style ``.md5``; the true md5."""
    folder = root / "datasets" / "movielens"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}.zip"
    prefix = f"{top or name}/"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(prefix, "")
        zf.writestr(prefix + "u.data", U_DATA)
        zf.writestr(prefix + "u.user", U_USER)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5 is not None:
        text = digest if md5 == "auto" else md5
        (folder / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {text}\n")
    return digest


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_download_verifies_and_extracts(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    publish(root, "ml-tiny", top="ml-Tiny100")  # like ml-10m.zip, whose folder is ml-10M100K
    dest = tmp_path / "data" / "raw"
    out = download_movielens("ml-tiny", dest, base_url=base_url, timeout=10)
    assert out == dest / "ml-tiny"
    assert listing(dest) == ["ml-tiny", "ml-tiny/u.data", "ml-tiny/u.user"]  # no temp left
    ds = read_movielens(out)
    assert ds.interactions["user_id"].tolist() == [1, 2]
    assert ds.users is not None and ds.users["occupation"].tolist() == ["technician", "other"]


def test_download_replaces_existing_directory(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    publish(root, "ml-tiny")
    dest = tmp_path / "dest"
    (dest / "ml-tiny").mkdir(parents=True)
    (dest / "ml-tiny" / "stale.txt").write_text("old")
    download_movielens("ml-tiny", dest, base_url=base_url, timeout=10)
    assert listing(dest) == ["ml-tiny", "ml-tiny/u.data", "ml-tiny/u.user"]


def test_known_archive_is_checked_against_the_table(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """ml-100k's digest comes from MOVIELENS_MD5: our stand-in archive cannot match it."""
    base_url, root = served
    actual = publish(root, "ml-100k", md5=None)  # no .md5 served: the table must be used
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "mine.txt").write_text("keep")
    before = listing(tmp_path)
    with pytest.raises(DataError) as exc:
        download_movielens("ml-100k", tmp_path, base_url=base_url, timeout=10)
    msg = str(exc.value)
    assert f"{base_url}/ml-100k.zip" in msg
    assert MOVIELENS_MD5["ml-100k"] in msg and actual in msg
    assert listing(tmp_path) == before  # dest untouched, no partial download left


def test_published_md5_mismatch(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = served
    actual = publish(root, "ml-tiny", md5="0" * 32)
    dest = tmp_path / "fresh"
    with pytest.raises(DataError, match="checksum mismatch") as exc:
        download_movielens("ml-tiny", dest, base_url=base_url, timeout=10)
    assert "0" * 32 in str(exc.value) and actual in str(exc.value)
    assert not dest.exists()


def test_http_404(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = served
    with pytest.raises(DataError, match="HTTP 404") as exc:
        download_movielens("ml-nothere", tmp_path / "d", base_url=base_url, timeout=10)
    assert "ml-nothere.zip.md5" in str(exc.value)  # the checksum is fetched first
    with pytest.raises(DataError, match="HTTP 404") as exc:
        download_movielens("ml-1m", tmp_path / "d", base_url=base_url, timeout=10)
    assert f"{base_url}/ml-1m.zip" in str(exc.value)
    assert not (tmp_path / "d").exists()


def test_server_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match="cannot download") as exc:
        download_movielens("ml-1m", tmp_path, base_url=f"http://127.0.0.1:{port}", timeout=5)
    msg = str(exc.value)
    assert "no network" in msg and "unzip it and place its files" in msg
    assert str(tmp_path / "ml-1m") in msg
    assert listing(tmp_path) == []


def test_bad_names_are_refused(tmp_path: Path) -> None:
    for name in ("../etc", "ml-100k/../x", "data"):
        with pytest.raises(ConfigError, match="not a MovieLens archive name"):
            download_movielens(name, tmp_path, base_url="http://127.0.0.1:9")


def test_extract_zip_refuses_paths_outside(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "x")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="unsafe path"):
        io.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()
