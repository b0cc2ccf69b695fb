"""Anserini impact search behind the backend interface: exact integer dot products, the reference for the engines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from lexlip_es.backends.base import Contribution, SearchHit, VectorBackend, check_vector, sort_hits
from lexlip_es.errors import QueryError
from lexlip_es.jsonl import read_jsonl
from lexlip_es.local.anserini import Anserini
from lexlip_es.settings import Settings


def read_vectors_jsonl(path: str | Path, field: str = "vector") -> Iterator[tuple[str, dict[str, int]]]:
    """`{"id": ..., "vector": {token: int}}` per line (Anserini's JsonVectorCollection shape)."""
    try:
        for n, record in read_jsonl(path):
            try:
                yield str(record["id"]), dict(record[field])
            except (ValueError, KeyError, TypeError) as exc:
                raise QueryError(f"{path}:{n}: not a vector record ({exc})") from exc
    except QueryError:
        raise
    except ValueError as exc:
        raise QueryError(str(exc)) from exc


class AnseriniBackend(VectorBackend):
    """One Anserini impact index of one lexicon field. Query weights must be integers (quantized)."""

    name = "anserini"

    def __init__(self, index_dir: str | Path, settings: Settings | None = None, field: str = "image_lexicon") -> None:
        self.index_dir = Path(index_dir)
        self.anserini = Anserini(settings or Settings.from_env())
        self.field = field
        self._extra = 64

    def index(self, documents: Iterable[tuple[str, Mapping[str, int]]], threads: int = 1) -> int:
        return self.anserini.index(documents, self.index_dir, threads=threads)

    def index_jsonl(self, path: str | Path, threads: int = 1) -> int:
        return self.index(read_vectors_jsonl(path), threads=threads)

    def search_many(self, queries: Sequence[Mapping[str, float]], k: int, field: str = "") -> list[list[SearchHit]]:
        checked: list[dict[str, int]] = []
        for vector in queries:
            weights = check_vector(vector)
            if not all(float(w).is_integer() for w in weights.values()):
                raise QueryError("Anserini impact search takes integer query weights: quantize the query first")
            checked.append({t: int(w) for t, w in weights.items()})
        # Anserini orders ties by its internal doc id: fetch deeper, then order ties by id as every backend does.
        depth = k + self._extra
        found = self.anserini.search(self.index_dir, [(str(n), v) for n, v in enumerate(checked)], k=depth)
        out = []
        for n, vector in enumerate(checked):
            hits = sort_hits(
                [SearchHit(doc_id, score, field=self.field, query=vector) for doc_id, score in found[str(n)]]
            )
            if len(hits) == depth and hits[k - 1].score == hits[-1].score:
                raise QueryError(f"query {n}: more than {self._extra} documents tie at rank {k}; cannot order them")
            out.append(hits[:k])
        return out

    def contributions(self, hit: SearchHit) -> list[Contribution]:
        raise QueryError("the Anserini backend does not store documents for explanation; use the exact scorer")
