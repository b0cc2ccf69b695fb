"""Query term weights: a query lexicon's tokens scaled by their rarity among the images' lexicons.

A checkpoint folder may hold `query_weights.json`: how many reference images (the training split's) hold each token
in their lexicons, and a power. A text *query* then weighs token t by idf(t) ** power, with BM25's idf
log(1 + (N - df + 0.5) / (df + 0.5)), and keeps its L2 norm (so hybrid weights and fast mode's thresholds see the
same magnitudes). Documents, image queries and the index are untouched: only the query text's lexicon changes.
Inference-free sparse encoders weigh query tokens by idf the same way. Why it pays for LexLIP: a word most images
hold ("skin", "tone", "people") ranks the images whose lexicons are all such words above the ones that also hold
the query's rarer words; trainer/calibrate.py measures it and picks the power on the validation split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lexlip_es.sparse import SparseVector, Vocabulary

QUERY_WEIGHTS_FILE = "query_weights.json"


def idf(documents: int, df: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """BM25's idf: log(1 + (N - df + 0.5) / (df + 0.5)), positive for every df <= N."""
    counts = np.asarray(df, dtype=np.float64)
    return np.log1p((documents - counts + 0.5) / (counts + 0.5))


@dataclass(frozen=True)
class QueryWeights:
    """idf ** `power` per token over `documents` reference image lexicons (`df`: token -> images holding it)."""

    power: float
    documents: int
    df: Mapping[str, int]
    chosen: Mapping[str, Any] = field(default_factory=dict)
    """How `power` was chosen (data set, split, R@1 per power): kept in the file for the reader."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.power <= 4.0 or not math.isfinite(self.power):
            raise ValueError(f"query weight power must be in [0, 4], got {self.power}")
        if self.documents < 1:
            raise ValueError(f"query weights need at least one reference image, got {self.documents}")
        bad = [t for t, n in self.df.items() if not 0 <= n <= self.documents]
        if bad:
            raise ValueError(f"document frequencies outside [0, {self.documents}] for {bad[:5]}")

    @classmethod
    def from_lexicons(
        cls, vectors: Iterable[SparseVector], vocab: Vocabulary, power: float, chosen: Mapping[str, Any] | None = None
    ) -> QueryWeights:
        """Count, over these image lexicons, how many hold each token."""
        counts: dict[int, int] = {}
        documents = 0
        for vector in vectors:
            documents += 1
            for token in vector.indices.tolist():
                counts[token] = counts.get(token, 0) + 1
        df = {vocab.tokens[t]: n for t, n in sorted(counts.items())}
        return cls(power=power, documents=documents, df=df, chosen=dict(chosen or {}))

    def with_power(self, power: float) -> QueryWeights:
        return QueryWeights(power=power, documents=self.documents, df=self.df, chosen=self.chosen)

    def shares(self) -> dict[str, float]:
        """Each token's share of the reference images holding it (fast mode keeps common ones out of its head)."""
        return {token: n / self.documents for token, n in self.df.items()}

    def multipliers(self, vocab: Vocabulary) -> npt.NDArray[np.float32]:
        """One multiplier per vocabulary id: tokens no reference image holds get the largest idf."""
        df = np.zeros(len(vocab), dtype=np.float64)
        unknown = [t for t in self.df if t not in vocab.ids]
        if unknown:
            raise ValueError(f"query weights name tokens this vocabulary lacks: {unknown[:5]}")
        for token, n in self.df.items():
            df[vocab.ids[token]] = n
        return np.asarray(idf(self.documents, df) ** self.power, dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / QUERY_WEIGHTS_FILE
        data = {"power": self.power, "documents": self.documents, "chosen": dict(self.chosen), "df": dict(self.df)}
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> QueryWeights | None:
        """The folder's query weights, or None when it holds none; a broken file raises ValueError naming it."""
        path = Path(directory) / QUERY_WEIGHTS_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                power=float(data["power"]),
                documents=int(data["documents"]),
                df={str(t): int(n) for t, n in data["df"].items()},
                chosen=data.get("chosen", {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a query weights file ({exc})") from exc


class QueryWeighting:
    """Query rows (vocabulary-wide float lexicons) scaled by the multipliers, each keeping its L2 norm."""

    def __init__(self, weights: QueryWeights | None, vocab: Vocabulary) -> None:
        self.weights = weights
        self._multipliers = None if weights is None or weights.power == 0 else weights.multipliers(vocab)

    def __call__(self, row: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._multipliers is None:
            return row
        weighted = row * self._multipliers
        norm = float(np.linalg.norm(weighted))
        if norm == 0.0:
            return weighted
        return np.asarray(weighted * (float(np.linalg.norm(row)) / norm), dtype=np.float32)


def query_vectors(
    rows: Iterable[npt.NDArray[np.float32]],
    weights: QueryWeights | None,
    vocab: Vocabulary,
    scale: float | None = None,
    top_k: int | None = None,
) -> list[SparseVector]:
    """An encoder's text output rows as query lexicons: weighted, then quantized with `scale` and cut to `top_k`."""
    weighting = QueryWeighting(weights, vocab)
    return [SparseVector.from_output(weighting(row), scale, top_k) for row in rows]
