"""Query bodies for sparse lexicon search: `rank_feature` clauses (OpenSearch, Elasticsearch), boosted `term` clauses
for `impact` fields (OpenSearch) and Elasticsearch `sparse_vector`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lexlip_es.errors import EmptyQueryError, QueryError
from lexlip_es.features import escape_feature, escape_impact_token


def _check_weights(weights: Mapping[str, float]) -> None:
    if not weights:
        raise EmptyQueryError("the query lexicon is empty: there is nothing to search for")
    for token, weight in weights.items():
        if not weight > 0:
            raise QueryError(f"query weight for {token!r} must be positive, got {weight!r}")


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


def impact_query(field: str, weights: Mapping[str, float]) -> dict[str, Any]:
    """A bool `should` of `term` clauses boosted by the query weights; an `impact` field's scripted similarity scores
    each as boost x term frequency, so the sum is the exact dot product."""
    _check_weights(weights)
    return {
        "bool": {
            "should": [{"term": {field: {"value": escape_impact_token(t), "boost": w}}} for t, w in weights.items()]
        }
    }


def lexicon_clause(flavor: str, field_type: str, field: str, weights: Mapping[str, float]) -> dict[str, Any]:
    """The scoring clause for one lexicon field: rank_feature for `rank_features`, term clauses for `impact`,
    sparse_vector for `sparse_vector`."""
    if field_type == "impact":
        return impact_query(field, weights)
    if field_type == "sparse_vector":
        if flavor != "elasticsearch":
            raise QueryError("sparse_vector fields are an Elasticsearch feature; OpenSearch indices use rank_features")
        return sparse_vector_query(field, weights)
    return rank_feature_query(field, weights)


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return k


def search_body(
    clause: Mapping[str, Any],
    k: int,
    *,
    filters: Sequence[Mapping[str, Any]] = (),
    min_score: float | None = None,
    source: bool | Sequence[str] | Mapping[str, Any] = True,
    track_total_hits: bool | int = False,
    tie_break_field: str | None = None,
) -> dict[str, Any]:
    """A `_search` body: the lexicon clause must match (scores), `filters` only restrict (no score).

    With `tie_break_field`, equal scores are ordered by that keyword field, so every engine returns the same top k.
    """
    check_k(k)
    if "bool" in clause and not filters:
        query: dict[str, Any] = dict(clause)
    else:
        query = {"bool": {"must": [dict(clause)]}}
        if filters:
            query["bool"]["filter"] = [dict(f) for f in filters]
    body: dict[str, Any] = {"size": k, "query": query, "track_total_hits": track_total_hits, "_source": source}
    if min_score is not None:
        body["min_score"] = min_score
    if tie_break_field:
        body["sort"] = [{"_score": {"order": "desc"}}, {tie_break_field: {"order": "asc"}}]
        body["track_scores"] = True
    return body
