"""The parity harness: the same vectors through OpenSearch, Elasticsearch, Anserini and the exact scorer.

Every backend answers every query with its top k, ties ordered by id. Each engine is compared with two exact
references: the integer dot product, and the dot product over document weights as Lucene's FeatureField stores
them (9 significant bits). Below 512 both are the same number; the report counts the weights above 511 and which
mismatches they explain. Anything else is an unexplained mismatch: a bug.

Two corpora come with it: `zipf_vectors` (LexLIP-shaped vectors at any size) and `smoke_corpus` (20 documents whose
tokens and weights are what bites on the wire: dots, percent signs, non-ASCII, weights above 511); `lexlip smoke` runs
the harness on the smoke corpus against OpenSearch and Anserini.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lexlip_es.backends.anserini import AnseriniBackend, read_vectors_jsonl
from lexlip_es.backends.base import SearchHit, VectorBackend
from lexlip_es.backends.engine import EngineBackend
from lexlip_es.backends.exact import ExactBackend
from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.errors import LexlipError
from lexlip_es.features import LUCENE_EXACT_LIMIT, lucene_feature_value
from lexlip_es.indices import create_index
from lexlip_es.jsonl import write_jsonl
from lexlip_es.mapping import IMAGE_FIELD, FieldType, IndexOptions, LexiconLayout
from lexlip_es.settings import Settings

ENGINES = ("opensearch", "opensearch-impact", "elasticsearch", "anserini")
"""`opensearch` uses `rank_features` (9-bit weights), `opensearch-impact` the `impact` field type (exact integers)."""
PARITY_INDEX = "lexlip-parity"
RARE_FROM = 1000
Vectors = list[tuple[str, dict[str, int]]]


@dataclass
class Mismatch:
    query: str
    rank: int
    kind: str
    """'ids' (a different document at this rank) or 'score' (same document, other score)."""
    expected_id: str | None
    expected_score: float | None
    got_id: str | None
    got_score: float | None
    explained_by_9bit: bool


@dataclass
class EngineReport:
    engine: str
    queries: int = 0
    identical_top_k: int = 0
    identical_scores: int = 0
    queries_matching_big_weights: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    index_s: float = 0.0
    search_s: float = 0.0

    @property
    def unexplained(self) -> int:
        return sum(not m.explained_by_9bit for m in self.mismatches)


@dataclass
class ParityReport:
    documents: int
    queries: int
    k: int
    weights: int
    weights_above_511: int
    documents_with_big_weights: int
    engines: list[EngineReport]

    @property
    def ok(self) -> bool:
        return all(e.unexplained == 0 for e in self.engines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for engine, report in zip(data["engines"], self.engines, strict=True):
            engine["unexplained"] = report.unexplained
        return data

    def markdown(self, max_rows: int = 200) -> str:
        lines = [
            f"# Parity: {self.documents:,} documents, {self.queries:,} queries, top {self.k}",
            "",
            f"- document weights: {self.weights:,}, of which {self.weights_above_511:,} are above 511 "
            f"(in {self.documents_with_big_weights:,} documents); Lucene keeps those to 9 significant bits",
            "- compared with the exact integer dot product, ties ordered by id; a mismatch is *explained* when the "
            "engine agrees with the exact scorer run over 9-bit document weights",
            "",
            "| engine | queries | identical top-k ids | identical scores | queries matching a weight > 511 | "
            "mismatches | explained by 9-bit weights | unexplained | index (s) | search (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for e in self.engines:
            lines.append(
                f"| {e.engine} | {e.queries} | {e.identical_top_k} | {e.identical_scores} | "
                f"{e.queries_matching_big_weights} | {len(e.mismatches)} | {len(e.mismatches) - e.unexplained} | "
                f"{e.unexplained} | {e.index_s:.1f} | {e.search_s:.1f} |"
            )
        rows = [(e.engine, m) for e in self.engines for m in e.mismatches]
        if rows:
            lines += [
                "",
                "## Mismatches" + (f" (first {max_rows}; the JSON report has all)" if len(rows) > max_rows else ""),
                "",
                "| engine | query | rank | kind | exact id | exact score | engine id | engine score | 9-bit |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for engine, m in rows[:max_rows]:
                lines.append(
                    f"| {engine} | {m.query} | {m.rank} | {m.kind} | {m.expected_id} | {m.expected_score} | "
                    f"{m.got_id} | {m.got_score} | {'yes' if m.explained_by_9bit else 'NO'} |"
                )
        return "\n".join(lines) + "\n"


def truncated(vector: Mapping[str, int]) -> dict[str, float]:
    return {t: lucene_feature_value(w) if w >= LUCENE_EXACT_LIMIT else float(w) for t, w in vector.items()}


def compare(
    engine: str,
    queries: Vectors,
    got: Sequence[Sequence[SearchHit]],
    exact: Sequence[Sequence[SearchHit]],
    lucene: Sequence[Sequence[SearchHit]],
    documents: Mapping[str, Mapping[str, int]],
    lucene_scored: bool,
) -> EngineReport:
    """Compare an engine's answers with the exact ones; `lucene` holds the 9-bit reference for Lucene engines."""
    report = EngineReport(engine, queries=len(queries))
    for (qid, query), hits, want, want_9bit in zip(queries, got, exact, lucene, strict=True):
        ids = [h.id for h in hits]
        same_ids = ids == [h.id for h in want]
        same_scores = same_ids and all(_same(h.score, w.score) for h, w in zip(hits, want, strict=True))
        report.identical_top_k += same_ids
        report.identical_scores += same_scores
        report.queries_matching_big_weights += any(
            documents[h.id].get(t, 0) >= LUCENE_EXACT_LIMIT for h in [*hits, *want] for t in query
        )
        if same_scores:
            continue
        agrees_9bit = (
            lucene_scored
            and [h.id for h in hits] == [h.id for h in want_9bit]
            and all(_same(h.score, w.score) for h, w in zip(hits, want_9bit, strict=True))
        )
        for rank in range(max(len(hits), len(want))):
            h = hits[rank] if rank < len(hits) else None
            w = want[rank] if rank < len(want) else None
            if h is not None and w is not None and h.id == w.id and _same(h.score, w.score):
                continue
            report.mismatches.append(
                Mismatch(
                    qid,
                    rank + 1,
                    "score" if h is not None and w is not None and h.id == w.id else "ids",
                    w.id if w else None,
                    w.score if w else None,
                    h.id if h else None,
                    h.score if h else None,
                    agrees_9bit,
                )
            )
    return report


