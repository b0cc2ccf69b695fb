"""Fast mode and exact mode on a real vocabulary at a million documents: emoji mosaics.

    .venv/bin/python benchmarks/mosaics.py [--n 1000000] [--queries 500] [--lexlip CKPT]
        [--fast 4:100:0.1:12,4:100] [--doc-top-k 24] [--wide-dims 512] [--heap-mb 2048] [--out DIR] [--results DIR]

Why: Table 2's corpus (shapes) speaks 21 content words, so a query's terms cover 3.3 postings per image and Lucene
scores every one of them (benchmarks/results/table2-1000000.md): nothing can be skipped, and fast mode stays within
8x of a 512-d flat scan there. This corpus has the emoji recipe's vocabulary (thousands of words) at the same size,
to measure what the same engines do where postings are short and skipping can pay.

Documents: N mosaics of 2-4 emoji drawn (seeded) from all of them, each lexicon the elementwise maximum of its
members' image lexicons from the emoji checkpoint (the rule for a document with several lexicons:
lexlip_es/documents.py merges caption lexicons by max). They are lexicons, not pixels: encoding a million 128-px
mosaics would take about an hour per model on 2 cores, and what search speed depends on is the postings' shape.
Queries: the first Q mosaics, each as its members' names joined ("cat face, rocket and red heart") through the
checkpoint's text tower with its query weights; the one relevant document is that mosaic.
Rows: OpenSearch exact and fast mode per head terms:window (by weight) or terms:window:max_share[:rescore_terms] (the
rare terms by the checkpoint's document shares; the rescore by the query's heaviest terms), the impact field (exact,
the first fast mode), the documents cut to their --doc-top-k heaviest terms at index time (the layout's
top_k_image; exact, the first fast mode), Anserini impact search,
and a speed-only flat scan of random vectors as wide as CLIP's (table2.py's rows, timed the same way).
Quality: R@1/R@10 and the overlap with the exact top 10 (scipy, ties by id). Checkpoint: the demo's emoji recipe
checkpoint in the cache (trained once if missing). Writes benchmarks/results/mosaics-<N>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from shapes_common import RESULTS
from table2 import (
    FILES,
    PASSES,
    STEPS,
    WARM_UP,
    K,
    anserini_figures,
    directory_bytes,
    directory_files,
    engine_index,
    lucene_files,
    measure_rows,
    step,
    wide_flat_row,
)

from lexlip_es.fast import FastMode
from lexlip_es.settings import Settings

SEED = 20261204


@dataclass
class Mosaics:
    """The corpus as a CSR matrix (documents x vocabulary, integer weights) and the token of each column."""

    matrix: sp.csr_matrix
    tokens: list[str]
    members: np.ndarray
    """N x 4 emoji indices per document (a 2- or 3-emoji mosaic repeats a member: the maximum does not change)."""

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def __getitem__(self, part: slice) -> Iterator[dict[str, int]]:
        """Documents `part` as {token: weight}, built as they are read (a million dicts would not fit beside the
        engines)."""
        for row in range(*part.indices(len(self))):
            start, end = self.matrix.indptr[row], self.matrix.indptr[row + 1]
            columns, values = self.matrix.indices[start:end], self.matrix.data[start:end]
            yield {self.tokens[c]: int(v) for c, v in zip(columns, values, strict=True)}

    def cut(self, k: int) -> Mosaics:
        """Each document cut to its k heaviest terms (ties to the lower token id), as an encoder's top_k does."""
        rows = np.repeat(np.arange(len(self)), np.diff(self.matrix.indptr))
        order = np.lexsort((self.matrix.indices, -self.matrix.data, rows))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size) - self.matrix.indptr[rows[order]]
        keep = rank < k
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(self)))])
        matrix = sp.csr_matrix((self.matrix.data[keep], self.matrix.indices[keep], indptr), shape=self.matrix.shape)
        return Mosaics(matrix, self.tokens, self.members)


def doc_id(row: int) -> str:
    return f"m{row:07d}"  # fixed width: ids sort as rows do, so ties by id are ties by row


