"""A real single Elasticsearch node from the integ-test zip on Maven Central, security off.

That distribution has no mapper-extras (no `rank_features`); its `sparse_vector` field and query are there.
Elasticsearch refuses to run as root, so under root the node runs as `settings.engine_user` (default `nobody`)
from a private copy of the distribution that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from lexlip_es.errors import EngineError
from lexlip_es.local.java import find_java
from lexlip_es.local.maven import fetch_artifact
from lexlip_es.local.ports import free_ports
from lexlip_es.local.process import LocalEngine, http_json, kept_log_path, spawn, wait_ready
from lexlip_es.settings import Settings

MIN_JAVA = 17


def elasticsearch_zip(settings: Settings) -> Path:
    coords = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{settings.elasticsearch_version}:zip"
    return fetch_artifact(settings, coords)


def _extract(archive: Path, target: Path) -> Path:
    """Unzip keeping the executable bits (zipfile drops them); return the distribution's home folder."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, target))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(stat.S_IMODE(mode))
    homes = [p for p in target.iterdir() if p.is_dir() and (p / "bin" / "elasticsearch").exists()]
    if len(homes) != 1:
        raise EngineError(f"{archive} does not hold one Elasticsearch distribution")
    return homes[0]


def _run_as(settings: Settings) -> tuple[list[str], int | None, int | None]:
    """The command prefix that drops root, with the uid/gid the node's files must belong to."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam(settings.engine_user)
    except KeyError as exc:
        raise EngineError(
            f"Elasticsearch cannot run as root and user {settings.engine_user!r} does not exist; set LEXLIP_ENGINE_USER"
        ) from exc
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise EngineError("running as root needs `setpriv` (util-linux) to start Elasticsearch as another user")
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    return prefix, user.pw_uid, user.pw_gid


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


def start_elasticsearch(
    settings: Settings,
    *,
    heap_mb: int | None = None,
    base_dir: Path | None = None,
    ports: tuple[int, int] | None = None,
) -> LocalEngine:
    """Start one Elasticsearch node on free loopback ports and wait for a green or yellow cluster.

    A node started again on the same `base_dir` and `ports` (HTTP, transport; `engine.info` has them) finds its data
    again."""
    runtime = find_java(settings, MIN_JAVA)
    archive = elasticsearch_zip(settings)
    prefix, uid, gid = _run_as(settings)
    remove = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="lexlip-elasticsearch-")) if base_dir is None else base_dir
    base.mkdir(parents=True, exist_ok=True)
    home = _extract(archive, base / "dist")
    for sub in ("data", "logs", "tmp"):
        (base / sub).mkdir(exist_ok=True)
    log_path = kept_log_path(settings, "elasticsearch", base_dir)
    if uid is not None and gid is not None:
        _chown_tree(base, uid, gid)
    http_port, transport_port = ports or free_ports(2)
    heap = heap_mb or settings.engine_heap_mb
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ES_JAVA_HOME": str(runtime.home),
        "ES_JAVA_OPTS": f"-Xms{heap}m -Xmx{heap}m",
        "ES_TMPDIR": str(base / "tmp"),
        "HOME": str(base),
    }
    es_settings = {
        "cluster.name": "lexlip-local",
        "node.name": "lexlip-es-node",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "xpack.security.enabled": "false",
        "path.data": base / "data",
        "path.logs": base / "logs",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        # A loopback node on a shared disk: merges stall below this much free space (the default is 5% of the disk
        # up to 100 GB, which a developer's disk with a few GB free already trips: force-merges then wait forever).
        "indices.merge.disk.watermark.high": "1gb",
    }
    cmd = [*prefix, str(home / "bin" / "elasticsearch")]
    for key, value in es_settings.items():
        cmd += ["-E", f"{key}={value}"]
    url = f"http://127.0.0.1:{http_port}"
    engine = spawn(
        "elasticsearch",
        cmd,
        url=url,
        workdir=base,
        log_path=log_path,
        env=env,
        remove_workdir=remove,
        info={
            "heap_mb": heap,
            "java": str(runtime.home),
            "version": settings.elasticsearch_version,
            "http_port": http_port,
            "transport_port": transport_port,
        },
    )

    def ready() -> bool:
        health = http_json(f"{url}/_cluster/health?timeout=2s", timeout=10)
        return bool(health.get("status") in ("green", "yellow"))

    wait_ready(engine, ready, settings.start_timeout_s, f"a green or yellow cluster on {url}")
    return engine
