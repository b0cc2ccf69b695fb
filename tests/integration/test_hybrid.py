"""Hybrid search against real engines: OpenSearch (`rank_features` and `impact`) and Elasticsearch (`sparse_vector`).

The documents carry a title (a text field) and the lexicon a real (tiny, seeded) encoder gives that title. What must
hold on every engine: a hybrid score is the lexicon score plus weight x scale^2 times the engine's own BM25 score of
the title; `explain` splits it into lexicon tokens and title words that add up to it; BM25 alone ranks as the engine's
plain `match`; weight 0 is the lexicon search unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from opensearchpy import OpenSearch

from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.hybrid import Hybrid
from lexlip_es.indices import create_index
from lexlip_es.mapping import IndexOptions, LexiconLayout
from lexlip_es.search import LexSearch

TITLES = [
    "red heart",
    "broken heart",
    "red apple",
    "green apple",
    "blue star",
    "shooting star",
    "cat face",
    "grinning cat",
    "rocket",
    "red circle at the top",
    "blue square in the middle",
    "pizza slice",
]
QUERIES = ["red heart", "a cat", "blue star", "apple", "nothing matches zzz"]
WEIGHT = 0.5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(LexLIPEncoder.from_config("tiny", seed=5).save_pretrained(tmp_path_factory.mktemp("hybrid-ckpt") / "c"))


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> LexLIPEncoder:
    return LexLIPEncoder.from_pretrained(checkpoint)


def _index(client: Any, index: str, encoder: LexLIPEncoder, field_type: str) -> LexiconLayout:
    layout = LexiconLayout(encoder.model_id, field_type=field_type)  # type: ignore[arg-type]
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    create_index(client, index, layout, IndexOptions(replicas=0, metadata_properties={"title": {"type": "text"}}))
    vectors = encoder.encode_texts(TITLES, scale=layout.scale, top_k=layout.top_k_image)
    docs = [
        LexiconDocument(f"d{i:02d}", image=v.to_features(encoder.vocab, escape=False), metadata={"title": t})
        for i, (t, v) in enumerate(zip(TITLES, vectors, strict=True))
    ]
    assert BulkWriter(client, index, layout, refresh="wait_for").write(docs).indexed == len(TITLES)
    return layout


def _bm25(client: Any, flavor: str, index: str, text: str) -> dict[str, float]:
    query = {"match": {"title": text}}
    if flavor == "opensearch":
        response = client.search(index=index, body={"query": query, "size": 50})
    else:
        response = client.search(index=index, query=query, size=50)
    return {h["_id"]: h["_score"] for h in response["hits"]["hits"]}


def _check_engine(client: Any, flavor: str, index: str, encoder: LexLIPEncoder, field_type: str) -> None:
    layout = _index(client, index, encoder, field_type)
    search = LexSearch(client, index, text_encoder=encoder)
    hybrid = Hybrid(weight=WEIGHT, fields=("title",))
    boost = WEIGHT * layout.scale**2
    for text in QUERIES:
        lexicon = {h.id: h.score for h in search.search_text(text, k=50, hybrid=Hybrid(weight=0.0))}
        bm25 = _bm25(client, flavor, index, text)
        hits = search.search_text(text, k=50, hybrid=hybrid)
        assert {h.id for h in hits} == set(lexicon) | set(bm25), text
        for hit in hits:
            expected = lexicon.get(hit.id, 0.0) + boost * bm25.get(hit.id, 0.0)
            assert hit.score == pytest.approx(expected, rel=1e-5), (text, hit.id)
            parts = search.explain(hit)
            assert sum(c.score for c in parts) == pytest.approx(hit.score, rel=1e-5), (text, hit.id)
            words = {c.token for c in parts if c.part == "title"}
            assert words <= set(text.split()) and words <= set(dict(enumerate(TITLES))[int(hit.id[1:])].split())
            assert sum(c.score for c in parts if c.part == "title") == pytest.approx(boost * bm25.get(hit.id, 0.0))
        words_only = search.search_text(text, k=50, hybrid=Hybrid(weight=1.0, fields=("title",), lexicon_weight=0))
        assert [h.id for h in words_only] == [i for i, _ in sorted(bm25.items(), key=lambda kv: (-kv[1], kv[0]))]
    first = search.search_text("red heart", k=3, hybrid=Hybrid(weight=10.0, fields=("title",)))
    assert first[0].id == "d00"  # both title words: BM25 at a large weight puts it first
    page = search.search_text("red heart", k=2, hybrid=hybrid)
    rest = search.search_text("red heart", k=2, hybrid=hybrid, after=page[-1])
    assert [h.id for h in page + rest] == [h.id for h in search.search_text("red heart", k=4, hybrid=hybrid)]


def test_hybrid_on_opensearch_rank_features_and_impact(opensearch_url: str, encoder: LexLIPEncoder) -> None:
    client = OpenSearch(opensearch_url, timeout=60)
    _check_engine(client, "opensearch", "lexlip-it-hybrid", encoder, "rank_features")
    _check_engine(client, "opensearch", "lexlip-it-hybrid-impact", encoder, "impact")


def test_hybrid_on_elasticsearch_sparse_vector(elasticsearch_url: str, encoder: LexLIPEncoder) -> None:
    client = Elasticsearch(elasticsearch_url, request_timeout=60)
    _check_engine(client, "elasticsearch", "lexlip-it-hybrid", encoder, "sparse_vector")


def test_the_hybrid_cli_prints_title_words(opensearch_url: str, encoder: LexLIPEncoder, checkpoint: Path) -> None:
    import subprocess
    import sys

    client = OpenSearch(opensearch_url, timeout=60)
    _index(client, "lexlip-it-hybrid-cli", encoder, "rank_features")
    command = [sys.executable, "-m", "lexlip_app.cli", "search", "red heart", "--index", "lexlip-it-hybrid-cli"]
    command += ["--url", opensearch_url, "--checkpoint", str(checkpoint), "--hybrid", "10", "--text-fields", "title"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first = out.stdout.splitlines()[1]
    assert " d00 " in first and "heart@title" in first and "red@title" in first, out.stdout