def _same(engine_score: float, exact_score: float) -> bool:
    """Engines return float32 scores: equal when the exact score rounds to the same float32."""
    return bool(np.float32(exact_score) == np.float32(engine_score))


@contextlib.contextmanager
def engine_url(settings: Settings, engine: str, echo: Callable[[str], None]) -> Iterator[str]:
    """The URL from settings, else a local engine started for the run and stopped after it."""
    given = settings.opensearch_url if engine == "opensearch" else settings.elasticsearch_url
    if given:
        yield given
        return
    from lexlip_es.local.elasticsearch import start_elasticsearch
    from lexlip_es.local.opensearch import start_opensearch

    echo(f"starting a local {engine} node ...")
    local = start_opensearch(settings) if engine == "opensearch" else start_elasticsearch(settings)
    try:
        yield local.url
    finally:
        local.stop()


def _engine_backend(engine: str, url: str, documents: Vectors, field_type: FieldType) -> EngineBackend:
    if engine == "opensearch":
        from opensearchpy import OpenSearch

        client: Any = OpenSearch(url, timeout=120)
    else:
        from elasticsearch import Elasticsearch

        client = Elasticsearch(url, request_timeout=120)
    layout = LexiconLayout("parity", top_k_image=None, top_k_text=None, field_type=field_type)
    if client.indices.exists(index=PARITY_INDEX):
        client.indices.delete(index=PARITY_INDEX)
    create_index(client, PARITY_INDEX, layout, IndexOptions(shards=1, replicas=0, refresh_interval="-1"))
    report = BulkWriter(client, PARITY_INDEX, layout, chunk_size=1000).write(
        LexiconDocument(doc_id, image=vector) for doc_id, vector in documents
    )
    if report.errors:
        raise LexlipError(f"{engine} refused {len(report.errors)} documents, first: {report.errors[0]}")
    client.indices.refresh(index=PARITY_INDEX)
    return EngineBackend.create(client, PARITY_INDEX, layout, source=False)


def _search_all(backend: VectorBackend, queries: Vectors, k: int, batch: int = 200) -> list[list[SearchHit]]:
    out: list[list[SearchHit]] = []
    for start in range(0, len(queries), batch):
        out.extend(backend.search_many([v for _, v in queries[start : start + batch]], k, IMAGE_FIELD))
    return out


def run_parity(
    documents: Vectors,
    queries: Vectors,
    settings: Settings,
    k: int = 10,
    engines: Sequence[str] = ENGINES,
    echo: Callable[[str], None] = print,
) -> ParityReport:
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise LexlipError(f"unknown engines {sorted(unknown)}: choose from {', '.join(ENGINES)}")
    if not documents or not queries:
        raise LexlipError("the parity run needs at least one document and one query")
    exact = ExactBackend(documents)
    lucene = ExactBackend((doc_id, truncated(v)) for doc_id, v in documents)
    want = exact.search_many([v for _, v in queries], k)
    want_9bit = lucene.search_many([v for _, v in queries], k)
    by_id = dict(documents)
    big_docs = sum(any(w >= LUCENE_EXACT_LIMIT for w in v.values()) for v in by_id.values())
    weights = sum(len(v) for _, v in documents)
    above = sum(w >= LUCENE_EXACT_LIMIT for _, v in documents for w in v.values())
    reports = []
    for engine in engines:
        started = time.monotonic()
        if engine == "anserini":
            with tempfile.TemporaryDirectory(prefix="lexlip-parity-") as tmp:
                backend: VectorBackend = AnseriniBackend(Path(tmp) / "index", settings)
                backend.index(documents)  # type: ignore[attr-defined]
                index_s = time.monotonic() - started
                got = backend.search_many([v for _, v in queries], k)
        else:
            types: dict[str, FieldType] = {"opensearch": "rank_features", "opensearch-impact": "impact"}
            field_type = types.get(engine, "sparse_vector")
            cluster = engine.split("-")[0]
            with engine_url(settings, cluster, echo) as url:
                started = time.monotonic()
                backend = _engine_backend(cluster, url, documents, field_type)
                index_s = time.monotonic() - started
                got = _search_all(backend, queries, k)
        search_s = time.monotonic() - started - index_s
        exact_engine = engine in ("anserini", "opensearch-impact")
        report = compare(engine, queries, got, want, want_9bit, by_id, lucene_scored=not exact_engine)
        report.index_s, report.search_s = index_s, search_s
        echo(
            f"{engine}: {report.identical_top_k}/{report.queries} identical top-{k}, {len(report.mismatches)} "
            f"mismatching ranks, {report.unexplained} unexplained"
        )
        reports.append(report)
    return ParityReport(len(documents), len(queries), k, weights, above, big_docs, reports)


