"""The local-engine plumbing that needs no engine: Java discovery, Maven paths, process groups, readiness errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lexlip_es.errors import EngineError, EngineStartError
from lexlip_es.local.java import _release_version, find_java
from lexlip_es.local.maven import artifact_path
from lexlip_es.local.ports import free_ports, port_open
from lexlip_es.local.process import KEPT_LOGS_PER_ENGINE, LocalEngine, kept_log_path, pid_alive, spawn, wait_ready
from lexlip_es.settings import Settings


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings.from_env({"LEXLIP_CACHE_DIR": str(tmp_path)}, **kw)


def test_release_file_versions(tmp_path: Path) -> None:
    (tmp_path / "release").write_text('JAVA_VERSION="21.0.4"\n')
    assert _release_version(tmp_path) == 21
    (tmp_path / "release").write_text('JAVA_VERSION="1.8.0_392"\n')
    assert _release_version(tmp_path) == 8


def test_find_java_names_what_it_saw_when_nothing_fits(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"no Java 99\+ runtime found \(seen: .*LEXLIP_JAVA_HOME"):
        find_java(_settings(tmp_path), 99)


def test_find_java_prefers_lexlip_java_home(tmp_path: Path) -> None:
    fake = tmp_path / "jdk"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "java").write_text("#!/bin/sh\n")
    (fake / "release").write_text('JAVA_VERSION="30.0.1"\n')
    runtime = find_java(_settings(tmp_path, java_home=str(fake)), 21)
    assert runtime.home == fake.resolve() and runtime.version == 30


def test_artifact_path(tmp_path: Path) -> None:
    s = _settings(tmp_path, maven_repo=tmp_path / "m2")
    assert artifact_path(s, "io.anserini:anserini:1.5.0:jar:fatjar") == (
        tmp_path / "m2/io/anserini/anserini/1.5.0/anserini-1.5.0-fatjar.jar"
    )
    assert artifact_path(s, "a.b:c:1").name == "c-1.jar"
    with pytest.raises(ValueError):
        artifact_path(s, "a:b")


def test_free_ports_are_distinct_and_closed() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert not any(port_open(p) for p in ports)


def _shell(name: str, script: str, folder: Path) -> LocalEngine:
    """A process group running `sh -c script` in `folder`, its output logged there."""
    return spawn(name, ["sh", "-c", script], url="-", workdir=folder, log_path=folder / "log")


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    engine = _shell("sleeper", "sleep 300 & echo $! > child; wait", tmp_path)
    deadline = time.monotonic() + 10
    while not (tmp_path / "child").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "child").read_text())
    assert pid_alive(child)
    engine.stop(timeout=5)
    assert not engine.alive()
    time.sleep(0.2)
    assert not pid_alive(child) or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"


def test_a_process_that_dies_fails_with_its_exit_code_and_log(tmp_path: Path) -> None:
    engine = _shell("broken", "echo cannot bind port >&2; exit 3", tmp_path)
    with pytest.raises(EngineStartError) as info:
        wait_ready(engine, lambda: False, 30, "readiness")
    message = str(info.value)
    assert "broken failed to start: the process exited with code 3 before readiness" in message
    assert "cannot bind port" in message


def test_a_process_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    engine = _shell("slow", "exec sleep 60", tmp_path)
    with pytest.raises(EngineStartError, match=r"slow failed to start: health not reached within 1s"):
        wait_ready(engine, lambda: False, 1, "health")
    assert not engine.alive()


def test_engine_state_round_trips_through_json(tmp_path: Path) -> None:
    engine = LocalEngine("redis", "redis://127.0.0.1:1/0", 123, str(tmp_path), str(tmp_path / "log"), info={"a": 1})
    assert LocalEngine.from_json(engine.to_json()) == engine


def test_logs_outlive_temporary_engines_and_are_pruned(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert kept_log_path(settings, "redis", tmp_path / "base") == tmp_path / "base" / "redis.log"
    made = []
    for _ in range(KEPT_LOGS_PER_ENGINE + 5):
        path = kept_log_path(settings, "redis", None)
        path.write_text("x")
        made.append(path)
    kept = sorted((tmp_path / "logs").glob("redis-*.log"))
    assert len(kept) == KEPT_LOGS_PER_ENGINE
    assert kept == sorted(made)[-KEPT_LOGS_PER_ENGINE:]
