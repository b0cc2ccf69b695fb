"""Photographs searchable in words with no training at all: real Tux Paint stamps (the pinned Debian package) encoded
by the zero-training `imagenet-prior` checkpoint in a real Celery worker, indexed in a real OpenSearch node, searched
by words a person types; every picture gets a lexicon and every hit is explained by the word it was asked for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from lexlip_app.demo import INDEX, DemoOptions, ingest, manifest_rows
from lexlip_es.features import stored_lexicon
from lexlip_es.mapping import IMAGE_FIELD
from lexlip_es.search import LexSearch
from lexlip_es.settings import Settings
from trainer.data.debian import fetch_debian_packages, fetch_wordnet
from trainer.data.tuxpaint import stamps_root, write_tuxpaint

ROOT = Path(__file__).resolve().parents[2]
STAMPS = [
    "hobbies/music/string/guitar_classical",
    "hobbies/music/string/guitar_electric",
    "vehicles/cycle/bluebike",
    "clothes/hats/cowboy_hat",
    "clothes/hats/brownhat",
    "food/fruit/apple_red",
    "food/fruit/strawberry",
    "household/dishes/mug",
    "vehicles/auto/sedan",
    "plants/flowers/flower1",
    "hobbies/music/brass/trumpet",
    "household/vacuum_cleaner",
]
"""A dozen stamps outside animals/ and symbols/ (the package's paths, without the extension)."""


@pytest.fixture(scope="module")
def photo_index(opensearch_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> LexSearch:
    settings = Settings.from_env().with_(opensearch_url=opensearch_url, redis_url=redis_url, engine="opensearch")
    fetch_debian_packages(settings.cache_dir)
    fetch_wordnet(settings.cache_dir)
    folder = tmp_path_factory.mktemp("photos")
    root = stamps_root(settings.cache_dir)
    for key in STAMPS:
        found = [root / f"{key}{suffix}" for suffix in (".png", ".svg", ".txt") if (root / f"{key}{suffix}").exists()]
        assert found[-1].suffix == ".txt" and len(found) >= 2, f"{key}: {found}"
        for path in found:
            (folder / "stamps" / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / "stamps" / f"{key}{path.suffix}")
    data = write_tuxpaint(folder / "set", folder / "stamps", size=224).path
    checkpoint = folder / "imagenet-prior"
    command = [sys.executable, "-m", "lexlip_app.cli", "checkpoint", "imagenet-prior", "--out", str(checkpoint)]
    made = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    rows = manifest_rows(data, "tuxpaint", ("all",))
    assert len(rows) == len(STAMPS)
    tally = ingest(settings, rows, checkpoint, DemoOptions(workers=1), folder)
    assert tally.ok and tally.indexed == len(STAMPS), tally.summary()
    client = OpenSearch(opensearch_url, timeout=30)
    client.indices.refresh(index=INDEX)
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    return LexSearch(client, INDEX, text_encoder=LexLIPEncoder.from_pretrained(checkpoint))


def test_every_photograph_gets_a_lexicon(photo_index: LexSearch) -> None:
    docs = photo_index.client.search(index=INDEX, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    assert len(docs) == len(STAMPS)
    for doc in docs:
        lexicon = stored_lexicon(doc["_source"][IMAGE_FIELD])
        assert len(lexicon) >= 2, (doc["_id"], lexicon)  # a confident class gives few: "strawberry", "berry"


@pytest.mark.parametrize(
    "query, word, described",
    [("guitar", "guitar", "guitar"), ("bicycle", "bicycle", "bicycle"), ("a trumpet", "trumpet", "trumpet")],
)
def test_a_word_finds_its_photograph_first_and_explains_it_by_that_word(
    photo_index: LexSearch, query: str, word: str, described: str
) -> None:
    hits = photo_index.search_text(query, k=3)
    top = hits[0]
    captions = " ".join(top.source["captions"]).lower()
    assert described in captions, [(h.id, h.source["captions"]) for h in hits]
    tokens = {c.token for c in photo_index.explain(top)}
    assert word in tokens, tokens
