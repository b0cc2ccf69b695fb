"""Writing LexLIP documents with the client library's own `streaming_bulk`, losing nothing.

Every document's `_id` is the caller's item id, so writing the same items twice leaves one copy of each. Items the
engine refuses come back as `ItemError`s; 429s are retried inside `streaming_bulk`, and items that still fail with
429/5xx or a lost connection are sent again in later rounds with exponential backoff and jitter.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lexlip_es.clients import error_status, flavor_of, is_client_error, translate
from lexlip_es.errors import EngineUnavailableError, LexlipError
from lexlip_es.features import impact_features, impact_text
from lexlip_es.mapping import CAPTION_FIELD, ID_FIELD, IMAGE_FIELD, MODEL_FIELD, LexiconLayout

MAX_ID_BYTES = 512
RETRYABLE = frozenset({429, 500, 502, 503, 504})
RESERVED = frozenset({IMAGE_FIELD, CAPTION_FIELD, MODEL_FIELD, ID_FIELD})


@dataclass(frozen=True)
class LexiconDocument:
    """One image: its id, its lexicon and its captions' lexicon ({token: integer weight}, tokens unescaped)."""

    id: str
    image: Mapping[str, int] | None = None
    captions: Mapping[str, int] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemError:
    id: str
    reason: str
    status: int | None = None
    transient: bool = False
    """True when the engine, not the document, was the problem (429, 5xx, no connection) after every retry."""


@dataclass
class BulkReport:
    indexed: int = 0
    errors: list[ItemError] = field(default_factory=list)
    rounds: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class DocumentError(LexlipError, ValueError):
    """A document the writer will not send (bad id, reserved metadata field, weights that are not positive ints)."""


def check_id(item_id: object) -> str:
    if not isinstance(item_id, str) or not item_id:
        raise DocumentError(f"document ids must be non-empty strings, got {item_id!r}")
    if len(item_id.encode("utf-8")) > MAX_ID_BYTES:
        raise DocumentError(f"document id {item_id[:40]!r}... is longer than {MAX_ID_BYTES} bytes")
    return item_id


def _lexicon(vector: Mapping[str, int], top_k: int | None, what: str, layout: LexiconLayout) -> dict[str, int] | str:
    if top_k is not None and len(vector) > top_k:
        raise DocumentError(f"{what} has {len(vector)} terms; the index keeps at most {top_k}")
    try:
        features = impact_features(vector, what)
    except ValueError as exc:
        raise DocumentError(str(exc)) from exc
    return impact_text(features) if layout.field_type == "impact" else features


def document_source(doc: LexiconDocument, layout: LexiconLayout) -> dict[str, Any]:
    """The `_source` of one document: the caller's metadata untouched, plus the fields lexlip-es owns."""
    clash = RESERVED & set(doc.metadata)
    if clash:
        raise DocumentError(f"document {doc.id!r}: metadata uses reserved field names {sorted(clash)}")
    source: dict[str, Any] = {**doc.metadata, ID_FIELD: doc.id, MODEL_FIELD: layout.model_id}
    if doc.image:
        source[IMAGE_FIELD] = _lexicon(doc.image, layout.top_k_image, f"document {doc.id!r} image lexicon", layout)
    if doc.captions:
        source[CAPTION_FIELD] = _lexicon(doc.captions, None, f"document {doc.id!r} caption lexicon", layout)
    if IMAGE_FIELD not in source and CAPTION_FIELD not in source:
        raise DocumentError(f"document {doc.id!r} has neither an image nor a caption lexicon")
    return source


def bulk_action(index: str, doc: LexiconDocument, layout: LexiconLayout) -> dict[str, Any]:
    return {"_op_type": "index", "_index": index, "_id": check_id(doc.id), "_source": document_source(doc, layout)}


def _streaming_bulk(client: Any) -> Callable[..., Iterator[tuple[bool, dict[str, Any]]]]:
    module = "opensearchpy.helpers" if flavor_of(client) == "opensearch" else "elasticsearch.helpers"
    helper: Callable[..., Iterator[tuple[bool, dict[str, Any]]]] = importlib.import_module(module).streaming_bulk
    return helper


def _status(info: Mapping[str, Any]) -> int | None:
    status = info.get("status")
    if isinstance(status, int):
        return status
    exc = info.get("exception")
    return error_status(exc) if isinstance(exc, BaseException) else None


def _reason(info: Mapping[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    return " ".join(str(error or info.get("exception") or "unknown error").split())[:500]


@dataclass
class BulkWriter:
    """Writes LexiconDocuments into one index (or write alias) of the caller's cluster."""

    client: Any
    index: str
    layout: LexiconLayout
    chunk_size: int = 500
    refresh: bool | str = False
    retry_rounds: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def write(self, documents: Iterable[LexiconDocument]) -> BulkReport:
        report = BulkReport()
        pending: dict[str, dict[str, Any]] = {}
        for doc in documents:
            try:
                action = bulk_action(self.index, doc, self.layout)
            except DocumentError as exc:
                report.errors.append(ItemError(str(doc.id), str(exc)))
                continue
            pending[action["_id"]] = action  # a repeated id in one call: the last one wins, as the engine would do
        last_failure: dict[str, ItemError] = {}
        for round_ in range(self.retry_rounds + 1):
            if not pending:
                break
            if round_:
                self.sleep(self._backoff(round_))
            report.rounds = round_ + 1
            pending = self._round(pending, report, last_failure)
        report.errors.extend(
            ItemError(
                i,
                f"still failing after {self.retry_rounds} retry rounds: {last_failure[i].reason}",
                last_failure[i].status,
                transient=True,
            )
            for i in pending
        )
        return report

    def _backoff(self, round_: int) -> float:
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (round_ - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _round(
        self, pending: dict[str, dict[str, Any]], report: BulkReport, last_failure: dict[str, ItemError]
    ) -> dict[str, dict[str, Any]]:
        retry: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        stream = _streaming_bulk(self.client)(
            self.client,
            list(pending.values()),
            chunk_size=self.chunk_size,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=3,
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
            refresh=self.refresh,
        )
        try:
            for ok, item in stream:
                info = next(iter(item.values()))
                item_id = str(info.get("_id"))
                seen.add(item_id)
                if ok:
                    report.indexed += 1
                    continue
                status, reason = _status(info), _reason(info)
                if status is None or status in RETRYABLE:
                    retry[item_id] = pending[item_id]
                    last_failure[item_id] = ItemError(item_id, reason, status)
                else:
                    report.errors.append(ItemError(item_id, reason, status))
        except Exception as exc:  # the elasticsearch helper raises on a lost connection: retry what it did not answer
            if not is_client_error(exc):
                raise
            error = translate(exc, f"bulk writing into {self.index!r}", self.index)
            if not isinstance(error, EngineUnavailableError) and error_status(exc) not in RETRYABLE:
                raise error from exc
            for item_id in pending.keys() - seen:
                retry[item_id] = pending[item_id]
                last_failure[item_id] = ItemError(item_id, str(error), error_status(exc))
        return retry


def write_documents(
    client: Any, index: str, documents: Iterable[LexiconDocument], layout: LexiconLayout, **options: Any
) -> BulkReport:
    """`BulkWriter(client, index, layout, **options).write(documents)`."""
    return BulkWriter(client, index, layout, **options).write(documents)
