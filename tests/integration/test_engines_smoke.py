"""Smoke tests against real engines: every score equals the exact integer dot product (or Lucene's 9-bit version)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from elasticsearch import helpers as es_helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as os_helpers

from ingest.app import create_app
from lexlip_es.features import LUCENE_EXACT_LIMIT, dot, escape_feature, lucene_dot, unescape_feature
from lexlip_es.local.anserini import Anserini
from lexlip_es.local.process import LocalEngine
from lexlip_es.parity import SmokeCorpus, smoke_corpus
from lexlip_es.query import escaped_document, rank_feature_query, sparse_vector_query
from lexlip_es.settings import Settings

FIELD = "lexicon"


@pytest.fixture(scope="module")
def corpus() -> SmokeCorpus:
    c = smoke_corpus()
    big = sum(w >= LUCENE_EXACT_LIMIT for v in c.documents.values() for w in v.values())
    dotted = sum("." in t for v in c.documents.values() for t in v)
    assert len(c.documents) == 20 and big >= 3 and dotted >= 5, "the corpus must exercise big weights and dots"
    return c


def _assert_scores(corpus: SmokeCorpus, qid: str, hits: list[dict[str, Any]]) -> None:
    """Every matching document comes back, each with the exact score (9-bit truncated where a weight is >= 512)."""
    query = corpus.queries[qid]
    expected_ids = {d for d, vec in corpus.documents.items() if dot(query, vec) > 0}
    assert {h["_id"] for h in hits} == expected_ids, f"query {qid} matched the wrong documents"
    for hit in hits:
        doc = corpus.documents[hit["_id"]]
        exact, truncated = dot(query, doc), lucene_dot(query, doc)
        if corpus.has_big_weight(hit["_id"], qid):
            assert hit["_score"] == pytest.approx(truncated, rel=1e-6), (qid, hit["_id"])
            assert truncated <= exact and exact - truncated <= exact / 256  # at most 1/256 lost per weight
        else:
            assert hit["_score"] == exact, (qid, hit["_id"], hit["_score"], exact)


def _actions(index: str, corpus: SmokeCorpus) -> list[dict[str, Any]]:
    return [{"_index": index, "_id": d, "_source": {FIELD: escaped_document(v)}} for d, v in corpus.documents.items()]


def _search_all(client: Any, index: str, query: dict[str, Any], size: int) -> list[dict[str, Any]]:
    return list(client.search(index=index, query=query, size=size, source=False)["hits"]["hits"])


def test_opensearch_rank_features_scores_are_exact_dot_products(opensearch_url: str, corpus: SmokeCorpus) -> None:
    client = OpenSearch(opensearch_url, timeout=60)
    index = "smoke-rank-features"
    client.indices.create(index=index, body={"mappings": {"properties": {FIELD: {"type": "rank_features"}}}})
    try:
        actions = _actions(index, corpus)
        ok, errors = os_helpers.bulk(client, actions, refresh="wait_for")
        assert ok == 20 and not errors
        stored = client.get(index=index, id="doc-03")["_source"][FIELD]
        assert {unescape_feature(k): v for k, v in stored.items()} == corpus.documents["doc-03"]
        for qid, query in corpus.queries.items():
            hits = client.search(index=index, body={"query": rank_feature_query(FIELD, query), "size": 20})
            _assert_scores(corpus, qid, hits["hits"]["hits"])
        # the unescaped dotted path is split at its last dot by OpenSearch and silently matches nothing
        raw = {"rank_feature": {"field": f"{FIELD}.u.s", "linear": {}}}
        assert client.search(index=index, body={"query": raw})["hits"]["hits"] == []
    finally:
        client.indices.delete(index=index)


def test_elasticsearch_sparse_vector_scores_are_exact_dot_products(elasticsearch_url: str, corpus: SmokeCorpus) -> None:
    client = Elasticsearch(elasticsearch_url, request_timeout=60)
    index = "smoke-sparse-vector"
    client.indices.create(index=index, mappings={"properties": {FIELD: {"type": "sparse_vector"}}})
    try:
        actions = _actions(index, corpus)
        ok, errors = es_helpers.bulk(client, actions, refresh="wait_for")
        assert ok == 20 and not errors
        for qid, query in corpus.queries.items():
            _assert_scores(corpus, qid, _search_all(client, index, sparse_vector_query(FIELD, query), 20))
    finally:
        client.indices.delete(index=index)


def test_elasticsearch_rank_features_where_the_node_has_mapper_extras(
    elasticsearch_url: str, corpus: SmokeCorpus
) -> None:
    client = Elasticsearch(elasticsearch_url, request_timeout=60)
    modules = {m["name"] for node in client.nodes.info(metric="plugins")["nodes"].values() for m in node["modules"]}
    index = "smoke-es-rank-features"
    body = {"properties": {FIELD: {"type": "rank_features"}}}
    if "mapper-extras" not in modules:
        # the integ-test zip lacks the module: the mapping must be refused, naming the type
        with pytest.raises(Exception, match="rank_features"):
            client.indices.create(index=index, mappings=body)
        return
    client.indices.create(index=index, mappings=body)
    try:
        actions = _actions(index, corpus)
        es_helpers.bulk(client, actions, refresh="wait_for")
        for qid, query in corpus.queries.items():
            _assert_scores(corpus, qid, _search_all(client, index, rank_feature_query(FIELD, query), 20))
    finally:
        client.indices.delete(index=index)


def test_anserini_impact_scores_are_exact_dot_products(anserini: Anserini, corpus: SmokeCorpus, tmp_path: Path) -> None:
    assert anserini.index(corpus.documents.items(), tmp_path / "index") == 20
    results = anserini.search(tmp_path / "index", list(corpus.queries.items()), k=20)
    assert set(results) == set(corpus.queries)
    for qid, query in corpus.queries.items():
        expected = {d: dot(query, v) for d, v in corpus.documents.items() if dot(query, v) > 0}
        got = dict(results[qid])
        assert got == {d: float(s) for d, s in expected.items()}, qid  # exact even above 511
        scores = [s for _, s in results[qid]]
        assert scores == sorted(scores, reverse=True)


def test_redis_answers_and_a_celery_worker_process_runs_a_task(
    settings: Settings, redis_url: str, celery_worker: LocalEngine
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    client.set("lexlip:smoke", "1")
    assert client.get("lexlip:smoke") == b"1"

    app = create_app(settings.with_(redis_url=redis_url))
    result = app.send_task("lexlip.health", args=["hello"]).get(timeout=60)
    assert result["echo"] == "hello"
    assert result["pid"] != os.getpid()
    # prefork: the task ran in a child of the worker process we started
    with open(f"/proc/{result['pid']}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent == celery_worker.pid


def test_two_node_opensearch_cluster_serves_two_shards_with_a_replica(opensearch_two_nodes: LocalEngine) -> None:
    client = OpenSearch(opensearch_two_nodes.url, timeout=60)
    assert client.cluster.health()["number_of_nodes"] == 2
    index = "two-shards"
    client.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 2, "number_of_replicas": 1},
            "mappings": {"properties": {FIELD: {"type": "rank_features"}}},
        },
    )
    health = client.cluster.health(index=index, wait_for_status="green", request_timeout=90)
    assert health["status"] == "green" and health["active_shards"] == 4
    shards = client.cat.shards(index=index, format="json")
    assert len(shards) == 4 and all(s["state"] == "STARTED" for s in shards)
    for shard in ("0", "1"):  # each shard's primary and replica live on different nodes
        assert len({s["node"] for s in shards if s["shard"] == shard}) == 2
    docs = [{"_index": index, "_id": str(i), "_source": {FIELD: {escape_feature("a.b"): i + 1}}} for i in range(50)]
    os_helpers.bulk(client, docs, refresh="wait_for")
    deadline = time.monotonic() + 30
    while client.count(index=index)["count"] != 50 and time.monotonic() < deadline:
        time.sleep(0.5)
    hits = client.search(index=index, body={"query": rank_feature_query(FIELD, {"a.b": 2}), "size": 3})["hits"]
    assert [h["_score"] for h in hits["hits"]] == [100.0, 98.0, 96.0]
    assert hits["total"]["value"] == 50
