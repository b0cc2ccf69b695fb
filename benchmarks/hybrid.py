"""Hybrid search measured: the lexicon alone, BM25 alone, and the two in one request at several weights.

    .venv/bin/python benchmarks/hybrid.py [--data emoji,shapes] [--weights 0.01,0.03,0.1,0.3,1]

Each data set's demo checkpoint (trained into the cache once, as `lexlip demo` does) encodes the test images; the
documents go into a real OpenSearch node (LEXLIP_OPENSEARCH_URL, else a local one started here) with their image
lexicon and one text field of their own, `title`. The queries are the other captions, so BM25 never sees the query
itself in the document (a document holding its query verbatim would make BM25 look perfect):
- emoji `name`: the title is the emoji's name (caption 0); queries are captions 1, 3 and 4 ("a cat emoji",
  "animal mammal: cat", "animals emoji: cat, ..."), which mostly repeat the name: a catalogue whose titles share
  words with what people type.
- emoji `tags`: the title is its CLDR keywords (caption 2; the name's own words are left out of them); same queries:
  a catalogue whose own text only loosely fits the queries.
- shapes: the title is the first description; queries are the other four.
Every query runs through `LexSearch`'s request path (`search_text`'s body with `hybrid=`), top 10; recall is the
share of queries whose image is in the top k. Writes benchmarks/results/hybrid.md and hybrid.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shapes_common import RESULTS, header

from lexlip_app.demo import DATASETS, demo_checkpoint, manifest_rows
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.hybrid import DEFAULT_HYBRID_WEIGHT, Hybrid
from lexlip_es.indices import create_index
from lexlip_es.mapping import IMAGE_FIELD, IndexOptions, LexiconLayout
from lexlip_es.search import LexSearch
from lexlip_es.settings import Settings

KS = (1, 5, 10)
INDEX = "lexlip-hybrid-bench"


@dataclass(frozen=True)
class Variant:
    """One measured setting: a data set, the caption that becomes the document's title, the captions queried."""

    name: str
    data: str
    title: int
    queries: tuple[int, ...]


VARIANTS = {
    "emoji": (
        Variant("emoji, title = name", "emoji", 0, (1, 3, 4)),
        Variant("emoji, title = tags", "emoji", 2, (1, 3, 4)),
    ),
    "shapes": (Variant("shapes, title = first caption", "shapes", 0, (1, 2, 3, 4)),),
}


@contextmanager
def opensearch(settings: Settings) -> Iterator[str]:
    if settings.opensearch_url:
        yield settings.opensearch_url
        return
    from lexlip_es.local.opensearch import start_opensearch

    node = start_opensearch(settings)
    try:
        yield node.url
    finally:
        node.stop()


def index_variant(client: Any, encoder: LexLIPEncoder, rows: list[dict[str, Any]], variant: Variant) -> LexiconLayout:
    from lexlip_es.bulk import LexiconDocument, write_documents

    layout = LexiconLayout(encoder.model_id)
    if client.indices.exists(index=INDEX):
        client.indices.delete(index=INDEX)
    create_index(client, INDEX, layout, IndexOptions(replicas=0, metadata_properties={"title": {"type": "text"}}))
    vectors = encoder.encode_images([r["image"] for r in rows], scale=layout.scale, top_k=layout.top_k_image)
    docs = [
        LexiconDocument(
            r["id"], image=v.to_features(encoder.vocab, escape=False), metadata={"title": title(r, variant)}
        )
        for r, v in zip(rows, vectors, strict=True)
    ]
    report = write_documents(client, INDEX, docs, layout, refresh="wait_for")
    if not report.ok:
        raise RuntimeError(f"indexing failed: {report.errors[:3]}")
    return layout


def title(row: dict[str, Any], variant: Variant) -> str:
    captions = row["captions"]
    return captions[variant.title] if variant.title < len(captions) else ""


def queries(rows: list[dict[str, Any]], variant: Variant) -> list[tuple[str, str]]:
    return [(r["id"], r["captions"][i]) for r in rows for i in variant.queries if i < len(r["captions"])]


def modes(weights: Sequence[float]) -> list[tuple[str, Hybrid]]:
    out = [("lexicon alone", Hybrid(weight=0.0, fields=("title",)))]
    out.append(("BM25 alone", Hybrid(weight=1.0, fields=("title",), lexicon_weight=0.0)))
    out += [(f"hybrid, weight {w:g}", Hybrid(weight=w, fields=("title",))) for w in weights]
    return out


