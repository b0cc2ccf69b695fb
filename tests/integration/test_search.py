"""Index management, bulk writing and LexSearch against the real engines of the session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from opensearchpy import OpenSearch

from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.errors import EngineUnavailableError, IndexNotFoundError, MappingError, QueryError
from lexlip_es.features import dot, lucene_dot
from lexlip_es.indices import (
    alias_targets,
    create_index,
    create_versioned_index,
    put_template,
    read_layout,
    swap_alias,
)
from lexlip_es.mapping import IndexOptions, LexiconLayout
from lexlip_es.parity import zipf_vectors
from lexlip_es.search import AsyncLexSearch, LexSearch

ROOT = Path(__file__).resolve().parents[2]


def _docs(n: int = 300, seed: int = 3) -> list[tuple[str, dict[str, int]]]:
    return zipf_vectors(n, (10, 60), vocab_size=400, big_fraction=0.01, seed=seed)


def _fresh(client: Any, index: str) -> None:
    if client.indices.exists(index=index):
        client.indices.delete(index=index)


def _fill(client: Any, index: str, layout: LexiconLayout, docs: list[tuple[str, dict[str, int]]]) -> None:
    _fresh(client, index)
    create_index(client, index, layout, IndexOptions(replicas=0, metadata_properties={"shop": {"type": "keyword"}}))
    report = BulkWriter(client, index, layout, refresh="wait_for").write(
        LexiconDocument(d, image=v, captions=v, metadata={"shop": "eu" if i % 2 else "us"})
        for i, (d, v) in enumerate(docs)
    )
    assert report.ok and report.indexed == len(docs), report.errors[:3]


@pytest.fixture(scope="module")
def os_client(opensearch_url: str) -> OpenSearch:
    return OpenSearch(opensearch_url, timeout=60)


@pytest.fixture(scope="module")
def es_client(elasticsearch_url: str) -> Elasticsearch:
    return Elasticsearch(elasticsearch_url, request_timeout=60)


def _check_hits(search: LexSearch, docs: list[tuple[str, dict[str, int]]], query: dict[str, int], k: int) -> None:
    by_id = dict(docs)
    hits = search.search_vector(query, k=k)
    expected = sorted(((-lucene_dot(query, v), d) for d, v in docs if dot(query, v) > 0))[:k]
    assert [(h.id, h.score) for h in hits] == [(d, -s) for s, d in expected]
    for hit in hits:
        contributions = search.explain(hit)
        assert sum(c.score for c in contributions) == pytest.approx(hit.score, rel=1e-6)
        assert {c.token for c in contributions} == set(query) & set(by_id[hit.id])


def test_opensearch_index_write_search_explain(os_client: OpenSearch) -> None:
    docs = _docs()
    layout = LexiconLayout("model-a", top_k_image=None)
    _fill(os_client, "lexlip-it-os", layout, docs)
    assert read_layout(os_client, "lexlip-it-os") == layout
    search = LexSearch(os_client, "lexlip-it-os")
    queries = zipf_vectors(20, (3, 15), vocab_size=400, big_fraction=0.0, seed=9, prefix="q")
    for _, query in queries:
        _check_hits(search, docs, query, k=10)

    query = queries[0][1]
    filtered = search.search_vector(query, k=50, filters=[{"term": {"shop": "eu"}}])
    assert filtered and all(h.source["shop"] == "eu" for h in filtered)
    floor = filtered[len(filtered) // 2].score
    assert all(h.score >= floor for h in search.search_vector(query, k=50, min_score=floor))
    captions = search.search_vector(query, k=5, field="caption_lexicon")
    assert [h.id for h in captions] == [h.id for h in search.search_vector(query, k=5)]


def test_fast_mode_gives_every_hit_its_exact_full_score(os_client: OpenSearch) -> None:
    from lexlip_es.backends.engine import FastMode

    docs = _docs()
    _fill(os_client, "lexlip-it-fast", LexiconLayout("model-a", top_k_image=None), docs)
    by_id = dict(docs)
    exact = LexSearch(os_client, "lexlip-it-fast")
    fast = LexSearch(os_client, "lexlip-it-fast", fast=FastMode(terms=3, window=len(docs), rescore_terms=None))
    for _, query in zipf_vectors(10, (8, 15), vocab_size=400, big_fraction=0.0, seed=12, prefix="q"):
        hits = fast.search_vector(query, k=10)
        assert hits
        for hit in hits:
            assert hit.score == lucene_dot(query, by_id[hit.id])
        head = set(sorted(query, key=lambda t: (-query[t], t))[:3])
        candidates = [(d, v) for d, v in docs if head & set(v)]
        expected = sorted((-lucene_dot(query, v), d) for d, v in candidates)[:10]
        assert [(h.id, h.score) for h in hits] == [(d, -s) for s, d in expected]
        assert len(exact.search_vector(query, k=10)) == 10
    # a long query: the rescore keeps its 8 heaviest terms, and a hit's score is its exact score on them
    short_tail = LexSearch(os_client, "lexlip-it-fast", fast=FastMode(terms=3, window=len(docs), rescore_terms=8))
    for _, query in zipf_vectors(5, (20, 30), vocab_size=400, big_fraction=0.0, seed=13, prefix="q"):
        heaviest = dict(sorted(query.items(), key=lambda t: (-t[1], t[0]))[:8])
        hits = short_tail.search_vector(query, k=10)
        assert hits and all(h.query == heaviest for h in hits)
        assert all(h.score == lucene_dot(heaviest, by_id[h.id]) for h in hits)
        assert sum(c.score for c in short_tail.explain(hits[0])) == pytest.approx(hits[0].score, rel=1e-6)


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_documents_of_another_model_are_never_returned(
    engine: str, os_client: OpenSearch, es_client: Elasticsearch
) -> None:
    """OpenSearch's constant_keyword refuses another model's documents at write time; Elasticsearch (a keyword on
    our node) takes them, and every search filters them out."""
    client: Any = os_client if engine == "opensearch" else es_client
    field_type = "rank_features" if engine == "opensearch" else "sparse_vector"
    docs = _docs(50)
    _fill(client, "lexlip-it-mixed", LexiconLayout("model-a", top_k_image=None, field_type=field_type), docs)
    other = LexiconLayout("model-b", top_k_image=None, field_type=field_type)
    report = BulkWriter(client, "lexlip-it-mixed", other, refresh="wait_for").write(
        LexiconDocument(f"b-{d}", image=v) for d, v in docs
    )
    if engine == "opensearch":
        assert report.indexed == 0 and len(report.errors) == len(docs)
        assert all("lexlip_model" in e.reason and e.status == 400 for e in report.errors), report.errors[:1]
    else:
        assert report.ok and report.indexed == len(docs)
    hits = LexSearch(client, "lexlip-it-mixed").search_vector(docs[0][1], k=100)
    assert hits and not any(h.id.startswith("b-") for h in hits)
    assert all(h.source["lexlip_model"] == "model-a" for h in hits)


def test_explain_uses_the_engine_when_lexicons_are_not_in_source(os_client: OpenSearch) -> None:
    docs = _docs(100)
    layout = LexiconLayout("model-a", top_k_image=None, exclude_lexicons_from_source=True)
    _fill(os_client, "lexlip-it-lean", layout, docs)
    search = LexSearch(os_client, "lexlip-it-lean")
    hits = search.search_vector(docs[5][1], k=5)
    assert hits and "image_lexicon" not in hits[0].source and hits[0].source["shop"] in ("eu", "us")
    by_id = dict(docs)
    for hit in hits:
        contributions = search.explain(hit)
        assert sum(c.score for c in contributions) == pytest.approx(hit.score, rel=1e-6)
        for c in contributions:
            assert c.score == pytest.approx(lucene_dot({c.token: c.query_weight}, {c.token: by_id[hit.id][c.token]}))
    token = max(docs[5][1], key=docs[5][1].__getitem__)  # one term: Lucene explains the clause itself, not a sum
    (hit,) = search.search_vector({token: 3}, k=1)
    (only,) = search.explain(hit)
    assert only.token == token and only.score == pytest.approx(hit.score, rel=1e-6)


def test_query_terms_stay_under_the_clause_limit(os_client: OpenSearch) -> None:
    docs = _docs(50)
    _fill(os_client, "lexlip-it-clauses", LexiconLayout("model-a", top_k_image=None), docs)
    search = LexSearch(os_client, "lexlip-it-clauses")
    limit = search.backend().q.max_terms
    assert limit is not None and 0 < limit < 100_000
    huge = {f"t{i}": 1 for i in range(limit + 500)} | {"w0": 1000}
    assert search.search_vector(huge, k=3)  # would be refused by the engine with too_many_clauses otherwise


def test_reencoding_swaps_the_alias_atomically(os_client: OpenSearch) -> None:
    for name in os_client.indices.get(index="gallery-*", allow_no_indices=True, ignore_unavailable=True):
        os_client.indices.delete(index=name)
    first = create_versioned_index(os_client, "gallery", LexiconLayout("model-a"), IndexOptions(replicas=0))
    swap_alias(os_client, "gallery", first)
    assert alias_targets(os_client, "gallery") == [first]
    second = create_versioned_index(os_client, "gallery", LexiconLayout("model-b"), IndexOptions(replicas=0))
    assert second == "gallery-model-b-1"
    assert swap_alias(os_client, "gallery", second, delete_old=True) == [first]
    assert alias_targets(os_client, "gallery") == [second]
    assert read_layout(os_client, "gallery").model_id == "model-b"
    assert not os_client.indices.exists(index=first)
    with pytest.raises(MappingError, match="not an alias"):
        create_versioned_index(os_client, second, LexiconLayout("model-c"))


def test_index_template_gives_new_indices_the_layout(os_client: OpenSearch) -> None:
    layout = LexiconLayout("model-t", top_k_image=64)
    put_template(os_client, "lexlip-it-template", ["lexlip-tpl-*"], layout, IndexOptions(replicas=0))
    _fresh(os_client, "lexlip-tpl-1")
    os_client.indices.create(index="lexlip-tpl-1")
    assert read_layout(os_client, "lexlip-tpl-1") == layout


def test_unknown_index_and_a_down_cluster_are_clear_errors(os_client: OpenSearch) -> None:
    with pytest.raises(IndexNotFoundError, match="'no-such-index' does not exist"):
        LexSearch(os_client, "no-such-index").search_vector({"a": 1})
    down = OpenSearch("http://127.0.0.1:9", timeout=2, max_retries=0)
    with pytest.raises(EngineUnavailableError, match="cannot be reached"):
        LexSearch(down, "images").search_vector({"a": 1})


def test_async_search_matches_sync(opensearch_url: str, os_client: OpenSearch) -> None:
    from opensearchpy import AsyncOpenSearch

    docs = _docs(100)
    _fill(os_client, "lexlip-it-async", LexiconLayout("model-a", top_k_image=None), docs)
    query = docs[7][1]
    sync_hits = LexSearch(os_client, "lexlip-it-async").search_vector(query, k=10)

    async def run() -> tuple[list[Any], list[Any]]:
        client = AsyncOpenSearch(opensearch_url, timeout=60)
        try:
            search = AsyncLexSearch(client, "lexlip-it-async")
            hits = await search.search_vector(query, k=10)
            return hits, await search.explain(hits[0])
        finally:
            await client.close()

    hits, contributions = asyncio.run(run())
    assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in sync_hits]
    assert sum(c.score for c in contributions) == pytest.approx(hits[0].score, rel=1e-6)


def _pages(search: LexSearch, query: dict[str, int], size: int, pages: int) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    after = None
    for _ in range(pages):
        page = search.search_vector(query, k=size, after=after)
        seen.extend((h.id, h.score) for h in page)
        after = page[-1]
    return seen


def test_pages_after_the_last_hit_add_up_to_one_long_list_on_both_engines(
    os_client: OpenSearch, es_client: Elasticsearch
) -> None:
    docs = _docs(300)
    for client, index, field_type in (
        (os_client, "lexlip-it-pages-os", "rank_features"),
        (es_client, "lexlip-it-pages-es", "sparse_vector"),
    ):
        _fill(client, index, LexiconLayout("model-a", top_k_image=None, field_type=field_type), docs)  # type: ignore[arg-type]
        search = LexSearch(client, index)
        query = docs[5][1]
        whole = [(h.id, h.score) for h in search.search_vector(query, k=40)]
        assert len(whole) == 40 and _pages(search, query, 10, 4) == whole, index
        with pytest.raises(QueryError, match="result window"):
            search.search_vector(query, k=10_001)


def test_elasticsearch_sparse_vector_write_search_explain(es_client: Elasticsearch) -> None:
    docs = _docs(200)
    layout = LexiconLayout("model-a", top_k_image=None, field_type="sparse_vector")
    _fill(es_client, "lexlip-it-es", layout, docs)
    search = LexSearch(es_client, "lexlip-it-es")
    for _, query in zipf_vectors(10, (3, 15), vocab_size=400, big_fraction=0.0, seed=11, prefix="q"):
        _check_hits(search, docs, query, k=10)
    with pytest.raises(IndexNotFoundError):
        LexSearch(es_client, "no-such-index").search_vector({"a": 1})


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lexlip_app.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "", "--index", "x"], "the query text is empty"),
        (["search", "x" * 10_000, "--index", "x"], "10,000 characters long"),
        (["search", "red\x01circle", "--index", "x"], "control character U+0001"),
        (
            ["search", "red", "--index", "x", "--url", "http://127.0.0.1:9", "--checkpoint", "/nonexistent"],
            "not a checkpoint folder",
        ),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_unknown_index_and_down_cluster_are_one_line(opensearch_url: str, tmp_path: Path) -> None:
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    checkpoint = LexLIPEncoder.from_config("tiny").save_pretrained(tmp_path / "tiny")
    for url, message in [
        (opensearch_url, "'no-such-index' does not exist"),
        ("http://127.0.0.1:9", "cannot be reached"),
    ]:
        result = _cli(
            "search", "a red circle", "--index", "no-such-index", "--url", url, "--checkpoint", str(checkpoint)
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_search_text_and_image_with_a_checkpoint(os_client: OpenSearch, tmp_path: Path) -> None:
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.sparse import SparseVector
    from trainer.data.datasets import load_pairs
    from trainer.data.shapes import generate_shapes

    pairs = load_pairs(generate_shapes(tmp_path / "shapes", 30, 0, 0, seed=4, image_size=32), "train")
    encoder = LexLIPEncoder.from_config("tiny", seed=1)
    encoder = LexLIPEncoder.from_pretrained(encoder.save_pretrained(tmp_path / "ckpt"))
    layout = LexiconLayout(encoder.model_id, top_k_image=128, top_k_text=48)
    images = encoder.encode_images([p.image for p in pairs], scale=layout.scale, top_k=layout.top_k_image)
    captions = encoder.encode_texts([p.captions[0] for p in pairs], scale=layout.scale, top_k=layout.top_k_text)
    vocab = encoder.vocab
    docs = [
        LexiconDocument(
            p.image_id, image=i.to_features(vocab, escape=False), captions=c.to_features(vocab, escape=False)
        )
        for p, i, c in zip(pairs, images, captions, strict=True)
    ]
    _fresh(os_client, "lexlip-it-text")
    create_index(os_client, "lexlip-it-text", layout, IndexOptions(replicas=0))
    assert BulkWriter(os_client, "lexlip-it-text", layout, refresh="wait_for").write(docs).indexed == len(docs)

    search = LexSearch(os_client, "lexlip-it-text", text_encoder=encoder, image_encoder=encoder)
    query_vector: SparseVector = encoder.encode_texts(["a red circle"], scale=100.0, top_k=48)[0]
    query = query_vector.to_features(vocab, escape=False)
    hits = search.search_text("a   red circle", k=5)
    stored = {d.id: d.image for d in docs}
    expected = sorted((-lucene_dot(query, v), d) for d, v in stored.items() if v and dot(query, v) > 0)[:5]
    assert [(h.id, h.score) for h in hits] == [(d, -s) for s, d in expected]
    assert search.explain(hits[0])[0].token in query

    by_image = search.search_image(pairs[0].image, k=3)
    assert by_image and by_image[0].field == "caption_lexicon"

    stranger = LexLIPEncoder.from_config("tiny", seed=2)
    stranger.model_id = "tiny-someone-else"
    with pytest.raises(MappingError, match="never mix checkpoints"):
        LexSearch(os_client, "lexlip-it-text", text_encoder=stranger).search_text("a red circle")
