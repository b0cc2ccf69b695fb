"""`lexlip ingest`, `lexlip worker` and `lexlip dead-letters`: Celery bulk ingestion from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from lexlip_app.parsers import command
from lexlip_es.errors import LexlipError
from lexlip_es.mapping import FIELD_TYPES
from lexlip_es.settings import Settings


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from ingest.app import create_app
    from ingest.producer import RunSettings, run_ingest
    from ingest.rows import RowLimits
    from lexlip_es.connect import DEFAULT_FIELD_TYPE, engine_client, engine_target
    from lexlip_es.mapping import IndexOptions

    checkpoint = args.checkpoint or settings.checkpoint
    if not checkpoint:
        raise LexlipError("ingest needs a checkpoint: pass --checkpoint or set LEXLIP_CHECKPOINT")
    flavor, _ = engine_target(settings)
    client = engine_client(settings, timeout=60)
    bar = tqdm(unit="img", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)

    def progress(tally: Any) -> None:
        bar.total = max(tally.total, tally.done)
        bar.n = tally.done
        bar.set_postfix(indexed=tally.indexed, failed=len(tally.failed), refresh=False)
        bar.refresh()

    tally = run_ingest(
        create_app(settings),
        client,
        args.manifest,
        args.index,
        checkpoint,
        batch_size=args.batch_size,
        create=not args.no_create,
        resume=not args.no_resume,
        options=IndexOptions(shards=args.shards, replicas=args.replicas),
        on_progress=progress,
        field_type=args.field_type or DEFAULT_FIELD_TYPE[flavor],
        image_root=args.image_root,
        id_prefix=args.id_prefix,
        limits=RowLimits(settings.max_row_bytes, settings.max_image_bytes),
        run_settings=RunSettings(
            args.timeout, settings.broker_wait_s, settings.lost_after_s, settings.max_dead_letters
        ),
    )
    bar.close()
    print(tally.summary())
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in tally.stage_seconds.items())
    print(f"worker time: {stages}")
    if tally.redelivered:
        print(f"{tally.redelivered} batches were delivered more than once (a worker died or the broker restarted)")
    for _, reason in sorted(tally.failed.items())[: args.show_failures]:
        print(f"  failed {reason}")
    if len(tally.failed) > args.show_failures:
        print(f"  ... and {len(tally.failed) - args.show_failures} more: lexlip dead-letters {args.index}")
    return 0 if tally.ok else 1


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.app import INGEST_QUEUE

    env = {**os.environ, "LEXLIP_DEVICE": args.device}
    if args.threads:
        env["LEXLIP_TORCH_THREADS"] = str(args.threads)
    name = args.name or f"lexlip-{uuid.uuid4().hex[:8]}@%h"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "ingest.app",
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
        f"--hostname={name}",
        f"--queues={args.queues or f'{INGEST_QUEUE},celery'}",
    ]
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def _cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.app import DEFAULT_REDIS_URL
    from ingest.deadletter import DeadLetters

    store = DeadLetters.from_url(settings.redis_url or DEFAULT_REDIS_URL, args.index, settings.max_dead_letters)
    entries = store.all()
    for entry in sorted(entries.values(), key=lambda e: (str(e.get("row", "")).rsplit(":", 1)[0], e.get("line") or 0)):
        shown = f"{entry.get('id') or '(no id)'}\t{entry['reason']}"
        print(json.dumps(entry, ensure_ascii=False) if args.json else shown)
    if not entries:
        print(f"no dead letters for {args.index}", file=sys.stderr)
    return 0


def add_commands(commands: Any) -> None:
    ingest = command(
        commands,
        "ingest",
        _cmd_ingest,
        help="encode and index a manifest through Celery workers",
        description="Stream a JSONL or CSV manifest, or a folder of images, to the workers in batches; show "
        "progress; end with a tally (exit 1 when anything failed). Running it again skips what is indexed.",
    )
    ingest.add_argument("manifest")
    ingest.add_argument("--index", required=True)
    ingest.add_argument("--checkpoint", help="checkpoint folder the workers can read (default LEXLIP_CHECKPOINT)")
    ingest.add_argument("--batch-size", type=int, default=32)
    ingest.add_argument("--no-create", action="store_true", help="fail when the index does not exist")
    ingest.add_argument("--no-resume", action="store_true", help="send every item, even those already indexed")
    ingest.add_argument("--shards", type=int, default=1)
    ingest.add_argument("--replicas", type=int, default=1)
    ingest.add_argument(
        "--field-type",
        choices=FIELD_TYPES,
        help="for a new index: rank_features (OpenSearch's default), impact (OpenSearch: exact, smaller), "
        "sparse_vector (Elasticsearch's default)",
    )
    ingest.add_argument(
        "--image-root",
        help="local image paths must lie under this folder (default: the manifest's folder); paths that leave it, "
        "directly or through a symlink, fail",
    )
    ingest.add_argument("--id-prefix", default="", help="prepended to every id (keeps two folders' ids apart)")
    ingest.add_argument("--timeout", type=float, help="give up after this many seconds")
    ingest.add_argument("--show-failures", type=int, default=20)
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")

    worker = command(
        commands,
        "worker",
        _cmd_worker,
        help="run a Celery ingest worker",
        description="`celery -A ingest.app worker` with prefork children. SIGTERM finishes the running batch; a "
        "killed worker's batch goes back to the queue (late acks).",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    worker.add_argument("--threads", type=int, help="torch CPU threads per process")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--name", help="Celery hostname (default lexlip-<random>@<host>)")
    worker.add_argument(
        "--queues",
        help="comma-separated queues to consume (default: lexlip-ingest,celery: ingest batches and the rest)",
    )

    dead = command(
        commands,
        "dead-letters",
        _cmd_dead_letters,
        help="list items that could not be ingested",
        description="Items that failed with their reasons, from the Redis dead-letter store.",
    )
    dead.add_argument("index")
    dead.add_argument("--json", action="store_true")
