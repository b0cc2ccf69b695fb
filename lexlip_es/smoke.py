"""A small seeded corpus of integer lexicon vectors that exercises what bites on the wire.

Tokens include WordPiece-style names with dots and percent signs, and some document weights exceed 511, where
Lucene's FeatureField stops being exact. The smoke demo and the engine smoke tests index it and check every score
against the exact integer dot product.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lexlip_es.features import LUCENE_EXACT_LIMIT

VOCABULARY = (
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "star",
    "top",
    "left",
    "middle",
    "small",
    "large",
    "photo",
    ".",
    "...",
    "u.s",
    "e.g",
    "%",
    "50%",
    "##ing",
    "##s",
    "café",
    "naïve",
    "[",
    "]",
    "dog",
    "cat",
)
BIG_WEIGHTS = (512, 513, 777, 1023, 1500, 4095)


@dataclass(frozen=True)
class SmokeCorpus:
    documents: dict[str, dict[str, int]]
    queries: dict[str, dict[str, int]]

    def has_big_weight(self, doc_id: str, query_id: str) -> bool:
        """Whether a matched document weight is one that Lucene cannot store exactly."""
        doc, query = self.documents[doc_id], self.queries[query_id]
        return any(doc[t] >= LUCENE_EXACT_LIMIT for t in query if t in doc)


def smoke_corpus(n_docs: int = 20, n_queries: int = 6, seed: int = 13) -> SmokeCorpus:
    rng = random.Random(seed)
    documents: dict[str, dict[str, int]] = {}
    for i in range(n_docs):
        tokens = rng.sample(VOCABULARY, rng.randint(3, 9))
        vector = {t: rng.randint(1, 400) for t in tokens}
        if i % 4 == 3:  # every fourth document carries a weight Lucene truncates or keeps only by luck
            vector[tokens[0]] = BIG_WEIGHTS[(i // 4) % len(BIG_WEIGHTS)]
        documents[f"doc-{i:02d}"] = vector
    queries: dict[str, dict[str, int]] = {}
    for j in range(n_queries):
        tokens = rng.sample(VOCABULARY, rng.randint(2, 6))
        queries[f"q{j}"] = {t: rng.randint(1, 100) for t in tokens}
    queries["q-dotted"] = {".": 3, "u.s": 5, "...": 7, "%": 11}
    return SmokeCorpus(documents, queries)
