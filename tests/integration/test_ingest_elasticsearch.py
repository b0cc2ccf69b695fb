"""`lexlip ingest` and `lexlip worker` against a real Elasticsearch node: the same rows, accounting and vectors as
on OpenSearch, the lexicons stored as `sparse_vector`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from lexlip_es import LexLIPEncoder, LexSearch
from lexlip_es.encoders.documents_runtime import document_encoder
from lexlip_es.local.elasticsearch import start_elasticsearch
from lexlip_es.local.redis import start_redis
from lexlip_es.settings import Settings
from tests.integration.test_ingest import faults_lose_nothing, start_workers
from tests.integration.test_ingest_faults import Pool

ROOT = Path(__file__).resolve().parents[2]


def test_workers_and_producer_write_to_elasticsearch_when_pointed_at_it(
    settings: Settings,
    elasticsearch_url: str,
    shapes: list[Any],
    shapes_root: Path,
    checkpoint: Path,
    tmp_path: Path,
) -> None:
    redis = start_redis(settings, base_dir=tmp_path / "redis")
    env = {key: value for key, value in os.environ.items() if key not in ("LEXLIP_OPENSEARCH_URL", "LEXLIP_ENGINE")}
    env |= {"LEXLIP_REDIS_URL": redis.url, "LEXLIP_ELASTICSEARCH_URL": elasticsearch_url}
    pool = Pool(env, tmp_path)
    try:
        pool.start("e1")
        good = shapes[:300]
        rows: list[dict[str, Any]] = [
            {"id": p.image_id, "image": p.image, "captions": list(p.captions[:1])} for p in good
        ]
        rows.insert(100, {"id": "captions-int", "image": good[0].image, "captions": 5})
        rows.insert(200, {"id": "outside", "image": "/etc/hostname"})
        manifest = tmp_path / "es.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        command = [sys.executable, "-m", "lexlip_app.cli", "ingest", str(manifest), "--index", "es-ingest"]
        command += ["--checkpoint", str(checkpoint), "--image-root", str(shapes_root), "--replicas", "0", "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "302 rows: 300 indexed, 0 already there, 2 failed" in result.stdout, result.stdout
        assert "line 101: captions must be" in result.stdout and "line 201: /etc/hostname lies outside" in result.stdout

        client = Elasticsearch(elasticsearch_url, request_timeout=60)
        client.indices.refresh(index="es-ingest")
        mapping = client.indices.get_mapping(index="es-ingest")["es-ingest"]["mappings"]["properties"]
        assert mapping["image_lexicon"]["type"] == "sparse_vector" and mapping["image"]["type"] == "keyword"
        assert client.count(index="es-ingest")["count"] == 300

        encoder = LexLIPEncoder.from_pretrained(checkpoint)
        search = LexSearch(client, "es-ingest", text_encoder=encoder, image_encoder=encoder)
        hits = search.search_text(good[5].captions[0], k=5)
        assert len(hits) == 5 and sum(c.score for c in search.explain(hits[0])) > 0
        stored = client.get(index="es-ingest", id=good[5].image_id)["_source"]
        workers_encoder = document_encoder(checkpoint, Settings.from_env({}, cache_dir=tmp_path, torch_threads=1))
        image = workers_encoder.encode_images([good[5].image], scale=100.0, top_k=128)[0]
        assert stored["image_lexicon"] == image.to_features(encoder.vocab)  # the worker's vectors, exactly

        again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
        assert "302 rows: 0 indexed, 300 already there, 2 failed" in again.stdout, again.stdout
    finally:
        pool.stop()
        redis.stop()


class ElasticsearchNode:
    """An Elasticsearch node that can be killed and started again on the same ports and data."""

    def __init__(self, settings: Settings, base: Path) -> None:
        self.settings, self.base = settings, base
        self.engine = start_elasticsearch(settings, base_dir=base)
        self.ports = (self.engine.info["http_port"], self.engine.info["transport_port"])
        self.url = self.engine.url
        self.env = {"LEXLIP_ELASTICSEARCH_URL": self.url}

    def restart(self) -> None:
        os.killpg(self.engine.pid, signal.SIGKILL)
        self.engine.stop()
        self.engine = start_elasticsearch(self.settings, base_dir=self.base, ports=self.ports)

    def client(self, **options: Any) -> Elasticsearch:
        timeout = options.pop("timeout", 60)
        return Elasticsearch(self.url, request_timeout=timeout, **options)

    def sources(self, index: str) -> dict[str, dict[str, Any]]:
        from elasticsearch import helpers

        hits = helpers.scan(self.client(), index=index, query={"query": {"match_all": {}}})
        return {h["_id"]: h["_source"] for h in hits}

    def stop(self) -> None:
        self.engine.stop()


def test_a_killed_worker_and_a_restarted_elasticsearch_node_lose_nothing_and_duplicate_nothing(
    settings: Settings, shapes: list[Any], shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """The OpenSearch fault run (test_ingest.py) against Elasticsearch: 3,000 items, a worker SIGKILLed, the node
    SIGKILLed and started again, a worker stopped with SIGTERM; every item indexed once, as `sparse_vector`."""
    redis = start_redis(settings, base_dir=tmp_path / "redis")
    # under /tmp itself: pytest's folders are root's alone, and Elasticsearch runs as another user under root
    base = Path(tempfile.mkdtemp(prefix="lexlip-es-fault-"))
    node = ElasticsearchNode(settings, base)
    workers = start_workers(redis.url, node, tmp_path / "workers")
    try:
        started = time.monotonic()
        tally = faults_lose_nothing(workers, node, shapes[:3000], "es-fault", checkpoint, shapes_root, tmp_path)
        figures = {
            "items": 3000,
            "indexed": tally.indexed,
            "already_there": tally.skipped,
            "redelivered_batches": tally.redelivered,
            "seconds": round(time.monotonic() - started, 1),
        }
        (settings.cache_dir / "logs").mkdir(parents=True, exist_ok=True)
        (settings.cache_dir / "logs" / "ingest-faults-elasticsearch.json").write_text(json.dumps(figures, indent=2))
        mapping = node.client().indices.get_mapping(index="es-fault")["es-fault"]["mappings"]["properties"]
        assert mapping["image_lexicon"]["type"] == "sparse_vector"
    finally:
        workers.stop()
        node.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)
