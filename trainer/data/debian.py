"""Pinned Debian packages fetched with the ordinary `apt-get download NAME=VERSION` client into a cache folder.

A `.deb` is checked against its pinned sha256 before it is kept: a fresh download that does not match is deleted, a
cached file that does not match is refused (delete it to fetch again). `extract_deb` reads the `.deb` in Python (an
`ar` archive whose `data.tar.*` holds the files) and writes only the members under one folder of the package, refusing
absolute names, `..` and links that leave that folder; a marker file makes a finished extraction a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings


class DebianPackageError(LexlipError):
    """A Debian package could not be fetched or extracted, or its file does not match the pinned sha256."""


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    """Debian's version string, epoch included (`1:0.18+dfsg-19`)."""
    sha256: str
    """Hex sha256 of the `.deb` file."""
    licence: str
    architecture: str = "all"

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"

    @property
    def deb_name(self) -> str:
        """The file `apt-get download` writes: the epoch's `:` is written `%3a`."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    @property
    def folder(self) -> str:
        """The folder its files are extracted into, beside the `.deb`."""
        return self.deb_name.removesuffix(".deb")


TUXPAINT_STAMPS = DebianPackage(
    "tuxpaint-stamps-default",
    "2022.06.04-1",
    "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
    "GPL-2.0-or-later",
)
OPENCLIPART_PNG = DebianPackage(
    "openclipart-png",
    "1:0.18+dfsg-19",
    "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
    "public domain (Creative Commons Public Domain Dedication)",
)
OPENCLIPART_SVG = DebianPackage(
    "openclipart-svg",
    "1:0.18+dfsg-19",
    "989712d90d57dfa3230049f553bb43b76c30ee4d4b8c5f6e106e33f7db5cbdc5",
    "public domain (Creative Commons Public Domain Dedication)",
)
WORDNET_BASE = DebianPackage(
    "wordnet-base",
    "1:3.0-37",
    "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    "WordNet-3.0",
)
PYTHON_TARS = frozenset({"data.tar", "data.tar.xz", "data.tar.gz", "data.tar.bz2"})
"""The data members Python's tarfile reads itself (zstd, which dpkg also writes, goes through dpkg-deb)."""
DEBIAN_PACKAGES = (TUXPAINT_STAMPS, OPENCLIPART_PNG, OPENCLIPART_SVG, WORDNET_BASE)
WORDNET_PREFIX = "usr/share/wordnet"
MISSING_LISTS = ("unable to locate package", "has no installation candidate", "no candidate", "was not found")
"""apt-get's words when its package lists are missing or stale (an `apt-get update` fixes those)."""


def debian_cache(settings: Settings | None = None) -> Path:
    """The folder `.deb` files and their extractions live in: the cache's debian/."""
    return (settings or Settings.from_env()).cache_dir / "debian"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(package: DebianPackage, path: Path, hint: str = "") -> None:
    """Raise DebianPackageError naming the package unless the file's sha256 is the pinned one."""
    found = sha256_of(path)
    if found != package.sha256:
        raise DebianPackageError(
            f"{package.spec}: {path} does not match the pinned sha256 (expected {package.sha256}, found {found}){hint}"
        )


