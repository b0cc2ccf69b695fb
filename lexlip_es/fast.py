"""Fast mode: which query terms retrieve candidates (the head) and which only rescore them (the tail).

Lucene's cost for a disjunction is the postings it walks. A query's heaviest terms are usually its rarest words
("rocket", "laos"), but the grounded lexicons also carry category words that half of all images hold ("body",
"people", "skin", "tone"): with one of them in the head, the engine walks half the index for a term that cannot
tell the candidates apart. Given each token's share of documents (`QueryWeights.shares()`: the checkpoint's
training images), the head is the heaviest terms among the rare ones; a query with no rare term is searched
exactly (a vocabulary of a few common words gains nothing from a head and loses recall to one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from lexlip_es.errors import QueryError
from lexlip_es.query_weights import QueryWeights


def top_terms(vector: Mapping[str, float], k: int | None) -> dict[str, float]:
    """The k largest query weights (ties to the smaller token), so that a query stays under the clause limit."""
    if k is None or len(vector) <= k:
        return dict(vector)
    ranked = sorted(vector.items(), key=lambda item: (-item[1], item[0]))[:k]
    return dict(ranked)


@dataclass(frozen=True)
class FastMode:
    """Two-phase search in one request: the head terms retrieve candidates, and a `rescore` over the best `window`
    of them adds the tail: the query's other terms among its `rescore_terms` heaviest. Documents that match none
    of the head terms are never candidates: that is the recall this mode trades. A hit's score is its exact score
    on the terms that scored (`scored`; with `rescore_terms=None`, all of them: its exact full score).

    Args:
        terms: head size: the query's `terms` heaviest terms (among the rare ones, when `shares` are known).
        window: candidates rescored with the tail terms (at least k).
        max_share: with `shares`, a term held by more than this share of documents stays out of the head.
        rescore_terms: the tail is the query's `rescore_terms` heaviest terms not in the head (more than `terms`);
            lighter terms are dropped. None rescores with every term.
        shares: token -> share of image lexicons holding it (`QueryWeights.shares()`); `LexSearch` fills it from
            its text encoder's checkpoint. Without it the head is chosen by weight alone, on either field.

    Defaults from benchmarks/results/mosaics-1000000.md (2026-12-05, a million documents with the emoji recipe's
    vocabulary, 25 terms a query): 4:100 with shares <= 0.1 walks 0.10 postings per document a query (the 4
    heaviest: 0.28, all terms: 3.77). The rescore (a clause per tail term, over the window) was half of a fast
    query with the whole tail (21 terms), and the query's lightest terms hardly move a candidate. With the
    12 heaviest: 291 queries/s on `rank_features` (20.3x a 512-d flat scan; the whole tail 229; 251 and 17.6x in
    the run before) and R@10 0.818 against exact mode's 0.794 (whole tail 0.824, the 8 heaviest 0.822; 6 fall to
    0.786 in a scratch run).
    """

    terms: int = 4
    window: int = 100
    max_share: float = 0.1
    rescore_terms: int | None = 12
    shares: Mapping[str, float] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.terms < 1 or self.window < 1:
            raise QueryError(f"fast mode needs terms >= 1 and window >= 1, got {self.terms} and {self.window}")
        if not 0.0 < self.max_share <= 1.0:
            raise QueryError(f"fast mode's max_share must be in (0, 1], got {self.max_share}")
        if self.rescore_terms is not None and self.rescore_terms <= self.terms:
            raise QueryError(
                f"fast mode's rescore_terms must be more than its head's {self.terms} terms (or None for all), "
                f"got {self.rescore_terms}"
            )

    def with_shares(self, shares: Mapping[str, float] | None) -> FastMode:
        """This mode with document shares (kept when it already has its own)."""
        return self if self.shares is not None or shares is None else replace(self, shares=shares)

    def head(self, weights: Mapping[str, float], image_field: bool = True) -> dict[str, float]:
        """The terms that retrieve; all of `weights` means exact search. The shares describe image lexicons: with
        them, a search of the caption lexicons (an image query) is exact rather than guessed."""
        if len(weights) <= self.terms:
            return dict(weights)
        if self.shares is None:
            return top_terms(weights, self.terms)
        if not image_field:
            return dict(weights)
        rare = {t: w for t, w in weights.items() if self.shares.get(t, 0.0) <= self.max_share}
        return top_terms(rare, self.terms) if rare else dict(weights)

    def scored(self, weights: Mapping[str, float], head: Mapping[str, float]) -> dict[str, float]:
        """The terms a hit's score sums: the head and the `rescore_terms` heaviest (a head term can be lighter)."""
        return {**top_terms(weights, self.rescore_terms), **head}

    def split(
        self, weights: Mapping[str, float], image_field: bool = True
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(head, tail): the head retrieves, the tail rescores the window; an empty tail is an exact search."""
        head = self.head(weights, image_field)
        if len(head) == len(weights):
            return head, {}
        return head, {t: w for t, w in self.scored(weights, head).items() if t not in head}


def fast_mode_for(encoder: object) -> FastMode | None:
    """Fast mode with the shares of this encoder's checkpoint, or None (exact mode) when it has none: a head by
    weight alone is a guess, and on the shapes lexicons it loses R@10 (0.729 against exact's 0.752 at 21,500
    images; no shapes checkpoint carries query weights)."""
    weights = getattr(encoder, "query_weights", None)
    return FastMode(shares=weights.shares()) if isinstance(weights, QueryWeights) else None
