"""The producer behind `lexlip ingest`: read rows, check them, skip what is indexed, enqueue batches, account.

The stages, each a small function: `read_manifest` (numbered rows) -> `RowChecker.check` (a message or a reason
naming the line) -> `batches` (by count and bytes) -> `Run.skip_indexed` (`mget`: same model and same row
fingerprint) -> `Run.submit` -> `Run.collect` (finished, failed or lost batches, row by row). Every row ends in
exactly one of indexed, already there or failed, so `indexed + already there + failed = rows`; failures are keyed by
line and written to the dead-letter store.

Broker faults: a short Redis outage is waited out (submitting and polling retry for `broker_wait_s`); a Redis
restart is noticed by its run id, and a batch that Redis no longer holds, no worker is running and no result came
for is reported lost after `lost_after_s` (running the manifest again sends it again). The producer never waits
forever on a batch that no longer exists.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from ingest import broker
from ingest.app import INGEST_QUEUE
from ingest.deadletter import DeadLetter, DeadLetters, row_key
from ingest.manifest import read_manifest
from ingest.pipeline import STAGES
from ingest.rows import ROW_FIELD, CheckedRow, RowChecker, RowLimits
from lexlip_es.clients import engine_errors, mget_request
from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.errors import EngineUnavailableError, IndexNotFoundError, LexlipError, MappingError
from lexlip_es.indices import create_index, read_layout
from lexlip_es.mapping import MODEL_FIELD, FieldType, IndexOptions, LexiconLayout

TASK = "lexlip.ingest_batch"
INGEST_PROPERTIES: dict[str, Any] = {
    "image": {"type": "keyword", "index": False, "ignore_above": 4096},
    "captions": {"type": "text"},
    ROW_FIELD: {"type": "keyword"},
}
"""Fields the ingest pipeline writes beside the lexicons, mapped up front: a row cannot turn them into objects."""


@dataclass
class Tally:
    total: int = 0
    indexed: int = 0
    replaced: int = 0
    """Of `indexed`: rows whose id held a document made from other content (a changed row, or an id reused)."""
    skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    """Line -> reason."""
    redelivered: int = 0
    """Batches a worker took more than once (its worker died or the broker handed it out again)."""
    max_deliveries: int = 0
    """The most deliveries any one batch took."""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def done(self) -> int:
        return self.indexed + self.skipped + len(self.failed)

    def summary(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        replaced = f" ({self.replaced} replacing older content)" if self.replaced else ""
        return (
            f"{self.total} rows: {self.indexed} indexed{replaced}, {self.skipped} already there, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s ({rate:.1f} images/s)"
        )


@dataclass
class Batch:
    """One enqueued batch: its Celery result and, per id, the line it came from and whether it replaces content."""

    result: Any
    lines: dict[str, int]
    replacing: set[str]
    sources: dict[str, str]
    missing_since: float | None = None


def batches(rows: Iterable[CheckedRow], size: int, max_bytes: int) -> Iterator[list[CheckedRow]]:
    """Passing rows in batches of at most `size` rows and `max_bytes` of messages (failed rows pass straight on,
    each alone, to be accounted)."""
    batch: list[CheckedRow] = []
    used = 0
    for row in rows:
        if not row.ok:
            yield [row]
            continue
        if batch and (len(batch) == size or used + row.size > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(row)
        used += row.size
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
        properties = {**INGEST_PROPERTIES, **options.metadata_properties}
        create_index(client, index, layout, IndexOptions(**{**options.__dict__, "metadata_properties": properties}))
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


def indexed_rows(client: Any, index: str, ids: list[str], model_id: str) -> dict[str, str | None]:
    """For each id with a document by `model_id`: the row fingerprint it was made from (None for older documents)."""
    request = mget_request(client, index, ids, [MODEL_FIELD, ROW_FIELD])
    response = patiently(lambda: client.mget(**request), f"looking up ids in {index!r}", index)
    found: dict[str, str | None] = {}
    for doc in response["docs"]:
        source = doc.get("_source") or {}
        if doc.get("found") and source.get(MODEL_FIELD) == model_id:
            found[doc["_id"]] = source.get(ROW_FIELD)
    return found


def _broker_errors() -> tuple[type[BaseException], ...]:
    import redis
    from kombu.exceptions import OperationalError

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError, ConnectionError)


class Run:
    """One `run_ingest`: the pending batches and the tally, with the broker checks between them."""

    def __init__(
        self,
        app: Celery,
        client: Any,
        index: str,
        checkpoint: str,
        model_id: str,
        settings: RunSettings,
        manifest: str,
    ) -> None:
        self.app, self.client, self.index, self.checkpoint, self.model_id = app, client, index, checkpoint, model_id
        self.manifest = manifest
        self.settings = settings
        self.tally = Tally()
        self.pending: list[Batch] = []
        self.started = time.monotonic()
        self.redis = broker.connect(app.conf.broker_url)
        self.dead = DeadLetters(self.redis, index, settings.max_dead_letters)
        self.errors = _broker_errors()
        self.outage_since: float | None = None
        self.run_id: str | None = None
        self.restarted = False
        self.broker_gone = False
        self.gone_because = ""

    # --- accounting -------------------------------------------------------------------------------------------------
    def fail(self, line: int, reason: str, item_id: str | None = None, source: str | None = None) -> None:
        self.tally.failed[line] = reason
        letter = DeadLetter(row_key(self.manifest, line), reason, item_id, line, source)
        self._dead(lambda: self.dead.add([letter]))

    def indexed(self, batch: Batch, ids: Iterable[str]) -> None:
        done = list(ids)
        self.tally.indexed += len(done)
        self.tally.replaced += sum(i in batch.replacing for i in done)
        self._dead(lambda: self.dead.clear(row_key(self.manifest, batch.lines[i]) for i in done))

    def _dead(self, write: Callable[[], None]) -> None:
        """Dead letters are best effort while the broker is away: the tally (and exit code) still carry them."""
        if self.broker_gone:
            return
        with contextlib.suppress(*self.errors):
            write()

    # --- sending ----------------------------------------------------------------------------------------------------
    def skip_indexed(self, rows: list[CheckedRow]) -> tuple[list[CheckedRow], set[str]]:
        """The rows still to send, and which of them replace a document made from other content."""
        ids = [r.id for r in rows if r.id is not None]
        stored = indexed_rows(self.client, self.index, ids, self.model_id)
        send, replacing = [], set()
        for row in rows:
            assert row.id is not None and row.message is not None
            if row.id in stored and stored[row.id] == row.message["row"]:
                self.tally.skipped += 1
                continue
            if row.id in stored:
                replacing.add(row.id)
            send.append(row)
        return send, replacing

    def submit(self, rows: list[CheckedRow], replacing: set[str]) -> None:
        messages = [r.message for r in rows]
        lines = {str(r.id): r.line for r in rows}
        sources = {str(r.id): str((r.message or {}).get("image", "(inline)")) for r in rows}
        if self.broker_gone:
            for row in rows:
                self.fail(row.line, self._gone_reason(row.line, "not sent"), row.id, sources[str(row.id)])
            return
        signature = self.app.signature(TASK, args=(self.index, messages, self.checkpoint))
        while True:
            try:
                result = signature.apply_async()
                self._broker_ok()
                break
            except self.errors as exc:
                if self._broker_down(exc):
                    for row in rows:
                        self.fail(row.line, self._gone_reason(row.line, "not sent"), row.id, sources[str(row.id)])
                    return
        self.pending.append(Batch(result, lines, replacing, sources))

    # --- collecting -------------------------------------------------------------------------------------------------
    def collect(self, until: int, on_progress: Callable[[Tally], None] | None) -> None:
        """Account for finished batches; wait until at most `until` are unfinished."""
        while True:
            try:
                self._check_restart()
                held = self._held() if self.restarted else set()
                self.pending = [b for b in self.pending if not self._settled(b, held)]
                self._broker_ok()
            except self.errors as exc:
                if self._broker_down(exc):
                    self._abandon_pending()
            self.tally.seconds = time.monotonic() - self.started
            if on_progress:
                on_progress(self.tally)
            if len(self.pending) <= until:
                return
            if self.settings.timeout_s is not None and self.tally.seconds > self.settings.timeout_s:
                raise LexlipError(
                    f"ingest timed out after {self.settings.timeout_s:.0f} s with {len(self.pending)} batches "
                    "unfinished (run the manifest again to send what is missing)"
                )
            time.sleep(0.2)

    def _settled(self, batch: Batch, held: set[str]) -> bool:
        """Account for `batch` if it finished (or is lost); True when it is off the pending list. `held`: the task
        ids Redis still holds (only looked up after a restart)."""
        if batch.result.ready():
            self._account(batch)
            return True
        if not self.restarted:
            return False
        task_id = batch.result.id
        if task_id in held or batch.result.state != "PENDING" or broker.Progress(self.redis, task_id).alive():
            batch.missing_since = None
            return False
        now = time.monotonic()
        batch.missing_since = batch.missing_since or now
        if now - batch.missing_since < self.settings.lost_after_s:
            return False
        for item_id, line in batch.lines.items():
            reason = (
                f"line {line}: lost: the broker restarted and no longer holds its batch (Redis without persistence?); "
                "run the manifest again"
            )
            self.fail(line, reason, item_id, batch.sources.get(item_id))
        return True

    def _held(self) -> set[str]:
        return broker.held_task_ids(self.redis, INGEST_QUEUE)

    def _account(self, batch: Batch) -> None:
        outcome = batch.result.get(propagate=False)
        if batch.result.successful() and isinstance(outcome, dict):
            self.indexed(batch, [i for i in outcome.get("indexed", []) if i in batch.lines])
            for item_id, reason in outcome.get("failed", {}).items():
                if item_id in batch.lines:
                    self.fail(batch.lines[item_id], reason, item_id, batch.sources.get(item_id))
            reported = set(outcome.get("indexed", [])) | set(outcome.get("failed", {}))
            for item_id in batch.lines.keys() - reported:
                line = batch.lines[item_id]
                self.fail(line, f"line {line}: the worker did not report it", item_id, batch.sources.get(item_id))
            deliveries = int(outcome.get("deliveries", 1))
            self.tally.redelivered += deliveries > 1
            self.tally.max_deliveries = max(self.tally.max_deliveries, deliveries)
            for stage, seconds in outcome.get("seconds", {}).items():
                self.tally.stage_seconds[stage] = self.tally.stage_seconds.get(stage, 0.0) + seconds
        else:
            why = " ".join(str(outcome).split())[:300]
            for item_id, line in batch.lines.items():
                self.fail(line, f"line {line}: batch failed: {why}", item_id, batch.sources.get(item_id))
        batch.result.forget()

    # --- broker faults ----------------------------------------------------------------------------------------------
    def _check_restart(self) -> None:
        current = broker.run_id(self.redis)
        if self.run_id is not None and current != self.run_id:
            self.restarted = True
        self.run_id = current

    def _broker_ok(self) -> None:
        self.outage_since = None

    def _broker_down(self, exc: BaseException) -> bool:
        """Note an outage; True once it has lasted `broker_wait_s` (the broker is then given up for this run)."""
        now = time.monotonic()
        self.outage_since = self.outage_since or now
        if now - self.outage_since >= self.settings.broker_wait_s:
            self.broker_gone = True
            self.gone_because = " ".join(str(exc).split())[:200]
            return True
        time.sleep(1.0)
        return False

    def _gone_reason(self, line: int, what: str) -> str:
        return (
            f"line {line}: {what}: the broker was unreachable for {self.settings.broker_wait_s:.0f} s "
            f"({self.gone_because}); run the manifest again"
        )

    def _abandon_pending(self) -> None:
        for batch in self.pending:
            for item_id, line in batch.lines.items():
                self.fail(line, self._gone_reason(line, "lost"), item_id, batch.sources.get(item_id))
        self.pending = []


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float | None = None
    broker_wait_s: float = 120.0
    """How long a Redis outage is waited out before the run gives the broker up."""
    lost_after_s: float = 60.0
    """After a Redis restart: how long a batch may be absent from Redis, unstarted and unanswered, before it is
    reported lost."""
    max_dead_letters: int = 100_000


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
    image_root: str | Path | None = None,
    id_prefix: str = "",
    limits: RowLimits | None = None,
    run_settings: RunSettings | None = None,
) -> Tally:
    """Ingest every row of `manifest` into `index` through the workers; returns the tally, one outcome per row.

    Args:
        app: the Celery app whose broker the workers listen on.
        client: an opensearch-py or elasticsearch-py client for the index.
        manifest: a JSONL or CSV file, or a folder of images.
        index: the index (created for the checkpoint's model when missing and `create`).
        checkpoint: the checkpoint folder, as the workers can read it.
        batch_size: rows per worker task (batches are also cut at 8 MiB of messages).
        resume: skip rows whose document is indexed by this model from the same row content.
        max_in_flight: batches enqueued and unfinished at once.
        timeout_s: give up (raise) after this long; None waits as long as batches can still finish.
        image_root: local image paths must lie under it (default: the manifest's folder).
        id_prefix: prepended to every id (e.g. to keep two folders' relative paths apart).
        limits: row limits (size, captions); `run_settings`: broker waits and dead-letter bound.

    Raises:
        LexlipError: a manifest that cannot be read at all, an index of another model, a timeout.
    """
    if batch_size < 1:
        raise LexlipError(f"batch size must be at least 1, got {batch_size}")
    checkpoint = str(Path(checkpoint).resolve())
    model_id = checkpoint_model_id(checkpoint)
    ensure_index(client, index, model_id, options or IndexOptions(), create, field_type)
    settings = run_settings or RunSettings(timeout_s=timeout_s)
    if timeout_s is not None and settings.timeout_s is None:
        settings = RunSettings(timeout_s, settings.broker_wait_s, settings.lost_after_s, settings.max_dead_letters)
    limits = limits or RowLimits()
    manifest = Path(manifest)
    root = Path(image_root) if image_root is not None else (manifest if manifest.is_dir() else manifest.parent)
    checker = RowChecker(root, limits, id_prefix)
    run = Run(app, client, index, checkpoint, model_id, settings, str(manifest.resolve()))
    rows = (checker.check(row) for row in read_manifest(manifest, limits.max_row_bytes))
    for batch in batches(rows, batch_size, max(8 << 20, limits.max_row_bytes)):
        run.tally.total += len(batch)
        if not batch[0].ok:
            row = batch[0]
            run.fail(row.line, str(row.reason), row.id)
            continue
        send, replacing = run.skip_indexed(batch) if resume else (batch, set())
        if send:
            run.submit(send, replacing)
        run.collect(max_in_flight - 1, on_progress)
    run.collect(0, on_progress)
    patiently(lambda: client.indices.refresh(index=index), f"refreshing {index!r}", index)
    run.tally.seconds = time.monotonic() - run.started
    return run.tally
