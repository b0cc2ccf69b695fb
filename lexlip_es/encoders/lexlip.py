"""LexLIPEncoder: texts and images to sparse lexicon vectors (raw, or quantized for the engines); query texts with
the checkpoint's query term weights."""

from __future__ import annotations

from collections.abc import Sequence

from lexlip_es.encoders.base import ImageEncoder, TextEncoder
from lexlip_es.encoders.images import ImageInput
from lexlip_es.encoders.torch_common import TorchEncoderBase
from lexlip_es.query_weights import query_vectors
from lexlip_es.sparse import SparseVector


class LexLIPEncoder(TorchEncoderBase, TextEncoder, ImageEncoder):
    """`encode_texts` / `encode_images` give raw vectors (float p); with `scale` they are quantized floor(scale * p),
    with `top_k` they keep only the k largest weights. `encode_queries` is `encode_texts` for texts that search:
    with the checkpoint's `query_weights` applied (the same vectors where it has none)."""

    kind = "lexlip"

    def encode_texts(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [SparseVector.from_output(v, scale, top_k) for v in self._text_outputs(texts)]

    def encode_queries(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return query_vectors(self._text_outputs(texts), self.query_weights, self.vocab, scale, top_k)

    def encode_images(
        self, images: Sequence[ImageInput], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [SparseVector.from_output(v, scale, top_k) for v in self._image_outputs(images)]
