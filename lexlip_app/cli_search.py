"""`lexlip index`, `lexlip search` and `lexlip parity`: the commands that talk to a search cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lexlip_app.parsers import command
from lexlip_es.errors import LexlipError
from lexlip_es.hybrid import DEFAULT_HYBRID_WEIGHT, DEFAULT_TEXT_FIELDS
from lexlip_es.mapping import FIELD_TYPES
from lexlip_es.settings import Settings

if TYPE_CHECKING:
    from lexlip_es.parity import ParityReport


def client_for(settings: Settings, url: str | None, what: str) -> Any:
    """The CLI's client for this run's engine (`lexlip_es.connect`); library callers pass theirs."""
    from lexlip_es.connect import engine_client

    try:
        return engine_client(settings, url, timeout=30)
    except LexlipError as exc:
        raise LexlipError(f"{what} needs a cluster: pass --url or {exc}") from None


def text_encoder(checkpoint: str | Path | None) -> Any:
    """ONNX Runtime when the checkpoint holds an export (no torch at query time), else the torch encoder."""
    if not checkpoint:
        raise LexlipError("searching by text needs a checkpoint: pass --checkpoint or set LEXLIP_CHECKPOINT")
    from lexlip_es.encoders.loading import load_encoder

    return load_encoder(checkpoint)


def _cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.fast import fast_mode_for
    from lexlip_es.hybrid import Hybrid, parse_fields
    from lexlip_es.search import LexSearch, check_text

    check_text(args.text, settings.max_query_chars)
    hybrid = None if args.hybrid is None else Hybrid(weight=args.hybrid, fields=parse_fields(args.text_fields))
    client = client_for(settings, args.url, "lexlip search")
    encoder = text_encoder(args.checkpoint or settings.checkpoint)
    search = LexSearch(
        client,
        args.index,
        text_encoder=encoder,
        max_query_chars=settings.max_query_chars,
        hybrid=hybrid,
        fast=None if args.exact else fast_mode_for(encoder),
    )
    hits = search.search_text(args.text, k=args.k)
    if not hits:
        print("no matching images")
        return 0
    from lexlip_app.hits import hit_views, table

    print("\n".join(table(hit_views(search, hits), args.tokens)))
    return 0


def _cmd_index_create(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.indices import create_index
    from lexlip_es.mapping import IndexOptions, LexiconLayout

    layout = LexiconLayout(
        args.model_id,
        scale=args.scale,
        top_k_image=args.top_k_image,
        top_k_text=args.top_k_text,
        exclude_lexicons_from_source=args.exclude_lexicons_from_source,
        field_type=args.field_type,
    )
    metadata = json.loads(args.metadata) if args.metadata else {}
    options = IndexOptions(shards=args.shards, replicas=args.replicas, metadata_properties=metadata)
    create_index(client_for(settings, args.url, "lexlip index create"), args.index, layout, options)
    print(f"created {args.index} for model {args.model_id}")
    return 0


def _cmd_parity(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.parity import load_vectors, run_parity

    report = run_parity(
        load_vectors(args.corpus), load_vectors(args.queries), settings, k=args.k, engines=args.engines.split(",")
    )
    return _print_report(report, args.report)


def _cmd_smoke(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.parity import run_parity, smoke_corpus

    documents, queries = smoke_corpus().vectors()
    report = run_parity(documents, queries, settings, k=len(documents), engines=args.engines.split(","))
    return _print_report(report, args.report)


def _print_report(report: ParityReport, to: str | None) -> int:
    markdown = report.markdown()
    print(markdown)
    if to:
        path = Path(to)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown)
        path.with_suffix(".json").write_text(json.dumps(report.to_json(), indent=2))
        print(f"report: {path} and {path.with_suffix('.json')}")
    return 0 if report.ok else 1


def _cmd_data_zipf(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.parity import write_vectors, zipf_vectors

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    docs = zipf_vectors(args.docs, (args.min_terms, args.max_terms), big_fraction=args.big_fraction, seed=args.seed)
    queries = zipf_vectors(args.queries, (5, 40), big_fraction=0.0, seed=args.seed + 1, prefix="q")
    write_vectors(out / "corpus.jsonl", docs)
    write_vectors(out / "queries.jsonl", queries)
    print(f"wrote {out / 'corpus.jsonl'} ({len(docs)} documents) and {out / 'queries.jsonl'} ({len(queries)} queries)")
    return 0


def add_commands(commands: Any, data_cmds: Any) -> None:
    zipf = command(
        data_cmds,
        "zipf",
        _cmd_data_zipf,
        help="synthetic lexicon vectors for the parity harness",
        description="Documents and queries with Zipf-distributed terms and LexLIP-like integer weights.",
    )
    zipf.add_argument("--out", required=True)
    zipf.add_argument("--docs", type=int, default=10000)
    zipf.add_argument("--queries", type=int, default=1000)
    zipf.add_argument("--min-terms", type=int, default=20)
    zipf.add_argument("--max-terms", type=int, default=200)
    zipf.add_argument("--big-fraction", type=float, default=0.002, help="share of rare-term weights pushed above 511")
    zipf.add_argument("--seed", type=int, default=0)

    index = commands.add_parser("index", help="manage LexLIP indices", description="Manage LexLIP indices.")
    index_cmds = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    create = index_cmds.add_parser(
        "create", help="create a LexLIP index", description="Create an index with the LexLIP mapping and _meta."
    )
    create.add_argument("index")
    create.add_argument("--model-id", required=True)
    create.add_argument("--scale", type=float, default=100.0)
    create.add_argument("--top-k-image", type=int, default=128)
    create.add_argument("--top-k-text", type=int, default=48)
    create.add_argument("--shards", type=int, default=1)
    create.add_argument("--replicas", type=int, default=1)
    create.add_argument("--exclude-lexicons-from-source", action="store_true")
    create.add_argument(
        "--field-type",
        choices=FIELD_TYPES,
        default="rank_features",
        help="rank_features (default), impact (OpenSearch: exact integer weights, smaller index), sparse_vector (ES)",
    )
    create.add_argument("--metadata", help='JSON of your own field mappings, e.g. {"caption": {"type": "text"}}')
    create.add_argument("--url", help="cluster URL (default: the URL of the engine LEXLIP_ENGINE chooses)")
    create.set_defaults(func=_cmd_index_create)

    search = command(
        commands,
        "search",
        _cmd_search,
        help="search images by text",
        description="Encode a text with a checkpoint and print the top images with their matching tokens.",
    )
    search.add_argument("text")
    search.add_argument("--index", required=True)
    search.add_argument("--checkpoint", help="checkpoint folder (default LEXLIP_CHECKPOINT)")
    search.add_argument("--url", help="cluster URL (default: the URL of the engine LEXLIP_ENGINE chooses)")
    search.add_argument("-k", "--k", type=int, default=10)
    search.add_argument("--tokens", type=int, default=5, help="matching tokens shown per hit")
    search.add_argument(
        "--hybrid",
        type=float,
        nargs="?",
        const=DEFAULT_HYBRID_WEIGHT,
        metavar="WEIGHT",
        help="add a BM25 match of the query's words over --text-fields, each BM25 point worth WEIGHT of the "
        f"lexicons' dot product (default {DEFAULT_HYBRID_WEIGHT}; 0: the lexicon alone)",
    )
    search.add_argument(
        "--text-fields", default=",".join(DEFAULT_TEXT_FIELDS), help="comma-separated text fields for --hybrid"
    )
    search.add_argument(
        "--exact",
        action="store_true",
        help="exact mode (every query term walks its postings) instead of fast mode's rare-term head (used when the "
        "checkpoint has query weights)",
    )

    parity = command(
        commands,
        "parity",
        _cmd_parity,
        help="compare OpenSearch, Elasticsearch, Anserini and the exact scorer",
        description="Index the same vectors everywhere, run the same queries, report every mismatch. Engines come "
        "from LEXLIP_OPENSEARCH_URL / LEXLIP_ELASTICSEARCH_URL or are started locally.",
    )
    parity.add_argument("--corpus", required=True, help='JSONL of {"id": ..., "vector": {token: int}}')
    parity.add_argument("--queries", required=True, help="JSONL of the same shape")
    parity.add_argument("--k", type=int, default=10)
    parity.add_argument("--engines", default="opensearch,opensearch-impact,elasticsearch,anserini")
    parity.add_argument("--report", help="write the markdown report here (and the JSON beside it)")

    smoke = command(
        commands,
        "smoke",
        _cmd_smoke,
        help="the parity harness on the 20-vector smoke corpus (dots, percent signs, weights > 511)",
        description="Index the smoke corpus into OpenSearch and Anserini (started here unless LEXLIP_OPENSEARCH_URL "
        "is set), run its queries, report every score that differs from the exact integer dot product.",
    )
    smoke.add_argument("--engines", default="opensearch,anserini")
    smoke.add_argument("--report", help="write the markdown report here (and the JSON beside it)")
