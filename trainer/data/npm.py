"""Pinned npm package tarballs fetched with the ordinary `npm pack NAME@VERSION` client into a cache folder.

A tarball is checked against its pinned Subresource Integrity string (`sha512-<base64>`) before it is kept: a fresh
download that does not match is deleted, a cached file that does not match is refused (delete it to fetch again).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lexlip_es.errors import LexlipError


class NpmPackageError(LexlipError):
    """An npm package could not be fetched, or its tarball does not match the pinned integrity."""


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str
    """Subresource Integrity of the tarball, as `npm pack --json` and lock files write it: `sha512-<base64>`."""

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file `npm pack` writes: a scope loses its `@` and its `/` becomes `-`."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


def integrity_of(path: Path) -> str:
    """`sha512-<base64 digest>` of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def verify(package: NpmPackage, path: Path, hint: str = "") -> None:
    """Raise NpmPackageError naming the package unless the file's integrity is the pinned one."""
    found = integrity_of(path)
    if found != package.integrity:
        raise NpmPackageError(
            f"{package.spec}: {path} does not match the pinned integrity (expected {package.integrity}, "
            f"found {found}){hint}"
        )


def _npm_pack(package: NpmPackage, destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmPackageError(
            f"{package.spec}: npm is not installed; install it (e.g. `apt-get install npm`) and retry"
        )
    cmd = [npm, "pack", package.spec, "--json", "--ignore-scripts", "--pack-destination", str(destination)]
    result = subprocess.run(cmd, cwd=destination, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise NpmPackageError(f"{package.spec}: `npm pack` failed (exit {result.returncode}):\n{output}")
    written = destination / package.tarball_name
    if not written.exists():
        try:
            written = destination / json.loads(result.stdout)[0]["filename"]
        except (ValueError, LookupError, TypeError):
            raise NpmPackageError(f"{package.spec}: `npm pack` wrote no {package.tarball_name}") from None
    if not written.is_file():
        raise NpmPackageError(f"{package.spec}: `npm pack` reported {written.name}, which is missing")
    return written


def fetch_package(package: NpmPackage, cache_dir: Path) -> Path:
    """The package's verified tarball in `cache_dir`, fetched with `npm pack` when missing."""
    path = cache_dir / package.tarball_name
    if path.exists():
        verify(package, path, hint="; delete the file to fetch it again")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as tmp:
        written = _npm_pack(package, Path(tmp))
        verify(package, written, hint="; the download was discarded")
        written.replace(path)
    return path
