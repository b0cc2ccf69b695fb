"""Hybrid search: the lexicon clause and a BM25 match over the document's own words, in one request.

A hit's score is `lexicon_weight x (query lexicon . image lexicon) + weight x scale^2 x BM25(text, fields)`: both
lexicons are quantized at `scale`, so dividing the score by `scale^2` reads as "the float dot product of the lexicons
plus `weight` times the BM25 score". `weight=0` is the lexicon alone; `lexicon_weight=0` is BM25 alone.

The default weight was chosen by measurement (benchmarks/hybrid.py, benchmarks/results/hybrid.md). Explanations
split a hybrid score into the lexicon's tokens and the matched words of each text field, read from the engine's own
`_explain` of the text clause, so the parts sum to the engine's score.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lexlip_es.backends.base import Contribution, by_score
from lexlip_es.errors import QueryError
from lexlip_es.mapping import LEXICON_FIELDS

DEFAULT_TEXT_FIELDS = ("captions",)
DEFAULT_HYBRID_WEIGHT = 1.0
_FIELD = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]*(\^\d+(\.\d+)?)?$")
_WEIGHT_NODE = re.compile(r"^weight\(([^:\s]+):(.+?) in \d+\)")


@dataclass(frozen=True)
class Hybrid:
    """Add a BM25 `multi_match` of the query text over the documents' own text fields to the lexicon clause.

    Args:
        weight: what one BM25 point is worth in units of the lexicons' float dot product (0: the lexicon alone).
        fields: text fields of your documents (`captions` is written by ingest; add titles or your metadata fields,
            optionally boosted as `"title^2"`).
        lexicon_weight: the lexicon clause's share (0: BM25 alone, for comparison).

    Raises:
        QueryError: a negative weight, both weights 0, no fields, or a field that is not a text field name.
    """

    weight: float = DEFAULT_HYBRID_WEIGHT
    fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    lexicon_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("weight", "lexicon_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise QueryError(f"hybrid {name} must be a finite number >= 0, got {value!r}")
        if self.weight == 0 and self.lexicon_weight == 0:
            raise QueryError("hybrid search needs weight > 0 or lexicon_weight > 0: both are 0")
        if isinstance(self.fields, str) or not self.fields:
            raise QueryError(f"hybrid fields must be a non-empty sequence of field names, got {self.fields!r}")
        object.__setattr__(self, "fields", tuple(self.fields))
        for f in self.fields:
            if not isinstance(f, str) or not _FIELD.match(f):
                raise QueryError(f"{f!r} is not a field name (letters, digits, _ . - @, an optional ^boost)")
            if f.split("^")[0] in LEXICON_FIELDS:
                raise QueryError(f"{f!r} is a lexicon field: hybrid search matches words in text fields")

    def text_boost(self, scale: float) -> float:
        """The BM25 clause's boost: `weight x scale^2`, so that it adds to the integer lexicon scores."""
        return self.weight * scale * scale

    def lexicon(self, vector: Mapping[str, float]) -> dict[str, float]:
        """The query lexicon scaled by `lexicon_weight` (empty when it is 0: no lexicon clause)."""
        if self.lexicon_weight == 0:
            return {}
        return {t: w * self.lexicon_weight for t, w in vector.items()}

    def text_clause(self, text: str, scale: float) -> dict[str, Any] | None:
        """The BM25 `multi_match` clause (None when `weight` is 0)."""
        if self.weight == 0:
            return None
        return {
            "multi_match": {
                "query": text,
                "fields": list(self.fields),
                "type": "best_fields",
                "boost": self.text_boost(scale),
            }
        }


def combine(lexicon: Mapping[str, Any] | None, text: Mapping[str, Any] | None) -> dict[str, Any]:
    """One scoring clause: the lexicon clause, the text clause, or a `bool` whose score is their sum (a document
    matching either is a hit)."""
    parts = [dict(c) for c in (lexicon, text) if c is not None]
    if not parts:
        raise QueryError("a hybrid query needs a lexicon clause or a text clause")
    return parts[0] if len(parts) == 1 else {"bool": {"should": parts}}


def _matched_words(node: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """(field, word, score) for each matched term under an explanation node; of a `max of` node (best_fields over
    several fields) only the best child counts, as in the score."""
    description = str(node.get("description", ""))
    match = _WEIGHT_NODE.match(description)
    if match:
        return [(match.group(1), match.group(2), float(node.get("value", 0.0)))]
    children = [c for c in node.get("details") or [] if float(c.get("value", 0.0)) > 0]
    if description.startswith("max ") and children:
        children = [max(children, key=lambda c: float(c["value"]))]
    return [word for child in children for word in _matched_words(child)]


def text_contributions(explanation: Mapping[str, Any], boost: float) -> list[Contribution]:
    """The BM25 part of a hybrid score, word by word: `query_weight` is the clause's boost, `engine_weight` the
    word's BM25 score, `part` the field it matched in. Largest first."""
    if not explanation.get("matched", True):
        return []
    out = [
        Contribution(word, boost, score / boost, score / boost, part=field)
        for field, word, score in _matched_words(explanation)
    ]
    return by_score(out)


def parse_fields(value: str | Sequence[str]) -> tuple[str, ...]:
    """Field names from a comma-separated string (the CLI, settings) or a sequence."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(f.strip() for f in items if f.strip())