def fast_mode(spec: str, shares: dict[str, float] | None) -> FastMode:
    """ "terms:window" (the head by weight alone, every term rescores), "terms:window:max_share" (the rare terms by
    the checkpoint's document shares) or "terms:window:max_share:rescore_terms" ("all": every term rescores)."""
    parts = spec.split(":")
    if len(parts) == 2:
        return FastMode(int(parts[0]), int(parts[1]), rescore_terms=None, shares=None)
    rescore = None if len(parts) < 4 or parts[3] == "all" else int(parts[3])
    return FastMode(int(parts[0]), int(parts[1]), float(parts[2]), rescore, shares=shares)


def fast_label(mode: FastMode) -> str:
    rule = "" if mode.shares is None else f", rare (shares <= {mode.max_share:g})"
    tail = "" if mode.rescore_terms is None else f", rescore by the {mode.rescore_terms} heaviest"
    return f"fast {mode.terms}:{mode.window}{rule}{tail}"


def build_mosaics(emoji: sp.csr_matrix, tokens: list[str], n: int, rng: np.random.Generator) -> Mosaics:
    """N documents of 2-4 distinct emoji each, lexicon = elementwise max of the members' lexicons."""
    count = emoji.shape[0]
    members = rng.integers(0, count, size=(n, 4))
    while (repeated := np.flatnonzero(np.any(np.diff(np.sort(members, axis=1), axis=1) == 0, axis=1))).size:
        members[repeated] = rng.integers(0, count, size=(repeated.size, 4))
    sizes = rng.integers(2, 5, size=n)
    members[sizes < 4, 3] = members[sizes < 4, 0]
    members[sizes < 3, 2] = members[sizes < 3, 1]
    matrix = emoji[members[:, 0]]
    for j in range(1, 4):
        matrix = matrix.maximum(emoji[members[:, j]])
    return Mosaics(sp.csr_matrix(matrix, dtype=np.int32), tokens, members)


def query_text(names: Sequence[str]) -> str:
    unique = list(dict.fromkeys(names))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


def exact_top(corpus: Mosaics, queries: Sequence[dict[str, int]], columns: dict[str, int]) -> list[list[str]]:
    """Each query's exact top K by integer dot products, ties by id (the engines' order)."""
    by_column = corpus.matrix.tocsc()
    tops = []
    for q in queries:
        cols = [columns[t] for t in q if t in columns]
        weights = np.asarray([q[t] for t in q if t in columns], dtype=np.int64)
        scores = np.asarray(by_column[:, cols] @ weights).ravel()
        best = np.flatnonzero(scores >= np.partition(scores, -K)[-K])
        rows = best[np.lexsort((best, -scores[best]))][:K]
        tops.append([doc_id(r) for r in rows if scores[r] > 0])
    return tops


