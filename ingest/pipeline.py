"""One batch, start to end, in three stages: load (read, decode, crop to the model's square), encode, write.

Anything that goes wrong with one item (a bad message, an unreadable file, an image that will not decode, a caption
the tokenizer refuses, a document the engine rejects) fails that item with its reason and the rest go on: every
stage catches per item, and a batch encode that raises is redone one item at a time. Each image is cut down to the
model's square right after decoding, so a batch holds 32 small images, never 32 full-size ones.

What cannot finish now is handed back rather than failed: documents the engine did not take (429, 5xx, down) come
back as `unwritten` and items not reached before the batch's deadline as `unprocessed`; the task retries exactly
those. `progress` records which item the worker is on, so that the next delivery of a batch whose worker died can
tell which item killed it (`died_on`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ingest.broker import Delivery
from ingest.items import Item, image_bytes
from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.documents import DocumentEncoder, encode_documents
from lexlip_es.encoders.images import ImageDecodeError, fit, load_image
from lexlip_es.errors import LexlipError
from lexlip_es.mapping import LexiconLayout

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_DEATHS = 2
"""An item on which the worker died this many times (for a reason the watchdog did not record) is given up."""
MAX_DELIVERIES = 10
"""A batch delivered this many times without finishing fails what is left of it."""
STAGES = ("decode", "images", "captions", "bulk")


class BatchEncoder(DocumentEncoder, Protocol):
    """What a batch needs of an encoder (LexLIPEncoder has it): the document encoder's methods, its image size and
    pixel limit for decoding."""

    max_pixels: int

    @property
    def image_size(self) -> int: ...


class ProgressRecord(Protocol):
    def at(self, stage: str, item: int | None = None) -> None: ...


class NoProgress:
    """For callers without a broker (tests, in-process use): records nothing."""

    def at(self, stage: str, item: int | None = None) -> None:
        pass


@dataclass
class BatchResult:
    indexed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    """Seconds in each of `STAGES`: decoding, encoding the images and the captions, writing to the engine."""
    unwritten: list[dict[str, Any]] = field(default_factory=list)
    """Documents (as `document_json`) the engine did not take for a transient reason."""
    unwritten_reason: str = ""
    unprocessed: list[dict[str, Any]] = field(default_factory=list)
    """Messages not reached before the deadline."""

    def to_json(self) -> dict[str, Any]:
        return {"indexed": self.indexed, "failed": self.failed, "seconds": self.seconds}


@dataclass(frozen=True)
class Loaded:
    item: Item
    image: PILImage.Image


def died_on(delivery: Delivery, stage: str, position: int) -> str | None:
    """Why this item is given up without being tried again, or None: the last worker went over its memory limit on
    it, or workers died on it `MAX_DEATHS` times."""
    if delivery.memory_killed_at == (stage, position):
        return "the worker went over its memory limit on it (LEXLIP_WORKER_MEMORY_MB)"
    deaths = delivery.deaths.get((stage, position), 0)
    if deaths >= MAX_DEATHS:
        return f"the worker died {deaths} times while on it"
    return None


def process_batch(
    messages: Sequence[Mapping[str, Any]],
    encoder: BatchEncoder,
    layout: LexiconLayout,
    writer: BulkWriter,
    fetch: Callable[[str], bytes],
    max_image_bytes: int,
    *,
    progress: ProgressRecord | None = None,
    delivery: Delivery | None = None,
    deadline: float | None = None,
    documents: Sequence[Mapping[str, Any]] = (),
) -> BatchResult:
    """Load, encode and write `messages` (plus `documents` already encoded by an earlier try)."""
    progress = progress or NoProgress()
    delivery = delivery or Delivery(1)
    result = BatchResult()
    if delivery.number > MAX_DELIVERIES:
        for raw in messages:
            result.failed[_id(raw)] = f"{_where(raw)}the batch was delivered {MAX_DELIVERIES} times without finishing"
        return result
    loaded = load_stage(messages, encoder, fetch, max_image_bytes, progress, delivery, deadline, result)
    encoded = encode_stage(loaded, encoder, layout, progress, delivery, result)
    lines = {_id(m): m["line"] for m in [*messages, *documents] if isinstance(m.get("line"), int)}
    write_stage([*map(document_from_json, documents), *encoded], writer, progress, result, lines)
    return result


def load_stage(
    messages: Sequence[Mapping[str, Any]],
    encoder: BatchEncoder,
    fetch: Callable[[str], bytes],
    max_image_bytes: int,
    progress: ProgressRecord,
    delivery: Delivery,
    deadline: float | None,
    result: BatchResult,
) -> list[Loaded]:
    started = time.perf_counter()
    loaded: list[Loaded] = []
    for position, raw in enumerate(messages):
        if deadline is not None and time.monotonic() > deadline:
            result.unprocessed.extend(dict(m) for m in messages[position:])
            break
        given_up = died_on(delivery, "load", position)
        if given_up:
            result.failed[_id(raw)] = f"{_where(raw)}{given_up}"
            continue
        progress.at("load", position)
        try:
            item = Item.from_message(raw)
            data = image_bytes(item, max_image_bytes, fetch)
            image = fit(load_image(data, 0, encoder.max_pixels), encoder.image_size)
            loaded.append(Loaded(item, image))
        except Exception as exc:  # any failure of one item fails that item only
            result.failed[_id(raw)] = _reason(exc, raw)
    result.seconds["decode"] = time.perf_counter() - started
    return loaded


def encode_stage(
    loaded: Sequence[Loaded],
    encoder: BatchEncoder,
    layout: LexiconLayout,
    progress: ProgressRecord,
    delivery: Delivery,
    result: BatchResult,
) -> list[LexiconDocument]:
    """The batch encoded at once; item by item when that raises, or when a worker died in this stage before."""
    documents: list[LexiconDocument] = []
    whole_batch_died = delivery.last_stage == "encode" and delivery.number > 1
    if loaded and not whole_batch_died:
        progress.at("encode")
        try:
            documents = _encode(loaded, encoder, layout, result.seconds)
        except Exception:  # some item the encoder refuses: find it below, one at a time
            documents = []
    if loaded and not documents:
        for position, entry in enumerate(loaded):
            given_up = died_on(delivery, "encode", position)
            if given_up:
                result.failed[entry.item.id] = f"{entry.item.where}{given_up}"
                continue
            progress.at("encode", position)
            try:
                documents.extend(_encode([entry], encoder, layout, result.seconds))
            except Exception as exc:
                result.failed[entry.item.id] = f"{entry.item.where}cannot encode it: {_describe(exc)}"
    return documents


def _encode(
    loaded: Sequence[Loaded], encoder: BatchEncoder, layout: LexiconLayout, seconds: dict[str, float]
) -> list[LexiconDocument]:
    items = [e.item for e in loaded]
    metadata = [
        {**item.metadata, "image": item.image or "(inline)", **({"lexlip_row": item.row} if item.row else {})}
        for item in items
    ]
    ids, captions = [item.id for item in items], [item.captions for item in items]
    return encode_documents(encoder, layout, ids, [e.image for e in loaded], captions, metadata, seconds)


def write_stage(
    documents: Sequence[LexiconDocument],
    writer: BulkWriter,
    progress: ProgressRecord,
    result: BatchResult,
    lines: Mapping[str, int],
) -> None:
    """Write; refused documents fail, documents the engine could not take now go to `unwritten`."""
    started = time.perf_counter()
    if documents:
        progress.at("write")
        report = writer.write(documents)
        transient = {e.id: e.reason for e in report.errors if e.transient}
        refused = {e.id: e.reason for e in report.errors if not e.transient}
        result.failed.update(
            {i: f"{_where({'line': lines.get(i)})}the engine refused it: {why}" for i, why in refused.items()}
        )
        result.unwritten = [document_json(d, lines.get(d.id)) for d in documents if d.id in transient]
        result.unwritten_reason = next(iter(transient.values()), "")
        result.indexed = [d.id for d in documents if d.id not in transient and d.id not in refused]
    result.seconds["bulk"] = time.perf_counter() - started


def document_json(doc: LexiconDocument, line: int | None = None) -> dict[str, Any]:
    """A document as JSON, to carry an encoded document into a retry without encoding it again."""
    data = {"id": doc.id, "image": doc.image, "captions": doc.captions, "metadata": dict(doc.metadata)}
    return data if line is None else {**data, "line": line}


def document_from_json(data: Mapping[str, Any]) -> LexiconDocument:
    return LexiconDocument(data["id"], data.get("image"), data.get("captions"), data.get("metadata") or {})


def _id(raw: Mapping[str, Any]) -> str:
    return str(raw.get("id", "?")) if isinstance(raw, Mapping) else "?"


def _where(raw: Mapping[str, Any]) -> str:
    line = raw.get("line") if isinstance(raw, Mapping) else None
    return f"line {line}: " if isinstance(line, int) else ""


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(exc: BaseException, raw: Mapping[str, Any]) -> str:
    where = _where(raw)
    if isinstance(exc, ImageDecodeError):
        return f"{where}item {_id(raw)!r}: not a usable image: {exc.reason}"
    if isinstance(exc, LexlipError):  # ItemError, FetchError: their messages say what and why
        text = str(exc)
        return text if text.startswith("line ") else f"{where}{text}"
    return f"{where}item {_id(raw)!r}: {_describe(exc)}"
