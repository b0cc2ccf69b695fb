"""LexLIPEncoder: texts and images to sparse lexicon vectors (raw, or quantized for the engines)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lexlip_es.encoders.base import ImageEncoder, TextEncoder
from lexlip_es.encoders.images import ImageInput
from lexlip_es.encoders.torch_common import TorchEncoderBase
from lexlip_es.sparse import SparseVector


class LexLIPEncoder(TorchEncoderBase, TextEncoder, ImageEncoder):
    """`encode_texts` / `encode_images` give raw vectors (float p); with `scale` they are quantized floor(scale * p),
    with `top_k` they keep only the k largest weights."""

    kind = "lexlip"

    def encode_texts(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [_finish(v, scale, top_k) for v in self._text_outputs(texts)]

    def encode_images(
        self, images: Sequence[ImageInput], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [_finish(v, scale, top_k) for v in self._image_outputs(images)]


def _finish(dense: npt.NDArray[np.float32], scale: float | None, top_k: int | None) -> SparseVector:
    vector = SparseVector.from_dense(dense)
    if scale is not None:
        vector = vector.quantize(scale)
    return vector.top_k(top_k)
