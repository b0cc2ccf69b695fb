"""Images and their captions into `LexiconDocument`s, the one way ingest and library callers both do it.

A document holds the image's lexicon, its captions' lexicon (the element-wise maximum of each caption's lexicon),
and in its metadata the captions themselves (`captions`: the text that hybrid search matches by BM25).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from lexlip_es.bulk import LexiconDocument
from lexlip_es.mapping import LexiconLayout
from lexlip_es.sparse import SparseVector, Vocabulary


class DocumentEncoder(Protocol):
    """What encoding documents needs of an encoder (`LexLIPEncoder` has it)."""

    @property
    def vocab(self) -> Vocabulary: ...

    def encode_images(
        self, images: Sequence[Any], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]: ...

    def encode_texts(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]: ...


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


def encode_documents(
    encoder: DocumentEncoder,
    layout: LexiconLayout,
    ids: Sequence[str],
    images: Sequence[Any],
    captions: Sequence[Sequence[str]] | None = None,
    metadata: Sequence[Mapping[str, Any]] | None = None,
    seconds: dict[str, float] | None = None,
) -> list[LexiconDocument]:
    """One document per image, encoded at the index's scale and top-K.

    Args:
        encoder: a `LexLIPEncoder` of the index's model.
        layout: the index's layout (`read_layout(client, index)` or the one you created it with).
        ids: your item ids (the documents' `_id`).
        images: paths, bytes or PIL images, decoded as ingest decodes them.
        captions: each image's captions (none: no caption lexicon); kept in the metadata as `captions`.
        metadata: each image's own fields (titles, prices, shops), stored as given.
        seconds: when given, the seconds spent on the images and on the captions are added to its `images` and
            `captions` entries (ingest's stage timings).

    Returns:
        Documents for `BulkWriter.write`.

    Raises:
        ValueError: sequences of different lengths; ImageDecodeError: an image that cannot be used.
    """
    captions = captions if captions is not None else [[] for _ in ids]
    metadata = metadata if metadata is not None else [{} for _ in ids]
    if not len(ids) == len(images) == len(captions) == len(metadata):
        raise ValueError(
            f"ids, images, captions and metadata must have the same length: "
            f"{len(ids)}, {len(images)}, {len(captions)}, {len(metadata)}"
        )
    started = time.perf_counter()
    image_vectors = encoder.encode_images(images, scale=layout.scale, top_k=layout.top_k_image)
    images_done = time.perf_counter()
    texts = [c for group in captions for c in group]
    caption_vectors = iter(encoder.encode_texts(texts, scale=layout.scale, top_k=layout.top_k_text) if texts else [])
    if seconds is not None:
        seconds["images"] = seconds.get("images", 0.0) + images_done - started
        seconds["captions"] = seconds.get("captions", 0.0) + time.perf_counter() - images_done
    vocab = encoder.vocab
    documents = []
    for item_id, image_vector, group, fields in zip(ids, image_vectors, captions, metadata, strict=True):
        merged = merge_max([next(caption_vectors) for _ in group])
        extra = {"captions": list(group)} if group else {}
        documents.append(
            LexiconDocument(
                item_id,
                image=image_vector.to_features(vocab, escape=False),
                captions=merged.to_features(vocab, escape=False),
                metadata={**fields, **extra},
            )
        )
    return documents