def measure(
    search: LexSearch,
    layout: LexiconLayout,
    pairs: list[tuple[str, str]],
    vectors: list[dict[str, float]],
    hybrid: Hybrid,
) -> dict[str, Any]:
    backend = search.backend()
    depth = max(KS)
    found = [0] * len(KS)
    started = time.monotonic()
    for (image_id, text), vector in zip(pairs, vectors, strict=True):
        lexicon = hybrid.lexicon(vector)
        clause = hybrid.text_clause(text, layout.scale)
        hits = backend.search(lexicon, depth, IMAGE_FIELD, text=clause) if lexicon or clause else []
        ids = [h.id for h in hits]
        for j, k in enumerate(KS):
            found[j] += image_id in ids[:k]
    seconds = time.monotonic() - started
    return {**{f"R@{k}": found[j] / len(pairs) for j, k in enumerate(KS)}, "ms_per_query": 1000 * seconds / len(pairs)}


def run_variant(client: Any, settings: Settings, variant: Variant, weights: Sequence[float]) -> dict[str, Any]:
    data = DATASETS[variant.data]
    data_json = data.ensure(settings)
    checkpoint = demo_checkpoint(settings, data, data_json, print)
    encoder = LexLIPEncoder.from_pretrained(checkpoint)
    rows = manifest_rows(data_json, data.name, ("test",))
    layout = index_variant(client, encoder, rows, variant)
    pairs = queries(rows, variant)
    encoded = encoder.encode_queries([t for _, t in pairs], scale=layout.scale, top_k=layout.top_k_text)
    vectors = [v.to_features(encoder.vocab, escape=False) for v in encoded]
    search = LexSearch(client, INDEX, layout=layout)
    results = []
    for label, hybrid in modes(weights):
        figures = measure(search, layout, pairs, vectors, hybrid)
        results.append({"mode": label, "weight": hybrid.weight, "lexicon_weight": hybrid.lexicon_weight, **figures})
        print(f"{variant.name:32} {label:20} " + "  ".join(f"R@{k} {figures[f'R@{k}']:.3f}" for k in KS), flush=True)
    return {
        "variant": variant.name,
        "images": len(rows),
        "queries": len(pairs),
        "checkpoint": str(checkpoint),
        "rows": results,
    }


def markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "# Hybrid search: lexicon, BM25 and both in one request",
        "",
        f"{report['header']['date']}, {report['header']['machine']}; OpenSearch, top 10 per query; "
        "`.venv/bin/python benchmarks/hybrid.py`. Score = lexicon dot product + weight x scale^2 x BM25 "
        "(`lexlip_es.Hybrid`); the title is a text field of the document, the queries are its other captions.",
        "",
        "| data, document text | images | queries | mode | R@1 | R@5 | R@10 | ms / query |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        for r in v["rows"]:
            lines.append(
                f"| {v['variant']} | {v['images']} | {v['queries']} | {r['mode']} | {r['R@1']:.3f} | {r['R@5']:.3f} "
                f"| {r['R@10']:.3f} | {r['ms_per_query']:.1f} |"
            )
    lines += ["", f"Default weight (`Hybrid()`): {DEFAULT_HYBRID_WEIGHT:g}. {report.get('choice', '')}"]
    return lines


def main() -> None:
    from opensearchpy import OpenSearch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="emoji,shapes")
    parser.add_argument("--weights", default="0.01,0.03,0.1,0.3,1")
    parser.add_argument("--choice", default="", help="a sentence on the default chosen, written under the table")
    args = parser.parse_args()
    settings = Settings.from_env()
    weights = [float(w) for w in args.weights.split(",")]
    report: dict[str, Any] = {"header": header(), "weights": weights, "variants": [], "choice": args.choice}
    with opensearch(settings) as url:
        client = OpenSearch(url, timeout=60)
        for name in args.data.split(","):
            for variant in VARIANTS[name]:
                report["variants"].append(run_variant(client, settings, variant, weights))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hybrid.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "hybrid.md").write_text("\n".join(markdown(report)) + "\n")
    print("\n".join(markdown(report)))


if __name__ == "__main__":
    main()
