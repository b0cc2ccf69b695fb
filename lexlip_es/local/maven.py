"""Fetching engine artifacts with Maven (`mvn dependency:get` / `dependency:build-classpath`) into Maven's own cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lexlip_es.errors import EngineError
from lexlip_es.settings import Settings


def local_repo(settings: Settings) -> Path:
    return settings.maven_repo or Path.home() / ".m2" / "repository"


def _mvn(settings: Settings, args: list[str], cwd: Path | None = None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineError("Maven (`mvn`) is not installed; install it (e.g. `apt-get install maven`) and retry")
    cmd = [mvn, "-B", "-q", f"-Dmaven.repo.local={local_repo(settings)}", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise EngineError(f"`mvn {' '.join(args)}` failed (exit {result.returncode}):\n{output}")


def artifact_path(settings: Settings, coords: str) -> Path:
    """Path of `group:artifact:version[:packaging[:classifier]]` inside the local Maven repository."""
    parts = coords.split(":")
    if len(parts) < 3:
        raise ValueError(f"bad Maven coordinates {coords!r}")
    group, artifact, version = parts[:3]
    packaging = parts[3] if len(parts) > 3 else "jar"
    classifier = f"-{parts[4]}" if len(parts) > 4 else ""
    return (
        local_repo(settings)
        / Path(*group.split("."))
        / artifact
        / version
        / f"{artifact}-{version}{classifier}.{packaging}"
    )


def fetch_artifact(settings: Settings, coords: str) -> Path:
    """Download one artifact (no dependencies) unless Maven's cache already holds it."""
    path = artifact_path(settings, coords)
    if not path.exists():
        _mvn(settings, ["dependency:get", f"-Dartifact={coords}", "-Dtransitive=false"])
        if not path.exists():
            raise EngineError(f"Maven reported success but {path} is missing")
    return path


def fetch_classpath(settings: Settings, group: str, artifact: str, version: str) -> list[Path]:
    """Resolve an artifact with all its runtime dependencies; the resolved classpath is cached next to a tiny pom."""
    work = settings.cache_dir / "maven" / f"{artifact}-{version}"
    cp_file = work / "classpath.txt"
    if cp_file.exists():
        cached = [Path(p) for p in cp_file.read_text().strip().split(os.pathsep) if p]
        if cached and all(p.exists() for p in cached):
            return cached
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>lexlip-es.local</groupId><artifactId>classpath</artifactId><version>1</version>"
        f"<dependencies><dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency></dependencies></project>\n"
    )
    _mvn(settings, ["dependency:build-classpath", f"-Dmdep.outputFile={cp_file}"], cwd=work)
    return [Path(p) for p in cp_file.read_text().strip().split(os.pathsep) if p]