def load_vectors(path: str | Path) -> Vectors:
    return list(read_vectors_jsonl(path))


def zipf_vectors(
    n: int,
    terms: tuple[int, int],
    vocab_size: int = 30000,
    big_fraction: float = 0.002,
    seed: int = 0,
    prefix: str = "d",
) -> Vectors:
    """Sparse vectors shaped like LexLIP's: Zipf-distributed terms (s = 1.1), weights like floor(100 * log(1 + x)).

    A `big_fraction` of the weights of rare terms (Zipf rank 1,000 and below) is pushed to 512..1023, as a very
    confident specific term would be, to exercise Lucene's 9-bit truncation. A few tokens hold the
    characters engines trip on (`.`, `%`, a space, non-ASCII).
    """
    rng = np.random.default_rng(seed)
    vocab = ["."] + ["u.s", "100%", "new york", "café", "##."] + [f"w{i}" for i in range(vocab_size - 6)]
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    p = ranks**-1.1
    p /= p.sum()
    width = len(str(n - 1))
    out: Vectors = []
    for i in range(n):
        count = int(rng.integers(terms[0], terms[1] + 1))
        chosen = rng.choice(vocab_size, size=min(count, vocab_size), replace=False, p=p)
        raw = rng.gamma(2.0, 0.6, size=chosen.size)
        weights = np.maximum(1, np.floor(100 * np.log1p(raw))).astype(np.int64)
        big = (rng.random(chosen.size) < big_fraction) & (chosen >= RARE_FROM)
        weights[big] = rng.integers(LUCENE_EXACT_LIMIT, 1024, size=int(big.sum()))
        out.append((f"{prefix}{i:0{width}d}", {vocab[c]: int(w) for c, w in zip(chosen, weights, strict=True)}))
    return out


def write_vectors(path: Path, vectors: Vectors) -> None:
    write_jsonl(path, ({"id": doc_id, "vector": vector} for doc_id, vector in vectors))


SMOKE_VOCABULARY = (
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
SMOKE_BIG_WEIGHTS = (512, 513, 777, 1023, 1500, 4095)


@dataclass(frozen=True)
class SmokeCorpus:
    documents: dict[str, dict[str, int]]
    queries: dict[str, dict[str, int]]

    def vectors(self) -> tuple[Vectors, Vectors]:
        """(documents, queries) as the harness takes them."""
        return list(self.documents.items()), list(self.queries.items())

    def has_big_weight(self, doc_id: str, query_id: str) -> bool:
        """Whether a matched document weight is one that Lucene cannot store exactly."""
        doc, query = self.documents[doc_id], self.queries[query_id]
        return any(doc[t] >= LUCENE_EXACT_LIMIT for t in query if t in doc)


def smoke_corpus(n_docs: int = 20, n_queries: int = 6, seed: int = 13) -> SmokeCorpus:
    """A seeded corpus of integer lexicons over SMOKE_VOCABULARY (WordPiece-style names with dots and percent
    signs); every fourth document carries a weight above 511, where Lucene's FeatureField stops being exact."""
    rng = random.Random(seed)
    documents: dict[str, dict[str, int]] = {}
    for i in range(n_docs):
        tokens = rng.sample(SMOKE_VOCABULARY, rng.randint(3, 9))
        vector = {t: rng.randint(1, 400) for t in tokens}
        if i % 4 == 3:  # every fourth document carries a weight Lucene truncates or keeps only by luck
            vector[tokens[0]] = SMOKE_BIG_WEIGHTS[(i // 4) % len(SMOKE_BIG_WEIGHTS)]
        documents[f"doc-{i:02d}"] = vector
    queries: dict[str, dict[str, int]] = {}
    for j in range(n_queries):
        tokens = rng.sample(SMOKE_VOCABULARY, rng.randint(2, 6))
        queries[f"q{j}"] = {t: rng.randint(1, 100) for t in tokens}
    queries["q-dotted"] = {".": 3, "u.s": 5, "...": 7, "%": 11}
    return SmokeCorpus(documents, queries)