def quality(results: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> dict[str, float]:
    own = [doc_id(q) for q in range(len(results))]
    return {
        "R@1": float(np.mean([r[:1] == [o] for r, o in zip(results, own, strict=True)])),
        "R@10": float(np.mean([o in r[:K] for r, o in zip(results, own, strict=True)])),
        "overlap@10": float(np.mean([len(set(r[:K]) & set(e[:K])) / K for r, e in zip(results, exact, strict=True)])),
    }


def shape_of(corpus: Mosaics, queries: Sequence[dict[str, int]]) -> dict[str, float]:
    from table2 import lexicon_shape_of

    counts = np.bincount(corpus.matrix.indices, minlength=len(corpus.tokens))
    df = {corpus.tokens[c]: int(counts[c]) for c in np.flatnonzero(counts)}
    return lexicon_shape_of(df, len(corpus), int(corpus.matrix.nnz), list(queries))


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args, self.settings = args, settings
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, figures: dict[str, Any], size: int | None, exact: list[list[str]]) -> None:
        results = figures.pop("results")
        figures.pop("latencies")
        self.rows.append({"system": name, **figures, "index_bytes": size, **quality(results, exact)})

    def engines(
        self,
        corpus: Mosaics,
        queries: list[dict[str, int]],
        model_id: str,
        exact: list[list[str]],
        shares: dict[str, float] | None,
    ) -> None:
        from opensearchpy import OpenSearch

        from lexlip_es.local.opensearch import start_opensearch
        from lexlip_es.search import LexSearch

        ids = [doc_id(r) for r in range(len(corpus))]
        engine = start_opensearch(self.settings, heap_mb=self.args.heap_mb)
        try:
            client = OpenSearch(engine.url, timeout=600)
            first = fast_mode(self.args.fast.split(",")[0], shares)
            indices: list[tuple[str, str, int | None, list[FastMode | None]]] = [
                ("", "rank_features", None, [None, *(fast_mode(p, shares) for p in self.args.fast.split(","))]),
                (" impact field,", "impact", None, [None, first]),
            ]
            if self.args.doc_top_k:
                kind = f" documents cut to {self.args.doc_top_k} terms,"
                indices.append((kind, "rank_features", self.args.doc_top_k, [None, first]))
            for kind, field_type, top_k, modes in indices:
                clock, name = time.monotonic(), f"mosaics-{field_type.replace('_', '-')}-{top_k or 'all'}"
                docs = corpus if top_k is None else corpus.cut(top_k)
                size = engine_index(client, name, docs, ids, model_id, field_type, top_k)  # type: ignore[arg-type]
                what = f"OpenSearch {field_type}" + (f", top {top_k} terms" if top_k else "")
                FILES[what] = lucene_files(client, name)
                step(f"{what} index + force-merge", clock)
                clock = time.monotonic()
                searches = {
                    f"LexLIP OpenSearch{kind} {'exact' if mode is None else fast_label(mode)}": LexSearch(
                        client, name, source=False, fast=mode
                    )
                    for mode in modes
                }
                rows = measure_rows(
                    {row: lambda q, s=s: [h.id for h in s.search_vector(queries[q], K)] for row, s in searches.items()},
                    len(queries),
                )
                for row, figures in rows.items():
                    self.add(row, figures, size, exact)
                step(f"{what}: {len(rows)} rows, passes in turn", clock)
                client.indices.delete(index=name)
        finally:
            engine.stop()

    def anserini(self, corpus: Mosaics, queries: list[dict[str, int]], exact: list[list[str]]) -> None:
        from lexlip_es.backends.anserini import AnseriniBackend

        clock = time.monotonic()
        folder = self.args.out / f"anserini-mosaics-{len(corpus)}"
        shutil.rmtree(folder, ignore_errors=True)
        documents = ((doc_id(r), v) for r, v in enumerate(corpus[0 : len(corpus)]) if v)
        AnseriniBackend(folder, self.settings).index(documents, threads=2)
        figures = anserini_figures(self.settings, folder, queries)
        self.add("LexLIP Anserini impact", figures, directory_bytes(folder), exact)
        FILES["Anserini"] = directory_files(folder)
        step("Anserini (index + search)", clock)


def encode(checkpoint: Path, data_json: Path) -> tuple[sp.csr_matrix, list[str], list[str], Any]:
    """Every emoji's image lexicon (integer weights) as a CSR matrix over the vocabulary, the vocabulary's tokens,
    each emoji's name, and the encoder (for the queries)."""
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from trainer.data.datasets import load_pairs

    encoder = LexLIPEncoder.from_pretrained(checkpoint, batch_size=256)
    pairs = [p for split in ("train", "val", "test") for p in load_pairs(data_json, split)]
    vectors = encoder.encode_images([p.image for p in pairs], scale=100.0, top_k=128)
    rows = np.repeat(np.arange(len(vectors)), [v.nnz for v in vectors])
    columns = np.concatenate([v.indices for v in vectors])
    values = np.concatenate([v.values for v in vectors])
    matrix = sp.csr_matrix((values, (rows, columns)), shape=(len(vectors), len(encoder.vocab)), dtype=np.int32)
    return matrix, list(encoder.vocab.tokens), [str(p.meta["name"]) for p in pairs], encoder


def checkpoint(args: argparse.Namespace, settings: Settings) -> tuple[Path, Path]:
    from lexlip_app.demo import DATASETS, demo_checkpoint

    data = DATASETS["emoji"]
    data_json = data.ensure(settings)
    return (args.lexlip or demo_checkpoint(settings, data, data_json, print)), data_json


