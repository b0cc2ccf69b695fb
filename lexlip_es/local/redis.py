"""A real redis-server (Debian's package) on a loopback port: without persistence, or with the append-only file
the README recommends for a broker (`appendonly yes`, `appendfsync everysec`)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from lexlip_es.errors import EngineStartError
from lexlip_es.local.ports import free_port
from lexlip_es.local.process import LocalEngine, kept_log_path, spawn, wait_ready
from lexlip_es.settings import Settings


def redis_ping(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the server answers PING with PONG (plain RESP, so this needs no client library)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


PERSISTENCE = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
"""What the README recommends for the broker: every write in the append-only file, flushed to disk every second."""
NO_PERSISTENCE = ["--save", "", "--appendonly", "no"]


def start_redis(
    settings: Settings, *, base_dir: Path | None = None, port: int | None = None, persistent: bool = False
) -> LocalEngine:
    """redis-server on `port` (a free one by default) with its files in `base_dir` (a temporary folder by default;
    pass the same folder and port to restart a persistent server on its data)."""
    server = shutil.which("redis-server")
    if server is None:
        raise EngineStartError("redis", "`redis-server` is not installed (Debian: `apt-get install redis-server`)")
    remove = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="lexlip-redis-")) if base_dir is None else base_dir
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        *(PERSISTENCE if persistent else NO_PERSISTENCE),
        "--dir",
        str(base),
        "--daemonize",
        "no",
    ]
    engine = spawn(
        "redis",
        cmd,
        url=f"redis://127.0.0.1:{port}/0",
        workdir=base,
        log_path=kept_log_path(settings, "redis", base_dir),
        remove_workdir=remove,
    )
    wait_ready(engine, lambda: redis_ping("127.0.0.1", port), settings.start_timeout_s, f"PONG on port {port}")
    return engine
