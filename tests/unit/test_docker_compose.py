"""docker/ cannot run here (no Docker engine): check its files parse and say what the issue asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_has_the_services_and_ports() -> None:
    services = _compose()["services"]
    assert {"opensearch", "redis", "worker", "worker-gpu"} <= set(services)
    assert any(str(p).endswith(":9200") for p in services["opensearch"]["ports"])
    assert any(str(p).endswith(":6379") for p in services["redis"]["ports"])


def test_the_broker_runs_with_the_persistence_the_readme_recommends() -> None:
    from lexlip_es.local.redis import PERSISTENCE

    redis = _compose()["services"]["redis"]
    assert redis["command"][0] == "redis-server" and redis["command"][1:] == PERSISTENCE
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert "--appendonly yes --appendfsync everysec" in (DOCKER.parent / "docs" / "ingestion.md").read_text()


def test_opensearch_is_single_node_with_security_off_for_development() -> None:
    env = _compose()["services"]["opensearch"]["environment"]
    env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
    assert env["discovery.type"] == "single-node"
    assert env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert "OPENSEARCH_JAVA_OPTS" in env
    text = (DOCKER / "docker-compose.yml").read_text()
    assert "DISABLE_SECURITY_PLUGIN" in text and "turn security on" in text.lower()


def test_workers_build_from_the_dockerfiles_and_reach_redis_and_opensearch() -> None:
    services = _compose()["services"]
    for name, dockerfile in (("worker", "Dockerfile"), ("worker-gpu", "Dockerfile.gpu")):
        build = services[name]["build"]
        assert build["dockerfile"].endswith(dockerfile)
        assert (DOCKER / dockerfile).exists()
        env = services[name]["environment"]
        assert env["LEXLIP_REDIS_URL"].startswith("redis://redis:6379")
        assert env["LEXLIP_OPENSEARCH_URL"] == "http://opensearch:9200"
        assert set(services[name]["depends_on"]) == {"opensearch", "redis"}
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "gpu" in services["worker-gpu"]["profiles"]


def test_dockerfiles_install_the_project_and_start_a_celery_worker() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert "pip install" in text and '"worker", "--concurrency=1"' in text
