"""The README's "I have an Elasticsearch cluster" quickstart, run as written against a real Elasticsearch node.

The code block is read from README.md (not copied here), so the test fails when the README's code stops working.
Its inputs are the environment variables the README sets: the node's URL, a checkpoint (a seeded `tiny` model: the
lexicon scores mean nothing, the words do) and a folder of four pictures named by what they show.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from elasticsearch import Elasticsearch
from PIL import Image

from lexlip_es.encoders.lexlip import LexLIPEncoder

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Quickstart: I have an Elasticsearch cluster"
PICTURES = {"red-heart": "red", "blue-star": "blue", "green-apple": "green", "black-cat": "black"}


def quickstart_code() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Elasticsearch quickstart has one Python block"
    return blocks[0]


def test_the_elasticsearch_quickstart_runs_as_written(elasticsearch_url: str, tmp_path: Path) -> None:
    client = Elasticsearch(elasticsearch_url, request_timeout=60)
    if client.indices.exists(index="photos"):
        client.indices.delete(index="photos")
    checkpoint = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "checkpoint")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in PICTURES.items():
        Image.new("RGB", (64, 64), colour).save(photos / f"{name}.png")
    env = {**os.environ, "ES_URL": elasticsearch_url, "LEXLIP_CHECKPOINT": str(checkpoint), "PHOTOS": str(photos)}
    env.pop("ES_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-c", quickstart_code()], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "4 indexed, 0 refused"
    first = lines[1].split()
    assert first[0] == "red-heart", out.stdout  # the only picture whose caption holds the query's words
    assert "red@captions" in lines[1] and "heart@captions" in lines[1], out.stdout
    mapping = client.indices.get_mapping(index="photos")["photos"]["mappings"]
    assert mapping["properties"]["image_lexicon"]["type"] == "sparse_vector"
    assert client.count(index="photos")["count"] == 4
    source = client.get(index="photos", id="red-heart")["_source"]
    assert source["captions"] == ["red heart"] and source["image_lexicon"]
