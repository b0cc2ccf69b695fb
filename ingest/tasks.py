"""Celery tasks. `ingest_batch` encodes and indexes one batch; `health` proves a worker is alive.

Each worker process keeps its encoder, clients, index layouts and memory watchdog on the task object (Celery builds
one task object per process), so a checkpoint is loaded once per process, not once per batch; a new child loads
`LEXLIP_CHECKPOINT` before its first batch, outside any batch's time limit.

A batch's tries: every delivery is counted in its progress record (`ingest.broker.Progress`), so a batch whose
worker died skips the item it died on; documents the engine did not take are retried alone (never re-downloaded or
re-encoded) with backoff until `LEXLIP_ENGINE_WAIT_S`; items not reached before the batch's deadline go to a retry
at once. The result the producer reads is the last try's, carrying what the earlier ones did (`done`).
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_process_init

import lexlip_es
from ingest.app import DEFAULT_REDIS_URL, app
from ingest.broker import Progress, RedisLike, connect
from ingest.pipeline import STAGES, BatchResult, process_batch
from ingest.watchdog import MemoryWatchdog
from lexlip_es.errors import EngineUnavailableError, MappingError
from lexlip_es.settings import Settings


class IngestTask(Task):  # type: ignore[misc]
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.encoders: dict[str, Any] = {}
        self.client: Any = None
        self.layouts: dict[str, Any] = {}
        self.redis: RedisLike | None = None
        self.watchdog: MemoryWatchdog | None = None

    def setup(self) -> Settings:
        if self.settings is None:
            self.settings = Settings.from_env()
            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
            if self.settings.worker_memory_mb:
                self.watchdog = MemoryWatchdog(self.settings.worker_memory_mb << 20).start()
        return self.settings

    def encoder(self, checkpoint: str) -> Any:
        if checkpoint not in self.encoders:
            from lexlip_es.encoders.documents_runtime import document_encoder

            self.encoders[checkpoint] = document_encoder(checkpoint, self.setup())
        return self.encoders[checkpoint]

    def search_client(self) -> Any:
        """OpenSearch or Elasticsearch, as `lexlip_es.connect` chooses from the worker's settings."""
        if self.client is None:
            from lexlip_es.connect import engine_client

            self.client = engine_client(self.setup(), timeout=60, max_retries=1)
        return self.client

    def broker(self) -> RedisLike:
        if self.redis is None:
            self.redis = connect(self.setup().redis_url or DEFAULT_REDIS_URL)
        return self.redis

    def layout(self, index: str, model_id: str) -> Any:
        """The index's layout, read again once if the index was rebuilt for another model since it was read."""
        from lexlip_es.indices import read_layout

        if index not in self.layouts or self.layouts[index].model_id != model_id:
            self.layouts[index] = read_layout(self.search_client(), index)
        layout = self.layouts[index]
        if layout.model_id != model_id:
            raise MappingError(f"{index!r} holds vectors of model {layout.model_id!r}; the worker's is {model_id!r}")
        return layout

    def watch(self, progress: Progress | None) -> None:
        if self.watchdog is not None:
            self.watchdog.watch(progress)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _preload(**_: Any) -> None:
    task = app.tasks["lexlip.ingest_batch"]
    settings = task.setup()
    if settings.checkpoint:
        task.encoder(str(Path(settings.checkpoint).resolve()))


@app.task(name="lexlip.health")  # type: ignore[untyped-decorator]
def health(echo: str = "") -> dict[str, Any]:
    return {"echo": echo, "pid": os.getpid(), "host": socket.gethostname(), "lexlip_es": lexlip_es.__version__}


