"""Query bodies for sparse lexicon search: OpenSearch/Elasticsearch `rank_feature` and Elasticsearch `sparse_vector`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lexlip_es.features import escape_feature


def _check_weights(weights: Mapping[str, float]) -> None:
    if not weights:
        raise ValueError("the query lexicon is empty: there is nothing to search for")
    for token, weight in weights.items():
        if not weight > 0:
            raise ValueError(f"query weight for {token!r} must be positive, got {weight!r}")


def rank_feature_query(field: str, weights: Mapping[str, float]) -> dict[str, Any]:
    """A bool `should` of linear `rank_feature` clauses whose score is the dot product with the query weights.

    `weights` maps vocabulary tokens (unescaped) to query weights; each clause's boost is the token's weight.
    """
    _check_weights(weights)
    return {
        "bool": {
            "should": [
                {"rank_feature": {"field": f"{field}.{escape_feature(t)}", "linear": {}, "boost": w}}
                for t, w in weights.items()
            ]
        }
    }


def sparse_vector_query(field: str, weights: Mapping[str, float]) -> dict[str, Any]:
    """Elasticsearch's `sparse_vector` query with token pruning off, so the score is the exact dot product."""
    _check_weights(weights)
    return {
        "sparse_vector": {
            "field": field,
            "query_vector": {escape_feature(t): w for t, w in weights.items()},
            "prune": False,
        }
    }


def escaped_document(weights: Mapping[str, float]) -> dict[str, float]:
    """A document's lexicon as the engine stores it: escaped names (escaping is injective), positive weights only."""
    for token, weight in weights.items():
        if not weight > 0:
            raise ValueError(f"document weight for {token!r} must be positive, got {weight!r}")
    return {escape_feature(t): w for t, w in weights.items()}
