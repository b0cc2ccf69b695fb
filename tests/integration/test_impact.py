"""The `impact` field type on a real OpenSearch node: exact integer dot products, weights above 511 included."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch

from lexlip_es.backends.engine import FastMode
from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.features import LUCENE_EXACT_LIMIT, dot
from lexlip_es.indices import create_index
from lexlip_es.mapping import IndexOptions, LexiconLayout
from lexlip_es.parity import zipf_vectors
from lexlip_es.search import LexSearch


@pytest.mark.parametrize("exclude", [False, True], ids=["lexicons-in-source", "lexicons-excluded"])
def test_impact_scores_are_exact_dot_products_and_explain_sums_to_them(opensearch_url: str, exclude: bool) -> None:
    client = OpenSearch(opensearch_url, timeout=60)
    index = f"lexlip-it-impact-{int(exclude)}"
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    docs = zipf_vectors(400, (10, 60), vocab_size=300, seed=11)
    for n, (_, vector) in enumerate(docs[::4]):  # weights Lucene's FeatureField would truncate
        vector[max(vector, key=vector.__getitem__)] = 513 + 7 * n
    assert any(w >= LUCENE_EXACT_LIMIT for _, v in docs for w in v.values())
    layout = LexiconLayout("m1", top_k_image=None, field_type="impact", exclude_lexicons_from_source=exclude)
    create_index(client, index, layout, IndexOptions(replicas=0))
    report = BulkWriter(client, index, layout).write(LexiconDocument(i, image=v) for i, v in docs)
    assert not report.errors
    client.indices.refresh(index=index)
    by_id = dict(docs)
    search = LexSearch(client, index)
    fast = LexSearch(client, index, fast=FastMode(terms=3, window=len(docs), rescore_terms=None))
    big = 0
    for _, query in zipf_vectors(30, (5, 25), vocab_size=300, big_fraction=0.0, seed=12, prefix="q"):
        hits = search.search_vector(query, 10)
        exact = sorted(((dot(query, v), i) for i, v in docs), key=lambda t: (-t[0], t[1]))[:10]
        assert [(h.score, h.id) for h in hits] == [(float(s), i) for s, i in exact if s > 0]
        for hit in hits[:3]:
            parts = search.explain(hit)
            assert sum(c.score for c in parts) == pytest.approx(hit.score, rel=1e-9)
            assert all(c.engine_weight == by_id[hit.id][c.token] for c in parts)
            big += any(c.engine_weight >= LUCENE_EXACT_LIMIT for c in parts)
        # fast mode: candidates only from the 3 heaviest terms, but each one with its exact full score
        assert all(h.score == dot(query, by_id[h.id]) for h in fast.search_vector(query, 10))
    assert big > 0, "no explained hit matched a weight above 511: the test would not show exactness"
    token = max(docs[0][1], key=docs[0][1].__getitem__)
    (hit,) = search.search_vector({token: 2}, 1)
    (only,) = search.explain(hit)  # one term: Lucene explains the term query itself, not a sum
    assert only.token == token and only.score == hit.score == 2 * max(v.get(token, 0) for _, v in docs)
    client.indices.delete(index=index)
