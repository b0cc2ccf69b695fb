"""Celery tasks. `health` proves a worker process is alive and reachable through the broker."""

from __future__ import annotations

import os
import socket
from typing import Any

from ingest.app import app

import lexlip_es


@app.task(name="lexlip.health")
def health(echo: str = "") -> dict[str, Any]:
    return {"echo": echo, "pid": os.getpid(), "host": socket.gethostname(), "lexlip_es": lexlip_es.__version__}
