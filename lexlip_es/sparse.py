"""Sparse lexicon vectors: token ids with weights, quantization, top-K, and the {feature name: weight} wire form.

Torch-free on purpose: a search service that only builds queries from stored vectors imports this and numpy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lexlip_es.features import escape_feature, unescape_feature

DEFAULT_SCALE = 100.0
"""The paper's quantization: w = floor(100 * p)."""

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_UNUSED = re.compile(r"^\[unused\d+\]$")


class Vocabulary:
    """The text vocabulary the lexicons live in: id -> token and back, and which ids must never carry weight."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("the vocabulary holds the same token twice")

    @classmethod
    def from_file(cls, path: str | Path) -> Vocabulary:
        """A WordPiece `vocab.txt`: one token per line, the line number is the id."""
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f])

    def __len__(self) -> int:
        return len(self.tokens)

    def special_ids(self) -> list[int]:
        """[CLS] [SEP] [PAD] [MASK] [UNK] and the [unusedN] slots: zeroed in every vector, they only waste postings."""
        return [i for i, t in enumerate(self.tokens) if t in SPECIAL_TOKENS or _UNUSED.match(t)]


@dataclass(frozen=True, eq=False)
class SparseVector:
    """Non-zero entries of a lexicon vector: strictly increasing token ids and their positive weights.

    Raw vectors carry float weights p = log(1 + max relu(logits)); quantized ones carry integers floor(scale * p).
    """

    indices: npt.NDArray[np.int64]
    values: npt.NDArray[Any]

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices, dtype=np.int64)
        values = np.asarray(self.values)
        if indices.ndim != 1 or values.shape != indices.shape:
            raise ValueError("indices and values must be 1-D arrays of the same length")
        if indices.size and (np.any(np.diff(indices) <= 0) or indices[0] < 0):
            raise ValueError("indices must be non-negative and strictly increasing")
        if values.size and not np.all(values > 0):
            raise ValueError("weights must be positive (drop zeros before building a SparseVector)")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)

    @classmethod
    def empty(cls, integer: bool = True) -> SparseVector:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32 if integer else np.float32))

    @classmethod
    def from_dense(cls, dense: npt.ArrayLike) -> SparseVector:
        array = np.asarray(dense)
        if array.ndim != 1:
            raise ValueError("from_dense takes one vector")
        indices = np.flatnonzero(array > 0)
        return cls(indices, array[indices])

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, float]]) -> SparseVector:
        items = sorted(pairs)
        if not items:
            return cls.empty()
        ids, weights = zip(*items, strict=True)
        return cls(np.array(ids, np.int64), np.array(weights))

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @property
    def is_quantized(self) -> bool:
        return self.values.dtype.kind in "iu"

    def quantize(self, scale: float = DEFAULT_SCALE) -> SparseVector:
        """floor(scale * p), non-positive results dropped; computed in float64 so the floor sees float32 p exactly."""
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        q = np.floor(self.values.astype(np.float64) * scale)
        keep = q > 0
        return SparseVector(self.indices[keep], q[keep].astype(np.int32))

    @classmethod
    def from_output(cls, row: npt.ArrayLike, scale: float | None = None, top_k: int | None = None) -> SparseVector:
        """An encoder's vocabulary-wide output row: raw, or quantized with `scale`; cut to the `top_k` largest."""
        vector = cls.from_dense(row)
        if scale is not None:
            vector = vector.quantize(scale)
        return vector.top_k(top_k)

    def top_k(self, k: int | None) -> SparseVector:
        """The k largest weights (ties go to the lower token id); None keeps everything."""
        if k is None or self.nnz <= k:
            return self
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        order = np.lexsort((self.indices, -self.values.astype(np.float64)))[:k]
        order.sort()
        return SparseVector(self.indices[order], self.values[order])

    def dot(self, other: SparseVector) -> float:
        _, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        if self.is_quantized and other.is_quantized:
            return int(np.dot(self.values[a].astype(np.int64), other.values[b].astype(np.int64)))
        return float(np.dot(self.values[a].astype(np.float64), other.values[b].astype(np.float64)))

    def to_dense(self, size: int) -> npt.NDArray[Any]:
        out = np.zeros(size, dtype=self.values.dtype)
        out[self.indices] = self.values
        return out

    def to_features(self, vocab: Vocabulary, escape: bool = True) -> dict[str, Any]:
        """{token name: weight} as engines store it; names are escaped for engines unless `escape` is False."""
        names = (vocab.tokens[i] for i in self.indices.tolist())
        if escape:
            names = (escape_feature(n) for n in names)
        return dict(zip(names, self.values.tolist(), strict=True))

    @classmethod
    def from_features(cls, features: Mapping[str, float], vocab: Vocabulary, escaped: bool = True) -> SparseVector:
        pairs = []
        for name, weight in features.items():
            token = unescape_feature(name) if escaped else name
            if token not in vocab.ids:
                raise KeyError(f"feature {name!r} is not a token of this vocabulary")
            pairs.append((vocab.ids[token], weight))
        return cls.from_pairs(pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return bool(
            np.array_equal(self.indices, other.indices)
            and np.array_equal(self.values, other.values)
            and self.is_quantized == other.is_quantized
        )

    def __hash__(self) -> int:
        return hash((self.indices.tobytes(), self.values.tobytes()))

    def __repr__(self) -> str:
        head = ", ".join(f"{i}:{v}" for i, v in zip(self.indices[:6].tolist(), self.values[:6].tolist(), strict=True))
        more = ", ..." if self.nnz > 6 else ""
        return f"SparseVector(nnz={self.nnz}, {{{head}{more}}})"