def _apt_get(apt: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([apt, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _apt_download(package: DebianPackage, destination: Path) -> Path:
    """`apt-get download NAME=VERSION` in `destination`; an `apt-get update -qq` (as root) and one retry when the
    package lists are missing. Returns the `.deb` written."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise DebianPackageError(f"{package.spec}: apt-get is not installed (a Debian or Ubuntu system is needed)")
    result = _apt_get(apt, ["download", package.spec], destination)
    output = (result.stdout + result.stderr).strip()
    lists_missing = result.returncode != 0 and any(words in output.lower() for words in MISSING_LISTS)
    if lists_missing and os.geteuid() == 0:
        update = _apt_get(apt, ["update", "-qq"], destination)
        if update.returncode != 0:
            tail = (update.stdout + update.stderr).strip()[-2000:]
            raise DebianPackageError(f"{package.spec}: `apt-get update` failed (exit {update.returncode}):\n{tail}")
        result = _apt_get(apt, ["download", package.spec], destination)
        output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        hint = "; run `apt-get update` as root and retry" if lists_missing and os.geteuid() != 0 else ""
        raise DebianPackageError(
            f"{package.spec}: `apt-get download` failed (exit {result.returncode}){hint}:\n{output[-2000:]}"
        )
    written = destination / package.deb_name
    debs = sorted(destination.glob("*.deb"))
    if not written.is_file() and len(debs) == 1:
        written = debs[0]
    if not written.is_file():
        raise DebianPackageError(f"{package.spec}: `apt-get download` wrote no {package.deb_name}")
    return written


def fetch_deb(package: DebianPackage, cache_dir: Path) -> Path:
    """The package's verified `.deb` in `cache_dir`/debian/, fetched with `apt-get download` when missing."""
    folder = cache_dir / "debian"
    path = folder / package.deb_name
    if path.exists():
        verify(package, path, hint="; delete the file to fetch it again")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".apt-download-") as tmp:
        written = _apt_download(package, Path(tmp))
        verify(package, written, hint="; the download was discarded")
        written.replace(path)
    return path


def fetch_debian_packages(cache_dir: Path) -> dict[str, Path]:
    """`{package name: verified .deb}`, fetched with `apt-get download` into `cache_dir`/debian/ when missing."""
    return {p.name: fetch_deb(p, cache_dir) for p in DEBIAN_PACKAGES}


class _Slice(io.RawIOBase):
    """`length` bytes of an open file from its current position, read-only."""

    def __init__(self, file: io.BufferedReader, length: int) -> None:
        self.file, self.left = file, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)[: self.left]
        count = self.file.readinto(view) if view.nbytes else 0
        self.left -= count
        return count


def _ar_member(file: io.BufferedReader, deb: Path, prefix: bytes) -> tuple[str, int]:
    """Seek `file` (an `ar` archive) to the data of the first member whose name starts with `prefix`."""
    if file.read(8) != b"!<arch>\n":
        raise DebianPackageError(f"{deb} is not a Debian package (no ar signature)")
    while header := file.read(60):
        if len(header) < 60 or header[58:60] != b"`\n":
            break
        name, size = header[:16].decode("ascii", "replace").strip().rstrip("/"), int(header[48:58])
        if name.encode().startswith(prefix):
            return name, size
        file.seek(size + size % 2, io.SEEK_CUR)
    raise DebianPackageError(f"{deb} holds no {prefix.decode()}* member")


@contextmanager
def open_data_tar(deb: Path) -> Iterator[tarfile.TarFile]:
    """The `.deb`'s data.tar.* as a streamed TarFile (xz, gz, bz2 or plain in Python; zstd through
    `dpkg-deb --fsys-tarfile`, since Python 3.11 has no zstd)."""
    with open(deb, "rb") as file:
        name, size = _ar_member(file, deb, b"data.tar")
        if name in PYTHON_TARS:
            with tarfile.open(fileobj=io.BufferedReader(_Slice(file, size)), mode="r|*") as tar:
                yield tar
            return
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise DebianPackageError(f"{deb}: {name} needs dpkg-deb, which is not installed")
    with subprocess.Popen([dpkg, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            yield tar
        proc.stdout.read()
    if proc.returncode != 0:
        raise DebianPackageError(f"{deb}: `dpkg-deb --fsys-tarfile` failed (exit {proc.returncode})")


def _parts(name: str, deb: Path) -> tuple[str, ...]:
    """A member name's parts without `./`; absolute names and `..` are refused."""
    if name.startswith("/") or "\\" in name:
        raise DebianPackageError(f"{deb}: refusing member {name!r} (absolute or backslashed path)")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DebianPackageError(f"{deb}: refusing member {name!r} (`..` in its path)")
    return parts


def _inside(path: Path, root: Path) -> bool:
    return os.path.realpath(path) == str(root) or os.path.realpath(path).startswith(str(root) + os.sep)


def _link_target(member: tarfile.TarInfo, parts: tuple[str, ...], prefix: tuple[str, ...], deb: Path) -> str:
    """A symlink's target, refused unless it is relative and stays under `prefix`."""
    target = member.linkname
    resolved = posixpath.normpath(posixpath.join(*parts[:-1], target)) if parts[:-1] else posixpath.normpath(target)
    if target.startswith("/") or tuple(resolved.split("/"))[: len(prefix)] != prefix:
        raise DebianPackageError(f"{deb}: refusing link {member.name!r} -> {target!r} (it leaves {'/'.join(prefix)})")
    return target


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, links: dict[Path, str]) -> None:
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
    elif member.isfile():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file():
            path.unlink()
        source = tar.extractfile(member)
        assert source is not None
        with source, open(path, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    elif member.issym():
        links[path] = member.linkname


def _make_links(links: dict[Path, str], root: Path, deb: Path) -> None:
    """Symlinks last, so no file is ever written through one; each must resolve inside `root`."""
    for path, target in sorted(links.items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(path.parent, root):
            raise DebianPackageError(f"{deb}: refusing link {path} (its folder leaves {root})")
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.symlink_to(target)
        if not _inside(path, root):
            path.unlink()
            raise DebianPackageError(f"{deb}: refusing link {path} -> {target} (it leaves {root})")


def _marked(marker: Path, stamp: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")) == stamp)
    except (OSError, ValueError):
        return False


def extract_deb(deb: Path, dest: Path, prefix: str) -> Path:
    """Write the members of `deb` under `prefix` (e.g. `usr/share/wordnet`) into `dest`, keeping their paths, and
    return `dest/prefix`. Regular files, folders and symlinks that stay under `prefix` are written (hard links,
    devices and the like are skipped); a marker makes a second call with the same `.deb` and prefix a no-op."""
    wanted = _parts(prefix, deb)
    root = dest.joinpath(*wanted)
    marker = dest / f".extracted-{hashlib.sha256(f'{deb.name}/{prefix}'.encode()).hexdigest()[:16]}.json"
    stamp = {"deb": deb.name, "size": deb.stat().st_size, "prefix": "/".join(wanted)}
    if _marked(marker, stamp):
        return root
    root.mkdir(parents=True, exist_ok=True)
    real_root = Path(os.path.realpath(root))
    links: dict[Path, str] = {}
    with open_data_tar(deb) as tar:
        for member in tar:
            parts = _parts(member.name, deb)
            if parts[: len(wanted)] != wanted or len(parts) == len(wanted):
                continue
            path = dest.joinpath(*parts)
            if not _inside(path.parent, real_root):
                raise DebianPackageError(f"{deb}: refusing member {member.name!r} (its folder leaves {root})")
            if member.issym():
                _link_target(member, parts, wanted, deb)
            _write_member(tar, member, path, links)
    _make_links(links, real_root, deb)
    marker.write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
    return root


def fetch_and_extract(package: DebianPackage, cache_dir: Path, prefix: str) -> Path:
    """`cache_dir`/debian/FOLDER/PREFIX: the verified package's files under `prefix`, fetched and extracted once."""
    deb = fetch_deb(package, cache_dir)
    return extract_deb(deb, cache_dir / "debian" / package.folder, prefix)


def fetch_wordnet(cache_dir: Path) -> Path:
    """WordNet 3.0's dict folder (data.noun, index.noun, ... for noun, verb, adj, adv) from `wordnet-base`."""
    return fetch_and_extract(WORDNET_BASE, cache_dir, WORDNET_PREFIX)
