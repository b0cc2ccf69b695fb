"""OpenSearch and Elasticsearch as search backends, through the caller's own client (sync or async).

`EngineQueries` holds everything that needs no I/O (request bodies, response parsing, contributions) so that the
sync and async backends only differ in `await`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lexlip_es.backends.base import Contribution, SearchHit, VectorBackend, by_score, check_vector, sort_hits
from lexlip_es.clients import engine_errors, flavor_of
from lexlip_es.errors import QueryError
from lexlip_es.fast import FastMode, top_terms
from lexlip_es.features import (
    escape_feature,
    escape_impact_token,
    lucene_feature_value,
    stored_lexicon,
)
from lexlip_es.hybrid import combine, text_contributions
from lexlip_es.mapping import ID_FIELD, IMAGE_FIELD, LEXICON_FIELDS, MODEL_FIELD, Flavor, LexiconLayout
from lexlip_es.query import check_k, lexicon_clause, search_body

_FEATURE_IN_EXPLANATION = re.compile(r"for the (\S+) feature")
_TERM_IN_EXPLANATION = re.compile(r"^weight\(\S+?:(\S+) in \d+\)")


def _clause_name(explanation: Mapping[str, Any]) -> str | None:
    """The feature (or impact term) an explanation node scores, None for any other node."""
    description = str(explanation.get("description", ""))
    match = _FEATURE_IN_EXPLANATION.search(description) or _TERM_IN_EXPLANATION.search(description)
    return match.group(1) if match else None


MAX_RESULT_WINDOW = 10_000
"""OpenSearch's and Elasticsearch's default `index.max_result_window`: from + size beyond it is refused."""


@dataclass
class EngineQueries:
    flavor: Flavor
    index: str
    layout: LexiconLayout
    max_terms: int | None = None
    tie_break: bool = True
    source: bool | Sequence[str] | Mapping[str, Any] = True
    fast: FastMode | None = None

    def body(
        self,
        vector: Mapping[str, float],
        k: int,
        field: str,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        after: SearchHit | None = None,
        text: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The `_search` body; `after` (the last hit of the previous page) asks for the page after it; `text` is a
        hybrid search's BM25 clause, added to the lexicon's score (`vector` may then be empty). With the tie-break,
        the engine sorts by [score, id] in one request: a probe by score alone costs as much, and its ties often
        needed a second request (README, "Fast mode": 29% of the shapes queries)."""
        if check_k(k) > MAX_RESULT_WINDOW:
            raise QueryError(
                f"k={k:,} is beyond the engine's result window of {MAX_RESULT_WINDOW:,} hits "
                "(index.max_result_window): ask for pages, passing the last hit as after="
            )
        if field not in LEXICON_FIELDS:
            raise QueryError(f"field must be one of {LEXICON_FIELDS}, got {field!r}")
        for f in filters:
            if not isinstance(f, Mapping):
                raise QueryError(f"filters must be query clauses (dicts), got {f!r}")
        weights = top_terms(check_vector(vector), self.max_terms) if vector or text is None else {}
        model_filter = {"term": {MODEL_FIELD: self.layout.model_id}}
        head, tail = self._split(weights, field)
        if tail:
            if after is not None:
                self._sort_of(after)
            return self._fast_body(head, tail, k, field, [model_filter, *filters], min_score, text)
        body = search_body(
            combine(self._lexicon_clause(field, weights), text),
            k,
            filters=[model_filter, *filters],
            min_score=min_score,
            source=self.source,
            tie_break_field=ID_FIELD if self.tie_break else None,
        )
        if after is not None:
            body["search_after"] = list(self._sort_of(after))
        return body

    def _split(self, weights: dict[str, float], field: str) -> tuple[dict[str, float], dict[str, float]]:
        """(head, tail) of fast mode; (weights, {}) in exact mode or where fast mode searches exactly."""
        return (weights, {}) if self.fast is None else self.fast.split(weights, image_field=field == IMAGE_FIELD)

    def _lexicon_clause(self, field: str, weights: Mapping[str, float]) -> dict[str, Any] | None:
        return lexicon_clause(self.flavor, self.layout.field_type, field, weights) if weights else None

    def _sort_of(self, after: SearchHit) -> tuple[Any, ...]:
        if self.fast is not None or not self.tie_break:
            raise QueryError("pages (after=) need exact mode with its tie-break by id: fast mode rescored the hits")
        if not isinstance(after, SearchHit) or len(after.sort) != 2:
            raise QueryError("after= takes a hit this search returned (it carries the engine's sort values)")
        return after.sort

    def _fast_body(
        self,
        head: dict[str, float],
        tail: dict[str, float],
        k: int,
        field: str,
        filters: list[Mapping[str, Any]],
        min_score: float | None,
        text: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Head terms (and a hybrid search's BM25 clause) score, tail terms rescore; `rescore` cannot be combined
        with `sort`, so ties are ordered by id after the engine answers. `min_score` applies to the first score."""
        assert self.fast is not None
        body = search_body(
            combine(self._lexicon_clause(field, head), text),
            k,
            filters=filters,
            min_score=min_score,
            source=self.source,
        )
        body["rescore"] = {
            "window_size": max(self.fast.window, k),
            "query": {
                "rescore_query": lexicon_clause(self.flavor, self.layout.field_type, field, tail),
                "query_weight": 1.0,
                "rescore_query_weight": 1.0,
                "score_mode": "total",
            },
        }
        return body

    def hits(
        self,
        response: Mapping[str, Any],
        field: str,
        vector: Mapping[str, float],
        text: Mapping[str, Any] | None = None,
        k: int | None = None,
    ) -> list[SearchHit]:
        """The answer's hits, score descending then id ascending, at most `k`. Engine-sorted answers come in that
        order with their sort values; others are ordered here, and with the tie-break get (score, id) as theirs."""
        query = top_terms(dict(vector), self.max_terms)
        head, tail = self._split(query, field)
        query = {**head, **tail}  # the terms that scored: fast mode's rescore drops the lightest
        hits = [
            SearchHit(
                id=str(h["_id"]),
                score=float(h["_score"]),
                source=h.get("_source") or {},
                index=str(h.get("_index", self.index)),
                field=field,
                query=query,
                sort=tuple(h.get("sort") or ()),
                text_query=text,
            )
            for h in response["hits"]["hits"]
        ]
        if hits and hits[0].sort:
            return hits
        if self.tie_break:
            hits = [replace(h, sort=(h.score, h.id)) for h in hits]
        return sort_hits(hits)[:k]

    def request(self, body: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        """Keyword arguments for a client call: opensearch-py takes `body=`, the elasticsearch client the fields."""
        return {**params, "body": dict(body)} if self.flavor == "opensearch" else {**params, **body}

    def search_request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request(body, index=self.index)

    def explain_request(self, hit: SearchHit) -> dict[str, Any]:
        return self.request(self.explain_body(hit), index=hit.index, id=hit.id)

    def text_explain_request(self, hit: SearchHit) -> dict[str, Any]:
        """`_explain` of a hybrid hit's BM25 clause alone: its matched words."""
        return self.request({"query": dict(hit.text_query or {})}, index=hit.index, id=hit.id)

    @staticmethod
    def text_boost(hit: SearchHit) -> float:
        return float((hit.text_query or {}).get("multi_match", {}).get("boost", 1.0))

    def msearch_lines(self, bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for body in bodies:
            lines.extend([{"index": self.index}, dict(body)])
        return lines

    @staticmethod
    def from_source(hit: SearchHit) -> list[Contribution] | None:
        if not hit.query:
            return []
        stored = hit.source.get(hit.field)
        if not isinstance(stored, str | Mapping):
            return None
        doc = stored_lexicon(stored)
        # an `impact` field's engine scores the stored integers exactly; `rank_features` keeps 9 bits of each
        engine_weight = (lambda w: w) if isinstance(stored, str) else lucene_feature_value
        out = [
            Contribution(token, float(q), doc[token], engine_weight(doc[token]))
            for token, q in hit.query.items()
            if token in doc
        ]
        return by_score(out)

    def explain_body(self, hit: SearchHit) -> dict[str, Any]:
        return {"query": lexicon_clause(self.flavor, self.layout.field_type, hit.field, dict(hit.query))}

    @staticmethod
    def from_explanation(hit: SearchHit, explanation: Mapping[str, Any]) -> list[Contribution]:
        """Per-token scores from the engine's `_explain`: one detail per matched clause, named by its feature."""
        by_name = {escape_feature(t): t for t in hit.query} | {escape_impact_token(t): t for t in hit.query}
        # Lucene rewrites a one-clause bool query to the clause itself: then the top level is the one feature
        details = [explanation] if _clause_name(explanation) else (explanation.get("details") or [])
        out = []
        for detail in details:
            name = _clause_name(detail)
            if name is None or name not in by_name:
                continue
            token = by_name[name]
            q = float(hit.query[token])
            engine_weight = float(detail["value"]) / q
            out.append(Contribution(token, q, engine_weight, engine_weight))
        return by_score(out)


class EngineBackend(VectorBackend):
    """Searches one index (or alias) of an OpenSearch / Elasticsearch cluster with a sync client."""

    def __init__(self, client: Any, queries: EngineQueries) -> None:
        self.client = client
        self.q = queries
        self.name = queries.flavor

    @classmethod
    def create(cls, client: Any, index: str, layout: LexiconLayout, **options: Any) -> EngineBackend:
        return cls(client, EngineQueries(flavor_of(client), index, layout, **options))

    def search(
        self,
        vector: Mapping[str, float],
        k: int,
        field: str,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        after: SearchHit | None = None,
        text: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        body = self.q.body(vector, k, field, filters, min_score, after, text)
        with engine_errors(f"searching {self.q.index!r}", self.q.index):
            response = self.client.search(**self.q.search_request(body))
        return self.q.hits(response, field, vector, text, k)

    def search_many(
        self, queries: Sequence[Mapping[str, float]], k: int, field: str = "image_lexicon"
    ) -> list[list[SearchHit]]:
        answers = self._msearch([self.q.body(v, k, field) for v in queries])
        return [self.q.hits(a, field, v, k=k) for v, a in zip(queries, answers, strict=True)]

    def _msearch(self, bodies: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        with engine_errors(f"searching {self.q.index!r}", self.q.index):
            if self.q.flavor == "opensearch":
                response = self.client.msearch(body=self.q.msearch_lines(bodies))
            else:
                response = self.client.msearch(searches=self.q.msearch_lines(bodies))
        for item in response["responses"]:
            if "error" in item:
                raise QueryError(f"searching {self.q.index!r}: {item['error']}")
        return list(response["responses"])

    def contributions(self, hit: SearchHit) -> list[Contribution]:
        found = self.q.from_source(hit)
        with engine_errors(f"explaining {hit.id!r} in {hit.index!r}", hit.index):
            if found is None:
                response = self.client.explain(**self.q.explain_request(hit))
                found = self.q.from_explanation(hit, response["explanation"])
            if hit.text_query is not None:
                response = self.client.explain(**self.q.text_explain_request(hit))
                found = by_score(found + text_contributions(response["explanation"], self.q.text_boost(hit)))
        return found


class AsyncEngineBackend:
    """The same searches through AsyncOpenSearch or AsyncElasticsearch."""

    def __init__(self, client: Any, queries: EngineQueries) -> None:
        self.client = client
        self.q = queries
        self.name = queries.flavor

    async def search(
        self,
        vector: Mapping[str, float],
        k: int,
        field: str,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        after: SearchHit | None = None,
        text: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        body = self.q.body(vector, k, field, filters, min_score, after, text)
        with engine_errors(f"searching {self.q.index!r}", self.q.index):
            response = await self.client.search(**self.q.search_request(body))
        return self.q.hits(response, field, vector, text, k)

    async def contributions(self, hit: SearchHit) -> list[Contribution]:
        found = self.q.from_source(hit)
        with engine_errors(f"explaining {hit.id!r} in {hit.index!r}", hit.index):
            if found is None:
                response = await self.client.explain(**self.q.explain_request(hit))
                found = self.q.from_explanation(hit, response["explanation"])
            if hit.text_query is not None:
                response = await self.client.explain(**self.q.text_explain_request(hit))
                found = by_score(found + text_contributions(response["explanation"], self.q.text_boost(hit)))
        return found
