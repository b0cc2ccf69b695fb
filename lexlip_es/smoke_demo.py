"""`lexlip smoke`: start engines, index a tiny corpus, query it, print every score beside the exact dot product.

It indexes the smoke corpus into a real OpenSearch node (`rank_features`) and into Anserini (impact index), runs each
query as a bool `should` of linear `rank_feature` clauses, and prints every hit's engine score beside the exact
integer dot product.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lexlip_es.features import LUCENE_EXACT_LIMIT, dot, lucene_dot
from lexlip_es.local.anserini import Anserini
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.query import escaped_document, rank_feature_query
from lexlip_es.settings import Settings
from lexlip_es.smoke import smoke_corpus

INDEX = "lexlip-smoke"
FIELD = "lexicon"


def run_smoke_demo(settings: Settings, echo: Callable[[str], None] = print) -> int:
    """Return the number of scores that disagree with the exact (or, above 511, Lucene-truncated) dot product."""
    from opensearchpy import OpenSearch, helpers

    corpus = smoke_corpus()
    started = None
    url = settings.opensearch_url
    if url is None:
        t0 = time.monotonic()
        echo("starting a local OpenSearch node ...")
        started = start_opensearch(settings)
        url = started.url
        echo(f"OpenSearch is up at {url} after {time.monotonic() - t0:.1f} s")
    try:
        client = OpenSearch(url, timeout=60)
        if client.indices.exists(index=INDEX):
            client.indices.delete(index=INDEX)
        client.indices.create(index=INDEX, body={"mappings": {"properties": {FIELD: {"type": "rank_features"}}}})
        actions: list[dict[str, Any]] = [
            {"_index": INDEX, "_id": doc_id, "_source": {FIELD: escaped_document(vec)}}
            for doc_id, vec in corpus.documents.items()
        ]
        helpers.bulk(client, actions, refresh="wait_for")
        echo(f"indexed {len(actions)} documents into OpenSearch index {INDEX!r}")

        anserini = Anserini(settings)
        with tempfile.TemporaryDirectory(prefix="lexlip-smoke-") as tmp:
            anserini.index(corpus.documents.items(), Path(tmp) / "index")
            reference = anserini.search(Path(tmp) / "index", list(corpus.queries.items()), k=len(corpus.documents))
        echo(f"indexed the same documents into an Anserini impact index ({anserini.fatjar.name})")

        mismatches = 0
        for qid, query in corpus.queries.items():
            body = {"query": rank_feature_query(FIELD, query), "size": len(corpus.documents), "_source": False}
            hits = client.search(index=INDEX, body=body)["hits"]["hits"]
            anserini_scores = dict(reference[qid])
            echo(f"\nquery {qid}: {query}")
            echo(f"  {'doc':8} {'opensearch':>11} {'anserini':>9} {'exact dot':>10} {'lucene 9-bit':>12}  check")
            for hit in hits:
                doc = corpus.documents[hit["_id"]]
                exact, truncated = dot(query, doc), lucene_dot(query, doc)
                big = corpus.has_big_weight(hit["_id"], qid)
                ok = hit["_score"] == (truncated if big else exact) and anserini_scores.get(hit["_id"]) == exact
                mismatches += not ok
                note = "ok" if ok else "MISMATCH"
                if big:
                    note += f" (weight >= {LUCENE_EXACT_LIMIT})"
                echo(
                    f"  {hit['_id']:8} {hit['_score']:>11.1f} {anserini_scores.get(hit['_id'], 0.0):>9.1f} "
                    f"{exact:>10} {truncated:>12.1f}  {note}"
                )
        echo(f"\n{mismatches} mismatching scores")
        return mismatches
    finally:
        if started is not None:
            started.stop()
