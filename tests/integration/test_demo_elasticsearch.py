"""`lexlip demo --engine elasticsearch` end to end on a real Elasticsearch node, real Redis and a real worker: the
shapes set, a seeded `tiny` checkpoint (LEXLIP_CHECKPOINT: no training here; its recall means nothing), ingest and
recall through Elasticsearch, no page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from elasticsearch import Elasticsearch

from lexlip_es.encoders.lexlip import LexLIPEncoder

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_on_elasticsearch(elasticsearch_url: str, redis_url: str, tmp_path: Path) -> None:
    checkpoint = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "checkpoint")
    env = {k: v for k, v in os.environ.items() if k not in ("LEXLIP_OPENSEARCH_URL", "LEXLIP_ENGINE")}
    env |= {"LEXLIP_ELASTICSEARCH_URL": elasticsearch_url, "LEXLIP_REDIS_URL": redis_url}
    env |= {"LEXLIP_CHECKPOINT": str(checkpoint)}
    command = [sys.executable, "-m", "lexlip_app.cli", "demo", "--data", "shapes", "--engine", "elasticsearch"]
    command += ["--serve-seconds", "0", "--workers", "1"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert f"Elasticsearch {elasticsearch_url}" in out.stdout
    assert "1000 rows: 1000 indexed, 0 already there, 0 failed" in out.stdout, out.stdout
    assert "recall through Elasticsearch on 1000 held-out images / 5000 captions" in out.stdout, out.stdout
    client = Elasticsearch(elasticsearch_url, request_timeout=60)
    mapping = client.indices.get_mapping(index="lexlip-demo")["lexlip-demo"]["mappings"]["properties"]
    assert mapping["image_lexicon"]["type"] == "sparse_vector"
    assert client.count(index="lexlip-demo")["count"] == 1000
