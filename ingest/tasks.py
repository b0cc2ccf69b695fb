"""Celery tasks. `health` proves a worker process is alive and reachable through the broker."""

from __future__ import annotations

import os
import socket
from typing import Any

import lexlip_es
from ingest.app import app


@app.task(name="lexlip.health")  # type: ignore[untyped-decorator]
def health(echo: str = "") -> dict[str, Any]:
    return {"echo": echo, "pid": os.getpid(), "host": socket.gethostname(), "lexlip_es": lexlip_es.__version__}
