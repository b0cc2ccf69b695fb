"""`lexlip ingest` and `lexlip worker` against a real Elasticsearch node: the same rows, accounting and vectors as
on OpenSearch, the lexicons stored as `sparse_vector`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from lexlip_es import LexLIPEncoder, LexSearch
from lexlip_es.local.redis import start_redis
from lexlip_es.settings import Settings
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
        image = encoder.encode_images([good[5].image], scale=100.0, top_k=128)[0]
        assert stored["image_lexicon"] == image.to_features(encoder.vocab)  # the worker's vectors, exactly

        again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
        assert "302 rows: 0 indexed, 300 already there, 2 failed" in again.stdout, again.stdout
    finally:
        pool.stop()
        redis.stop()
