"""The producer behind `lexlip ingest`: stream a manifest, skip what is already indexed, enqueue batches, tally.

Running the same manifest again is cheap: each batch's ids are looked up first (`mget`), and documents already
written by the same model are not sent to the workers again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from ingest.items import read_manifest
from lexlip_es.clients import engine_errors
from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.errors import EngineUnavailableError, IndexNotFoundError, LexlipError, MappingError
from lexlip_es.indices import create_index, read_layout
from lexlip_es.mapping import MODEL_FIELD, FieldType, IndexOptions, LexiconLayout

TASK = "lexlip.ingest_batch"


@dataclass
class Tally:
    total: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "encode": 0.0, "bulk": 0.0})

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        return (
            f"{self.total} items: {self.indexed} indexed, {self.skipped} already there, {len(self.failed)} failed "
            f"in {self.seconds:.1f} s ({rate:.1f} images/s)"
        )


def batched(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ensure_index(
    client: Any, index: str, model_id: str, options: IndexOptions, create: bool, field_type: FieldType = "rank_features"
) -> LexiconLayout:
    """The index's layout; created for `model_id` when missing (and allowed). Another model's index is refused."""
    try:
        layout = read_layout(client, index)
    except IndexNotFoundError:
        if not create:
            raise
        layout = LexiconLayout(model_id, field_type=field_type)
        create_index(client, index, layout, options)
        return layout
    if layout.model_id != model_id:
        raise MappingError(
            f"{index!r} holds vectors of model {layout.model_id!r}, not {model_id!r}: re-encode into a new index "
            "(lexlip_es.indices.create_versioned_index) and swap the alias"
        )
    return layout


def patiently(call: Callable[[], Any], what: str, index: str, wait_s: float = 120.0) -> Any:
    """`call()`, retried with backoff while the cluster is unreachable (a node restarting), up to `wait_s`."""
    deadline, delay = time.monotonic() + wait_s, 0.5
    while True:
        try:
            with engine_errors(what, index):
                return call()
        except EngineUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def already_indexed(client: Any, index: str, ids: list[str], model_id: str) -> set[str]:
    response = patiently(
        lambda: client.mget(index=index, body={"ids": ids}, _source_includes=[MODEL_FIELD]),
        f"looking up ids in {index!r}",
        index,
    )
    return {
        d["_id"] for d in response["docs"] if d.get("found") and (d.get("_source") or {}).get(MODEL_FIELD) == model_id
    }


def run_ingest(
    app: Celery,
    client: Any,
    manifest: str | Path,
    index: str,
    checkpoint: str | Path,
    *,
    batch_size: int = 32,
    create: bool = True,
    resume: bool = True,
    options: IndexOptions | None = None,
    max_in_flight: int = 64,
    timeout_s: float | None = None,
    on_progress: Callable[[Tally], None] | None = None,
    field_type: FieldType = "rank_features",
) -> Tally:
    if batch_size < 1:
        raise LexlipError(f"batch size must be at least 1, got {batch_size}")
    checkpoint = str(Path(checkpoint).resolve())
    model_id = checkpoint_model_id(checkpoint)
    ensure_index(client, index, model_id, options or IndexOptions(), create, field_type)
    tally = Tally()
    started = time.monotonic()
    pending: list[tuple[Any, list[str]]] = []

    def collect(until: int) -> None:
        """Account for finished batches; wait until at most `until` are unfinished."""
        while True:
            still = []
            for result, ids in pending:
                if result.ready():
                    _account(tally, result, ids)
                else:
                    still.append((result, ids))
            pending[:] = still
            tally.seconds = time.monotonic() - started
            if on_progress:
                on_progress(tally)
            if len(pending) <= until:
                return
            if timeout_s is not None and tally.seconds > timeout_s:
                raise LexlipError(f"ingest timed out after {timeout_s:.0f} s with {len(pending)} batches unfinished")
            time.sleep(0.2)

    for batch in batched(read_manifest(manifest), batch_size):
        tally.total += len(batch)
        if resume:
            present = already_indexed(client, index, [str(r.get("id")) for r in batch], model_id)
            tally.skipped += len(present)
            batch = [r for r in batch if str(r.get("id")) not in present]
        if batch:
            result = app.signature(TASK, args=(index, batch, checkpoint)).apply_async()
            pending.append((result, [str(r.get("id")) for r in batch]))
        collect(until=max_in_flight - 1)
    collect(until=0)
    patiently(lambda: client.indices.refresh(index=index), f"refreshing {index!r}", index)
    tally.seconds = time.monotonic() - started
    return tally


def _account(tally: Tally, result: Any, ids: list[str]) -> None:
    outcome = result.get(propagate=False)
    if result.successful() and isinstance(outcome, dict):
        tally.indexed += len(outcome["indexed"])
        tally.failed.update(outcome["failed"])
        for stage, seconds in outcome.get("seconds", {}).items():
            tally.stage_seconds[stage] = tally.stage_seconds.get(stage, 0.0) + seconds
    else:
        reason = " ".join(str(outcome).split())[:300]
        tally.failed.update({i: f"batch failed: {reason}" for i in ids})
    result.forget()
