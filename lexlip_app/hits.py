"""What a person sees of a hit, in the terminal (`lexlip search`) and on the demo page: rank, id, score, the tokens
that matched with their contributions, and the document's own captions and image path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lexlip_es.backends.base import Contribution, SearchHit


class Explains(Protocol):
    def explain(self, hit: SearchHit) -> list[Contribution]: ...


@dataclass(frozen=True)
class HitView:
    rank: int
    id: str
    score: float
    contributions: list[Contribution]
    captions: list[str]
    image: str

    @property
    def explained(self) -> float:
        """The sum of the token contributions (equals `score` when the hit's lexicon is stored in `_source`)."""
        return sum(c.score for c in self.contributions)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return []


def hit_views(search: Explains, hits: Sequence[SearchHit]) -> list[HitView]:
    views = []
    for rank, hit in enumerate(hits, 1):
        source: Mapping[str, Any] = hit.source or {}
        views.append(
            HitView(
                rank=rank,
                id=hit.id,
                score=hit.score,
                contributions=search.explain(hit),
                captions=_strings(source.get("captions")),
                image=str(source.get("image") or ""),
            )
        )
    return views


def label(c: Contribution) -> str:
    """A lexicon token as itself; a word BM25 matched in a hybrid search as `word@field`."""
    return c.token if c.part == "lexicon" else f"{c.token}@{c.part}"


def table(views: Sequence[HitView], tokens: int = 5) -> list[str]:
    """The terminal table `lexlip search` prints."""
    lines = [f"{'rank':>4}  {'score':>10}  {'id':24}  top tokens (query x document = contribution; word@field: BM25)"]
    for v in views:
        shown = ", ".join(f"{label(c)} {c.score:g}" for c in v.contributions[:tokens])
        lines.append(f"{v.rank:>4}  {v.score:>10.1f}  {v.id[:24]:24}  {shown}")
    return lines
