"""`lexlip engines start|status|stop` as a user runs them: separate processes, state kept in the cache folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lexlip_es.local.process import http_json, pid_alive
from lexlip_es.local.redis import redis_ping


def _lexlip(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEXLIP_CACHE_DIR": str(cache)}
    env.pop("LEXLIP_OPENSEARCH_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "lexlip_app.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_engines_start_status_stop(tmp_path: Path) -> None:
    started = _lexlip(tmp_path, "engines", "start", "--only", "opensearch,redis")
    assert started.returncode == 0, started.stderr
    urls = dict(
        line.removeprefix("  export ").split("=", 1) for line in started.stdout.splitlines() if "export" in line
    )
    try:
        assert http_json(f"{urls['LEXLIP_OPENSEARCH_URL']}/_cluster/health")["status"] in ("green", "yellow")
        assert redis_ping("127.0.0.1", int(urls["LEXLIP_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]))

        again = _lexlip(tmp_path, "engines", "start", "--only", "opensearch")  # idempotent: reuses the running node
        assert again.returncode == 0 and urls["LEXLIP_OPENSEARCH_URL"] in again.stdout

        status = _lexlip(tmp_path, "engines", "status").stdout.splitlines()
        rows = {line.split()[0]: line for line in status}
        assert "running" in rows["opensearch"] and ("green" in rows["opensearch"] or "yellow" in rows["opensearch"])
        assert "PONG" in rows["redis"]
        assert "stopped" in rows["elasticsearch"] and "not started" in rows["elasticsearch"]
        assert (tmp_path / "engines" / "opensearch" / "opensearch.log").stat().st_size > 0
    finally:
        state = (tmp_path / "engines" / "engines.json").read_text()
        stopped = _lexlip(tmp_path, "engines", "stop")
    assert stopped.returncode == 0 and "opensearch" in stopped.stdout and "redis" in stopped.stdout
    for engine in json.loads(state).values():
        assert not pid_alive(engine["pid"])
    assert "stopped" in _lexlip(tmp_path, "engines", "status").stdout.splitlines()[0]
