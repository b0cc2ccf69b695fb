"""The exact scorer: integer dot products of every query with every document, by a scipy sparse product.

It is the ground truth the engines are compared with: no truncation, no pruning, ties broken by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lexlip_es.backends.base import Contribution, SearchHit, VectorBackend, check_vector


class ExactBackend(VectorBackend):
    name = "exact"

    def __init__(self, documents: Iterable[tuple[str, Mapping[str, float]]], field: str = "image_lexicon") -> None:
        from scipy import sparse

        self.field = field
        self.ids: list[str] = []
        self.vectors: list[dict[str, float]] = []
        self.terms: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, (doc_id, vector) in enumerate(documents):
            self.ids.append(str(doc_id))
            self.vectors.append(dict(vector))
            for token, weight in vector.items():
                rows.append(row)
                cols.append(self.terms.setdefault(token, len(self.terms)))
                vals.append(weight)
        self.matrix = sparse.csr_matrix(
            (np.asarray(vals, dtype=np.float64), (rows, cols)), shape=(len(self.ids), max(len(self.terms), 1))
        )
        self.id_order = np.argsort(np.asarray(self.ids, dtype=object), kind="stable")
        self.id_rank = np.empty(len(self.ids), dtype=np.int64)
        self.id_rank[self.id_order] = np.arange(len(self.ids))

    def scores(self, queries: Sequence[Mapping[str, float]]) -> Any:
        """A dense (queries x documents) array of exact dot products."""
        from scipy import sparse

        rows, cols, vals = [], [], []
        for row, vector in enumerate(queries):
            for token, weight in check_vector(vector).items():
                col = self.terms.get(token)
                if col is not None:
                    rows.append(row)
                    cols.append(col)
                    vals.append(weight)
        q = sparse.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(len(queries), self.matrix.shape[1]))
        return (q @ self.matrix.T).toarray()

    def search_many(self, queries: Sequence[Mapping[str, float]], k: int, field: str = "") -> list[list[SearchHit]]:
        out = []
        for vector, row in zip(queries, self.scores(queries), strict=True):
            order = np.lexsort((self.id_rank, -row))
            order = order[row[order] > 0][:k]
            out.append(
                [SearchHit(self.ids[i], float(row[i]), field=self.field, query=dict(vector)) for i in order.tolist()]
            )
        return out

    def contributions(self, hit: SearchHit) -> list[Contribution]:
        doc = self.vectors[self.ids.index(hit.id)]
        out = [Contribution(t, float(q), float(doc[t]), float(doc[t])) for t, q in hit.query.items() if t in doc]
        return sorted(out, key=lambda c: (-c.score, c.token))
