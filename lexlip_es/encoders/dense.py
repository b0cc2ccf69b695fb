"""DenseEncoder: the dense twin behind the same interface; vectors are L2-normalised float32 arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lexlip_es.encoders.base import ImageEncoder, TextEncoder
from lexlip_es.encoders.images import ImageInput
from lexlip_es.encoders.torch_common import TorchEncoderBase


class DenseEncoder(TorchEncoderBase, TextEncoder, ImageEncoder):
    kind = "dense"

    def encode_texts(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        return list(self._text_outputs(texts))

    def encode_images(self, images: Sequence[ImageInput]) -> list[npt.NDArray[np.float32]]:
        return list(self._image_outputs(images))
