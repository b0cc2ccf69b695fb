"""Start `lexlip worker` processes on this machine (tests, benchmarks, the demo) and wait until they answer."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ingest.app import create_app
from lexlip_es.local.process import LocalEngine, spawn, wait_ready
from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def start_worker(
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    threads: int = 1,
    device: str = "cpu",
    timeout_s: float = 120,
    queues: str | None = None,
) -> LocalEngine:
    """One worker process group (`--concurrency=1`) named `name@<host>`, ready when it answers a broker ping;
    `queues` (comma-separated) limits what it consumes (default: ingest batches and the default queue)."""
    cmd = [
        sys.executable,
        "-m",
        "lexlip_app.cli",
        "worker",
        "--concurrency=1",
        f"--device={device}",
        f"--threads={threads}",
        "--loglevel=INFO",
        f"--name={name}@%h",
        *([f"--queues={queues}"] if queues else []),
    ]
    engine = spawn(name, cmd, url="", workdir=ROOT, log_path=log_path, env=env)
    app = create_app(Settings.from_env(env))

    def answers() -> bool:
        return any(host.startswith(f"{name}@") for reply in app.control.ping(timeout=1.0) for host in reply)

    wait_ready(engine, answers, timeout_s, f"worker {name} answering a ping through the broker")
    return engine
