"""One batch, start to end: load images, encode images and captions, quantize, bulk-index, sort out failures.

Per-item failures (bad image, too large, unreachable URL, a document the engine refuses) are returned with their
reasons; the rest of the batch is indexed. Failures of the engine itself raise `TransientIngestError`, and the
Celery task retries the whole batch (its `_id`s make that harmless).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.items import Item, ItemError, image_bytes
from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.encoders.images import ImageDecodeError, load_image
from lexlip_es.errors import LexlipError
from lexlip_es.mapping import LexiconLayout
from lexlip_es.sparse import SparseVector


class TransientIngestError(LexlipError):
    """The engine could not take the batch now (down, 429, 5xx); the batch is retried later."""


@dataclass
class BatchResult:
    indexed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "encode": 0.0, "bulk": 0.0})

    def to_json(self) -> dict[str, Any]:
        return {"indexed": self.indexed, "failed": self.failed, "seconds": self.seconds}


def merge_max(vectors: Sequence[SparseVector]) -> SparseVector:
    """Element-wise maximum: a document's caption lexicon from its captions' lexicons."""
    vectors = [v for v in vectors if v.nnz]
    if not vectors:
        return SparseVector.empty()
    indices = np.concatenate([v.indices for v in vectors])
    values = np.concatenate([v.values for v in vectors])
    order = np.lexsort((-values, indices))
    indices, values = indices[order], values[order]
    first = np.concatenate([[True], indices[1:] != indices[:-1]])
    return SparseVector(indices[first], values[first])


def process_batch(
    raw_items: Sequence[Mapping[str, Any]],
    encoder: Any,
    layout: LexiconLayout,
    writer: BulkWriter,
    fetch: Callable[[str], bytes],
    max_image_bytes: int,
) -> BatchResult:
    result = BatchResult()
    started = time.perf_counter()
    items: list[Item] = []
    images: list[Any] = []
    for raw in raw_items:
        item_id = str(raw.get("id", "?"))
        try:
            if raw.get("error"):
                raise ItemError(f"item {item_id!r}: {raw['error']}")
            item = Item.from_message(raw)
            data = image_bytes(item, max_image_bytes, fetch)
            images.append(load_image(data, 0, encoder.max_pixels))
            items.append(item)
        except (ItemError, ImageDecodeError) as exc:
            result.failed[item_id] = _reason(exc, item_id)
        except LexlipError as exc:  # a URL refused or unreachable (FetchError) fails its item only
            result.failed[item_id] = str(exc)
    result.seconds["decode"] = time.perf_counter() - started
    if not items:
        return result

    started = time.perf_counter()
    image_vectors = encoder.encode_images(images, scale=layout.scale, top_k=layout.top_k_image)
    captions = [c for item in items for c in item.captions]
    caption_vectors = iter(encoder.encode_texts(captions, scale=layout.scale, top_k=layout.top_k_text))
    vocab = encoder.vocab
    documents = []
    for item, image_vector in zip(items, image_vectors, strict=True):
        merged = merge_max([next(caption_vectors) for _ in item.captions])
        metadata = {"captions": list(item.captions), "image": item.image or "(bytes)", **item.metadata}
        documents.append(
            LexiconDocument(
                item.id,
                image=image_vector.to_features(vocab, escape=False),
                captions=merged.to_features(vocab, escape=False),
                metadata=metadata,
            )
        )
    result.seconds["encode"] = time.perf_counter() - started

    started = time.perf_counter()
    report = writer.write(documents)
    result.seconds["bulk"] = time.perf_counter() - started
    transient = [e for e in report.errors if e.transient]
    if transient:
        raise TransientIngestError(f"{len(transient)} documents not taken by the engine, e.g. {transient[0].reason}")
    failed_ids = {e.id for e in report.errors}
    result.failed.update({e.id: e.reason for e in report.errors})
    result.indexed = [d.id for d in documents if d.id not in failed_ids]
    return result


def _reason(exc: LexlipError, item_id: str) -> str:
    if isinstance(exc, ImageDecodeError):
        return f"item {item_id!r}: not a usable image: {exc.reason}"
    return str(exc)
