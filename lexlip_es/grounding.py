"""Grounding of lexicons: are a vector's heaviest tokens words of the item's own captions? Torch-free.

grounding@k of one vector = the fraction of its k heaviest *content* tokens that are WordPieces of the reference
text(s); a split's figure is the mean over its vectors. Content tokens leave out special tokens, stop words and
one-character pieces (",", "a", "##s"), which say nothing a person reads. A vector with fewer than k content tokens
is judged on those it has; one with none scores 0 (an empty lexicon explains nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lexlip_es.sparse import SPECIAL_TOKENS, SparseVector, Vocabulary

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)
"""Lucene's English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET)."""


def is_content_token(token: str) -> bool:
    """A token a person reads as a word: not special, not a stop word, more than one character without `##`."""
    if token in SPECIAL_TOKENS or (token.startswith("[") and token.endswith("]")):
        return False
    return token not in STOP_WORDS and len(token.removeprefix("##")) > 1


def content_ids(vocab: Vocabulary) -> np.ndarray:
    """A boolean mask over the vocabulary: True where the token is a content token."""
    return np.array([is_content_token(t) for t in vocab.tokens], dtype=bool)


def heaviest_content(vector: SparseVector, vocab: Vocabulary, k: int) -> list[int]:
    """The ids of the k heaviest content tokens (ties go to the lower id)."""
    order = np.lexsort((vector.indices, -vector.values.astype(np.float64)))
    picked: list[int] = []
    for position in order.tolist():
        token_id = int(vector.indices[position])
        if is_content_token(vocab.tokens[token_id]):
            picked.append(token_id)
            if len(picked) == k:
                break
    return picked


def grounding_of(vector: SparseVector, reference: Iterable[int], vocab: Vocabulary, k: int = 10) -> float:
    """grounding@k of one vector against the WordPiece ids of its reference text(s)."""
    top = heaviest_content(vector, vocab, k)
    if not top:
        return 0.0
    wanted = set(reference)
    return sum(t in wanted for t in top) / len(top)


def grounding_at_k(
    vectors: Sequence[SparseVector], references: Sequence[Iterable[int]], vocab: Vocabulary, k: int = 10
) -> float:
    """Mean grounding@k over vectors, each against its own reference ids."""
    if len(vectors) != len(references):
        raise ValueError(f"{len(vectors)} vectors but {len(references)} references")
    if not vectors:
        raise ValueError("grounding of no vectors")
    return float(np.mean([grounding_of(v, r, vocab, k) for v, r in zip(vectors, references, strict=True)]))
