"""What every search backend gives back: hits with scores, and each hit's score split token by token."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lexlip_es.errors import QueryError


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    index: str = ""
    field: str = ""
    query: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """The query lexicon that produced the hit ({token: weight}, tokens unescaped)."""
    sort: tuple[Any, ...] = ()
    """The engine's sort values (score, id) in exact mode: pass the hit as `after=` for the next page."""
    text_query: Mapping[str, Any] | None = None
    """The BM25 clause of a hybrid search (`lexlip_es.hybrid`), None for the lexicon alone."""


@dataclass(frozen=True)
class Contribution:
    """One matched token: score = query_weight * engine_weight, where engine_weight is the document weight as the
    engine scores it (Lucene keeps 9 significant bits; Anserini and the exact scorer keep the integer). In a hybrid
    search the words BM25 matched are contributions too: `part` names the text field, `query_weight` is the BM25
    clause's boost and `engine_weight` the word's BM25 score."""

    token: str
    query_weight: float
    document_weight: float
    engine_weight: float
    part: str = "lexicon"

    @property
    def score(self) -> float:
        return self.query_weight * self.engine_weight


def by_score(contributions: Sequence[Contribution]) -> list[Contribution]:
    """Contributions largest first (ties: lexicon tokens before text words, then by token)."""
    return sorted(contributions, key=lambda c: (-c.score, c.part != "lexicon", c.part, c.token))


def sort_hits(hits: Sequence[SearchHit]) -> list[SearchHit]:
    """Score descending, then id ascending: the order every backend is compared in."""
    return sorted(hits, key=lambda h: (-h.score, h.id))


def check_vector(vector: Mapping[str, float], what: str = "query") -> dict[str, float]:
    from lexlip_es.errors import EmptyQueryError

    if not vector:
        raise EmptyQueryError(f"the {what} lexicon is empty: there is nothing to search for")
    out: dict[str, float] = {}
    for token, weight in vector.items():
        if not isinstance(token, str) or not token:
            raise QueryError(f"{what} tokens must be non-empty strings, got {token!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 or weight == float("inf"):
            raise QueryError(f"{what} weight of {token!r} must be a positive finite number, got {weight!r}")
        out[token] = weight
    return out


class VectorBackend(ABC):
    """Top-k search by a sparse query vector over one lexicon field."""

    name = "backend"

    @abstractmethod
    def search_many(
        self, queries: Sequence[Mapping[str, float]], k: int, field: str = "image_lexicon"
    ) -> list[list[SearchHit]]:
        """For each query, its top k hits ordered by score, ties by id."""

    @abstractmethod
    def contributions(self, hit: SearchHit) -> list[Contribution]:
        """The hit's score split by matched token, largest first."""