def write_results(args: argparse.Namespace, rows: list[dict[str, Any]], header: dict[str, Any]) -> None:
    flat = next(r for r in rows if "speed only" in r["system"])
    exact = next(r for r in rows if r["system"] == "LexLIP OpenSearch exact")
    lines = [
        f"# Emoji mosaics: {args.n:,} documents, {args.queries} text queries, a real vocabulary",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| system | QPS | QPS of the passes | p50 ms | p95 ms | index MB | R@1 | R@10 | top-10 overlap with exact | "
        "speed-up vs the flat scan | QPS vs OpenSearch exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        passes = " / ".join(f"{q:.0f}" if q >= 100 else f"{q:.1f}" for q in r["qps_passes"])
        size = "-" if not r.get("index_bytes") else f"{r['index_bytes'] / 2**20:.1f}"
        quality = [("-" if r.get(k) is None else f"{r[k]:.3f}") for k in ("R@1", "R@10", "overlap@10")]
        lines.append(
            f"| {r['system']} | {r['qps']:.1f} | {passes} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {size} | "
            f"{' | '.join(quality)} | {r['qps'] / flat['qps']:.1f}x | {r['qps'] / exact['qps']:.2f}x |"
        )
    lines += [
        "",
        f"One client, after {WARM_UP} warm-up queries, the pass of median QPS among {PASSES}; the rows of one "
        "OpenSearch index take their passes in turn (a drift of the machine falls on all of them). Anserini's "
        "figures are calls inside its JVM (no HTTP). Mosaics are lexicons (the max of 2-4 emoji image lexicons), not "
        "pixels: see the script's docstring.",
        "",
        "Bytes by Lucene file kind:",
        "",
        *(f"- {s}: " + ", ".join(f"{k} {v:,}" for k, v in f.items() if v >= 1024) for s, f in FILES.items()),
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"mosaics-{args.n}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--lexlip", type=Path, default=None, help="default: the demo's emoji recipe checkpoint")
    parser.add_argument(
        "--fast",
        default="4:100:0.1:12,4:100:0.1:8,4:100:0.1:16,4:100:0.1:all,4:50:0.1:12,3:100:0.1:12,4:100",
        help="fast modes: terms:window (head by weight, every term rescores), terms:window:max_share (rare terms "
        "by the checkpoint's document shares) and :rescore_terms (or :all); the first also runs on the impact field",
    )
    parser.add_argument(
        "--doc-top-k",
        type=int,
        default=24,
        help="also index the documents cut to their K heaviest terms at index time (the layout's top_k_image): "
        "exact and the first fast mode; 0 leaves it out",
    )
    parser.add_argument("--wide-dims", type=int, default=512)
    parser.add_argument("--heap-mb", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexlip-mosaics"), help="working files (indices)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.queries > args.n:
        parser.error("--queries cannot exceed --n")
    settings = Settings.from_env()

    clock = time.monotonic()
    ckpt, data_json = checkpoint(args, settings)
    emoji, tokens, names, encoder = encode(ckpt, data_json)
    corpus = build_mosaics(emoji, tokens, args.n, np.random.default_rng(SEED))
    texts = [query_text([names[m] for m in corpus.members[q]]) for q in range(args.queries)]
    vocab = encoder.vocab
    queries = [v.to_features(vocab, escape=False) for v in encoder.encode_queries(texts, scale=100.0, top_k=48)]
    step("encode emoji, build mosaics, encode queries", clock)

    clock = time.monotonic()
    exact = exact_top(corpus, queries, {t: c for c, t in enumerate(tokens)})
    step("exact top 10 (scipy)", clock)
    bench = Bench(args, settings)
    clock = time.monotonic()
    bench.rows.append(wide_flat_row(args.n, args.queries, args.wide_dims))
    step("flat scan", clock)
    bench.anserini(corpus, queries, exact)
    shares = encoder.query_weights.shares() if encoder.query_weights is not None else None
    bench.engines(corpus, queries, str(encoder.model_id), exact, shares)
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "LexLIP model": f"{encoder.model_id} ({ckpt})",
        "emoji lexicons": f"{emoji.shape[0]:,}, {emoji.nnz / emoji.shape[0]:.1f} terms each",
        "lexicon shape": shape_of(corpus, queries),
        "example queries": texts[:3],
        "step seconds": STEPS,
    }
    write_results(args, bench.rows, header)


if __name__ == "__main__":
    main()
