"""Celery tasks. `ingest_batch` encodes and indexes one batch; `health` proves a worker is alive.

Each worker process keeps its encoder, search client and index layouts on the task object (Celery builds one task
object per process), so a checkpoint is loaded once per process, not once per batch.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Task

import lexlip_es
from ingest.app import DEFAULT_REDIS_URL, app
from ingest.deadletter import DeadLetters
from ingest.pipeline import TransientIngestError, process_batch
from lexlip_es.errors import EngineUnavailableError, LexlipError, MappingError
from lexlip_es.settings import Settings


class IngestTask(Task):  # type: ignore[misc]
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.encoders: dict[str, Any] = {}
        self.client: Any = None
        self.layouts: dict[str, Any] = {}

    def setup(self) -> Settings:
        if self.settings is None:
            self.settings = Settings.from_env()
            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
        return self.settings

    def encoder(self, checkpoint: str) -> Any:
        if checkpoint not in self.encoders:
            from lexlip_es.encoders.lexlip import LexLIPEncoder

            settings = self.setup()
            self.encoders[checkpoint] = LexLIPEncoder.from_pretrained(checkpoint, device=settings.device)
        return self.encoders[checkpoint]

    def search_client(self) -> Any:
        if self.client is None:
            settings = self.setup()
            if not settings.opensearch_url:
                raise LexlipError("ingest workers need LEXLIP_OPENSEARCH_URL")
            from opensearchpy import OpenSearch

            self.client = OpenSearch(settings.opensearch_url, timeout=60, max_retries=2, retry_on_timeout=True)
        return self.client

    def layout(self, index: str) -> Any:
        if index not in self.layouts:
            from lexlip_es.indices import read_layout

            self.layouts[index] = read_layout(self.search_client(), index)
        return self.layouts[index]


@app.task(name="lexlip.health")  # type: ignore[untyped-decorator]
def health(echo: str = "") -> dict[str, Any]:
    return {"echo": echo, "pid": os.getpid(), "host": socket.gethostname(), "lexlip_es": lexlip_es.__version__}


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    base=IngestTask,
    name="lexlip.ingest_batch",
    autoretry_for=(TransientIngestError, EngineUnavailableError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=12,
)
def ingest_batch(self: IngestTask, index: str, items: list[dict[str, Any]], checkpoint: str) -> dict[str, Any]:
    """Encode and index `items` into `index`; returns indexed ids, failed ids with reasons, and seconds per stage."""
    from ingest.fetch import FetchPolicy, fetch_image_bytes
    from lexlip_es.bulk import BulkWriter

    settings = self.setup()
    encoder = self.encoder(checkpoint)
    layout = self.layout(index)
    if encoder.model_id != layout.model_id:  # the index may have been rebuilt since this process read it
        self.layouts.pop(index)
        layout = self.layout(index)
    if encoder.model_id != layout.model_id:
        raise MappingError(
            f"{index!r} holds vectors of model {layout.model_id!r}; the worker's checkpoint is {encoder.model_id!r}"
        )
    policy = FetchPolicy(settings.max_image_bytes, settings.url_timeout_s, allow_private=settings.allow_private_urls)
    writer = BulkWriter(self.search_client(), index, layout, retry_rounds=3)
    result = process_batch(
        items, encoder, layout, writer, lambda url: fetch_image_bytes(url, policy), settings.max_image_bytes
    )
    dead = DeadLetters.from_url(settings.redis_url or DEFAULT_REDIS_URL, index)
    dead.add(result.failed, {str(i.get("id")): str(i.get("image", "")) for i in items})
    dead.clear(result.indexed)
    return result.to_json() | {"pid": os.getpid()}
