"""Session-scoped real services for the integration tests.

For each service, in this order: the URL in LEXLIP_OPENSEARCH_URL / LEXLIP_ELASTICSEARCH_URL / LEXLIP_REDIS_URL; else
docker/docker-compose.yml through pytest-docker when a Docker engine answers (OpenSearch and Redis; LEXLIP_TEST_DOCKER=0
turns this off); else a local engine started by the library. A service that cannot start fails every test that needs
it with the reason and the tail of its log; nothing is skipped. When a test fails, the logs of the engines this
session started are attached to its report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lexlip_es.local.anserini import Anserini
from lexlip_es.local.elasticsearch import start_elasticsearch
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.process import LocalEngine, http_json
from lexlip_es.local.redis import redis_ping, start_redis
from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STARTED = pytest.StashKey[list[LocalEngine]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for engine in item.config.stash.get(STARTED, []):
            report.sections.append((f"{engine.name} log, last 40 lines ({engine.log_path})", engine.log_tail()))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def docker_answers() -> bool:
    """Whether a Docker engine answers (asked once per session); LEXLIP_TEST_DOCKER=0 says no without asking."""
    if os.environ.get("LEXLIP_TEST_DOCKER") == "0" or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "docker" / "docker-compose.yml")


def _keep(request: pytest.FixtureRequest, engine: LocalEngine) -> LocalEngine:
    request.config.stash.setdefault(STARTED, []).append(engine)
    request.addfinalizer(engine.stop)
    return engine


def _check_given(variable: str, url: str, probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # any failure of a user-given service must fail the run, with its reason
        pytest.fail(f"{variable}={url} was given but does not answer: {exc}", pytrace=False)
    return url


def _from_docker(request: pytest.FixtureRequest, service: str, port: int, probe: Callable[[str], object]) -> str:
    docker_services = request.getfixturevalue("docker_services")
    host_port = docker_services.port_for(service, port)
    url = f"http://127.0.0.1:{host_port}" if service != "redis" else f"redis://127.0.0.1:{host_port}/0"

    def responsive() -> bool:
        try:
            probe(url)
            return True
        except Exception:
            return False

    docker_services.wait_until_responsive(check=responsive, timeout=180.0, pause=1.0)
    return url


def _redis_probe(url: str) -> None:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    if not redis_ping(host.split("@")[-1], int(port)):
        raise RuntimeError("no PONG")


@pytest.fixture(scope="session")
def opensearch_url(request: pytest.FixtureRequest, settings: Settings, docker_answers: bool) -> str:
    if settings.opensearch_url:
        url = settings.opensearch_url
        return _check_given("LEXLIP_OPENSEARCH_URL", url, lambda: http_json(f"{url}/_cluster/health"))
    if docker_answers:
        return _from_docker(request, "opensearch", 9200, lambda u: http_json(f"{u}/_cluster/health"))
    return _keep(request, start_opensearch(settings)).url


@pytest.fixture(scope="session")
def elasticsearch_url(request: pytest.FixtureRequest, settings: Settings) -> str:
    if settings.elasticsearch_url:
        url = settings.elasticsearch_url
        return _check_given("LEXLIP_ELASTICSEARCH_URL", url, lambda: http_json(f"{url}/_cluster/health"))
    return _keep(request, start_elasticsearch(settings)).url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, settings: Settings, docker_answers: bool) -> str:
    if settings.redis_url:
        url = settings.redis_url
        return _check_given("LEXLIP_REDIS_URL", url, lambda: _redis_probe(url))
    if docker_answers:
        return _from_docker(request, "redis", 6379, _redis_probe)
    return _keep(request, start_redis(settings)).url


@pytest.fixture(scope="session")
def anserini(settings: Settings) -> Anserini:
    return Anserini(settings)


@pytest.fixture(scope="session")
def opensearch_two_nodes(request: pytest.FixtureRequest, settings: Settings) -> LocalEngine:
    """A separate local 2-node cluster (one JVM, two nodes), whatever LEXLIP_OPENSEARCH_URL says."""
    return _keep(request, start_opensearch(settings, nodes=2, cluster_name="lexlip-two-nodes"))


@pytest.fixture(scope="session")
def celery_worker(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> LocalEngine:
    """A real `lexlip worker` process (`celery -A ingest.app worker`, prefork, one child) on the test Redis. It
    consumes the default queue only: the ingest tests' batches on the same Redis are for their own workers."""
    from ingest.local import start_worker

    log = tmp_path_factory.mktemp("celery-worker") / "worker.log"
    env = {**os.environ, "LEXLIP_REDIS_URL": redis_url}
    return _keep(request, start_worker("lexlip-test", env, log, queues="celery"))


INGEST_IMAGES = 5000


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 shapes images at 32 px for the ingestion tests (the image root of their manifests)."""
    from trainer.data.shapes import generate_shapes

    root = tmp_path_factory.mktemp("ingest-shapes")
    generate_shapes(root, INGEST_IMAGES, 0, 0, seed=7, image_size=32)
    return root


@pytest.fixture(scope="session")
def shapes(shapes_root: Path) -> list[Any]:
    from trainer.data.datasets import load_pairs

    return load_pairs(next(shapes_root.glob("*.json")), "train")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded tiny model, saved: what the ingestion tests' workers load."""
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    saved: Path = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")
    return saved