@app.task(bind=True, base=IngestTask, name="lexlip.ingest_batch", max_retries=None)  # type: ignore[untyped-decorator]
def ingest_batch(
    self: IngestTask,
    index: str,
    items: list[dict[str, Any]],
    checkpoint: str,
    documents: list[dict[str, Any]] | None = None,
    done: dict[str, Any] | None = None,
    engine_since: float | None = None,
) -> dict[str, Any]:
    """Encode and index `items` (and write `documents` left by an earlier try) into `index`; returns indexed ids,
    failed ids with reasons (naming their lines), seconds per stage and how many deliveries the batch took."""
    from ingest.fetch import FetchPolicy, fetch_image_bytes
    from lexlip_es.bulk import BulkWriter

    settings = self.setup()
    progress = Progress(self.broker(), self.request.id)
    delivery = progress.start()
    done = _merge(done, None, delivery.number)
    encoder = self.encoder(checkpoint)
    try:
        layout = self.layout(index, encoder.model_id)
    except EngineUnavailableError as exc:  # the engine is down: try the whole batch again later
        return _again(self, progress, index, checkpoint, items, documents or [], done, engine_since, str(exc))
    policy = FetchPolicy(
        settings.max_image_bytes,
        settings.url_timeout_s,
        allow_private=settings.allow_private_urls,
        deadline_s=settings.url_deadline_s,
    )
    writer = BulkWriter(self.search_client(), index, layout, retry_rounds=1, max_backoff=5.0)
    self.watch(progress)
    try:
        result = process_batch(
            items,
            encoder,
            layout,
            writer,
            lambda url: fetch_image_bytes(url, policy),
            settings.max_image_bytes,
            progress=progress,
            delivery=delivery,
            deadline=time.monotonic() + settings.visibility_timeout_s / 2,
            documents=documents or [],
        )
    finally:
        self.watch(None)
    done = _merge(done, result, delivery.number)
    if result.unwritten or result.unprocessed:
        reason = result.unwritten_reason
        return _again(
            self, progress, index, checkpoint, result.unprocessed, result.unwritten, done, engine_since, reason
        )
    progress.finish()
    return done | {"pid": os.getpid()}


def _merge(done: dict[str, Any] | None, result: BatchResult | None, deliveries: int) -> dict[str, Any]:
    done = done or {}
    indexed: list[str] = list(done.get("indexed", []))
    failed: dict[str, str] = dict(done.get("failed", {}))
    seconds: dict[str, float] = dict(done.get("seconds", dict.fromkeys(STAGES, 0.0)))
    if result is not None:
        indexed.extend(result.indexed)
        failed.update(result.failed)
        for stage, spent in result.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + spent
    return {
        "indexed": indexed,
        "failed": failed,
        "seconds": seconds,
        "deliveries": max(int(done.get("deliveries", 1)), deliveries),
    }


def _again(
    task: IngestTask,
    progress: Progress,
    index: str,
    checkpoint: str,
    items: list[dict[str, Any]],
    documents: list[dict[str, Any]],
    done: dict[str, Any],
    engine_since: float | None,
    reason: str,
) -> dict[str, Any]:
    """Hand what is left to a retry of this task (same id): documents after a backoff, items at once. Documents the
    engine has not taken for `engine_wait_s` fail instead."""
    settings = task.setup()
    now = time.time()
    countdown = 0.0
    if documents or (items and reason):
        engine_since = engine_since or now
        if now - engine_since > settings.engine_wait_s:
            why = f"the engine did not take it for {settings.engine_wait_s:.0f} s ({reason})"
            done["failed"].update({d["id"]: f"{_line(d)}{why}" for d in documents})
            done["failed"].update({str(i.get("id")): f"{_line(i)}{why}" for i in items})
            progress.finish()
            return done | {"pid": os.getpid()}
        attempt = task.request.retries
        ceiling = min(60.0, 2.0 ** min(attempt + 1, 6))
        countdown = random.uniform(ceiling / 2, ceiling)
    progress.finish()
    raise task.retry(
        args=(index, items, checkpoint),
        kwargs={"documents": documents, "done": done, "engine_since": engine_since},
        countdown=countdown,
        max_retries=None,
    )


def _line(data: dict[str, Any]) -> str:
    line = data.get("line")
    return f"line {line}: " if isinstance(line, int) else ""
