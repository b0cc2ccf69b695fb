"""Images per second through the whole Celery path on this machine, and where the workers' time goes.

    .venv/bin/python benchmarks/ingest_throughput.py [--images 2000] [--workers 2] [--models tiny,small]

Starts Redis and an OpenSearch node, generates `shapes` images (64 px PNGs), saves an untrained checkpoint of each
model size (throughput does not depend on the weights), starts `lexlip worker` processes (one CPU thread each) and
runs the producer over a JSONL manifest with one caption per image. Reports end-to-end images/s (producer start to
the last batch indexed and refreshed) and the workers' summed seconds in decode, encode (images + captions) and
bulk. Writes benchmarks/results/ingest.md and ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from shapes_common import header, write

from ingest.app import create_app
from ingest.local import start_worker
from ingest.producer import run_ingest
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.redis import start_redis
from lexlip_es.mapping import IndexOptions
from lexlip_es.settings import Settings
from trainer.data.datasets import load_pairs
from trainer.data.shapes import generate_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    settings = Settings.from_env()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lexlip-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        pairs = load_pairs(generate_shapes(tmp / "shapes", args.images, 0, 0, seed=11), "train")
        manifest = tmp / "manifest.jsonl"
        manifest.write_text(
            "".join(json.dumps({"id": p.image_id, "image": p.image, "captions": [p.captions[0]]}) + "\n" for p in pairs)
        )
        redis, opensearch = start_redis(settings), start_opensearch(settings)
        env = {**os.environ, "LEXLIP_REDIS_URL": redis.url, "LEXLIP_OPENSEARCH_URL": opensearch.url}
        app = create_app(Settings.from_env(env))
        try:
            from opensearchpy import OpenSearch

            client = OpenSearch(opensearch.url, timeout=60)
            for model in args.models.split(","):
                checkpoint = LexLIPEncoder.from_config(model).save_pretrained(tmp / model)
                workers = [start_worker(f"bench{n}", env, tmp / f"w{n}.log") for n in range(args.workers)]
                try:
                    tally = run_ingest(
                        app,
                        client,
                        manifest,
                        f"bench-{model}",
                        checkpoint,
                        batch_size=args.batch_size,
                        options=IndexOptions(replicas=0),
                        resume=False,
                    )
                finally:
                    for worker in workers:
                        worker.stop()
                if not tally.ok:
                    raise RuntimeError(f"{len(tally.failed)} items failed: {list(tally.failed.items())[:3]}")
                busy = sum(tally.stage_seconds.values())
                rows.append(
                    {
                        "model": model,
                        "images": tally.indexed,
                        "seconds": tally.seconds,
                        "images_per_s": tally.indexed / tally.seconds,
                        **{f"{k}_s": v for k, v in tally.stage_seconds.items()},
                        **{f"{k}_share": v / busy for k, v in tally.stage_seconds.items()},
                    }
                )
        finally:
            opensearch.stop()
            redis.stop()
    lines = [
        f"# Celery ingestion: {args.images} shapes images, {args.workers} worker processes (1 CPU thread each)",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- batch {args.batch_size}; one caption per image; OpenSearch 1 node, 512 MB heap; Redis broker",
        "",
        "| model | images | wall (s) | images/s end to end | decode | encode | bulk |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['decode_s']:.1f} s ({100 * r['decode_share']:.0f}%) | {r['encode_s']:.1f} s "
            f"({100 * r['encode_share']:.0f}%) | {r['bulk_s']:.1f} s ({100 * r['bulk_share']:.0f}%) |"
            for r in rows
        ),
        "",
        "Stage seconds are summed over the workers' batches; they add up to about workers x wall time.",
    ]
    write("ingest", {"header": header(), "settings": vars(args), "rows": rows}, lines)


if __name__ == "__main__":
    main()
