"""`document_encoder`: which encoder an ingest worker encodes documents with, from the settings.

`LEXLIP_WORKER_RUNTIME` = `auto` (the default) takes ONNX Runtime on a CPU and torch on a GPU; `onnx` and `torch`
force one. On a CPU with bf16 matrix units the ONNX runtime encodes only the pictures: captions go through torch's
screened vocabulary head (model/screen.py), the same lexicons and a third faster than ONNX there. The ONNX files
are exported and checked once per checkpoint (`ensure_onnx`); a checkpoint that cannot be exported (a dense twin,
an export that does not give torch's vectors) is encoded with torch, and the worker's log says why. Both runtimes
write the same model id, so documents from either are one index's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings

RUNTIMES = ("auto", "onnx", "torch")
log = logging.getLogger(__name__)


def wants_onnx(settings: Settings, device: str) -> bool:
    if settings.worker_runtime not in RUNTIMES:
        raise LexlipError(f"LEXLIP_WORKER_RUNTIME={settings.worker_runtime!r} is not one of {', '.join(RUNTIMES)}")
    if settings.worker_runtime == "auto":
        return device == "cpu"
    return settings.worker_runtime == "onnx"


def document_encoder(checkpoint: str | Path, settings: Settings) -> Any:
    """A LexLIP checkpoint's document encoder for this worker (`OnnxEncoder` or `LexLIPEncoder`), with the
    settings' pixel limit and threads."""
    from lexlip_es.encoders.torch_common import choose_device
    from lexlip_es.model.screen import bf16_matmul_is_fast

    device = str(choose_device(settings.device))
    kind = json.loads((Path(checkpoint) / "config.json").read_text()).get("kind", "lexlip")
    if kind == "lexlip" and wants_onnx(settings, device):
        from lexlip_es.encoders.onnx_documents import OnnxEncoder, ensure_onnx

        try:
            folder = ensure_onnx(checkpoint, settings.cache_dir)
            onnx = OnnxEncoder(
                checkpoint, threads=settings.torch_threads, onnx_dir=folder, max_pixels=settings.max_pixels
            )
            screened = settings.text_screen and bf16_matmul_is_fast()
            return PicturesByOnnx(onnx, _torch_encoder(checkpoint, settings, device)) if screened else onnx
        except (LexlipError, ImportError, OSError) as exc:
            if settings.worker_runtime == "onnx":
                raise
            log.warning("encoding %s with torch: no ONNX export (%s)", checkpoint, exc)
    return _torch_encoder(checkpoint, settings, device)


def _torch_encoder(checkpoint: str | Path, settings: Settings, device: str) -> Any:
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_pretrained(checkpoint, device=device)
    encoder.max_pixels = settings.max_pixels
    encoder.screen_texts = encoder.screen_texts and settings.text_screen
    return encoder


class PicturesByOnnx:
    """A document encoder that takes each side where it runs fastest on this CPU: pictures through ONNX Runtime,
    captions through torch (screened head). Both come from the same checkpoint: one model id."""

    def __init__(self, pictures: Any, captions: Any) -> None:
        if pictures.model_id != captions.model_id:
            raise LexlipError(f"two checkpoints in one encoder: {pictures.model_id} and {captions.model_id}")
        self.pictures, self.captions = pictures, captions
        self.model_id: str = pictures.model_id
        self.vocab = captions.vocab

    @property
    def image_size(self) -> int:
        return int(self.pictures.image_size)

    @property
    def max_pixels(self) -> int:
        return int(self.pictures.max_pixels)

    def encode_images(self, images: Sequence[Any], scale: float | None = None, top_k: int | None = None) -> Any:
        return self.pictures.encode_images(images, scale, top_k)

    def encode_texts(self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None) -> Any:
        return self.captions.encode_texts(texts, scale, top_k)
