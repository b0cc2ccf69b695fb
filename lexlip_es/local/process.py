"""A started engine process: its own process group, a log file, a readiness wait whose error names what failed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lexlip_es.errors import EngineStartError
from lexlip_es.settings import Settings


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


KEPT_LOGS_PER_ENGINE = 20


def kept_log_path(settings: Settings, name: str, base_dir: Path | None) -> Path:
    """Where an engine logs: inside a caller-given folder, else under the cache so the log outlives temporary data.

    Only the newest KEPT_LOGS_PER_ENGINE logs of each engine are kept in the cache.
    """
    if base_dir is not None:
        return base_dir / f"{name}.log"
    logs = settings.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in sorted(logs.glob(f"{name}-*.log"))[: -KEPT_LOGS_PER_ENGINE + 1]:
        old.unlink(missing_ok=True)
    now = time.time_ns()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now // 10**9))
    return logs / f"{name}-{stamp}.{now % 10**9:09d}-{os.getpid()}.log"


def http_json(url: str, timeout: float = 5.0) -> Any:
    """GET a URL and decode its JSON body; raises OSError (URLError, HTTPError) or ValueError."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LocalEngine:
    """One running engine: `url` to reach it, `pid` of its process-group leader, and where its files are."""

    name: str
    url: str
    pid: int
    workdir: str
    log_path: str
    remove_workdir: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(Path(self.log_path), lines)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group, SIGKILL it after `timeout`, then remove a temporary work folder."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not self.alive():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        # the group may still hold children (Elasticsearch's server JVM under its launcher)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self._popen is not None:
            self._popen.wait(timeout=10)
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_popen"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LocalEngine:
        return cls(**{k: v for k, v in data.items() if k != "_popen"})


def spawn(
    name: str,
    cmd: Sequence[str],
    *,
    url: str,
    workdir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    remove_workdir: bool = False,
    info: dict[str, Any] | None = None,
) -> LocalEngine:
    """Start `cmd` in a new session (so the engine and its children stop together), logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- lexlip-es: starting {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(cmd),
                cwd=workdir,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise EngineStartError(name, f"could not run {cmd[0]}: {exc}") from exc
    return LocalEngine(
        name=name,
        url=url,
        pid=popen.pid,
        workdir=str(workdir),
        log_path=str(log_path),
        remove_workdir=remove_workdir,
        info=info or {},
        _popen=popen,
    )


def wait_ready(engine: LocalEngine, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready()` until it holds; on exit or timeout stop the engine and raise with the reason and log tail."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if not engine.alive():
            code = engine._popen.poll() if engine._popen is not None else "?"
            tail = engine.log_tail()
            engine.stop()
            raise EngineStartError(engine.name, f"the process exited with code {code} before {what}", tail)
        try:
            if ready():
                return
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last_error = str(exc)
        if time.monotonic() > deadline:
            tail = engine.log_tail()
            engine.stop()
            detail = f" (last check: {last_error})" if last_error else ""
            raise EngineStartError(engine.name, f"{what} not reached within {timeout:.0f}s{detail}", tail)
        time.sleep(0.5)
