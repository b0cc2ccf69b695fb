"""`document_encoder`: which encoder an ingest worker encodes documents with, from the settings.

`LEXLIP_WORKER_RUNTIME` = `auto` (the default) takes ONNX Runtime on a CPU and torch on a GPU; `onnx` and `torch`
force one. The ONNX files are exported and checked once per checkpoint (`ensure_onnx`); a checkpoint that cannot be
exported (a dense twin, an export that does not give torch's vectors) is encoded with torch, and the worker's log
says why. Both runtimes write the same model id, so documents from either are one index's.
"""

from __future__ import annotations

import json
import logging
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

    device = str(choose_device(settings.device))
    kind = json.loads((Path(checkpoint) / "config.json").read_text()).get("kind", "lexlip")
    if kind == "lexlip" and wants_onnx(settings, device):
        from lexlip_es.encoders.onnx_documents import OnnxEncoder, ensure_onnx

        try:
            folder = ensure_onnx(checkpoint, settings.cache_dir)
            return OnnxEncoder(
                checkpoint, threads=settings.torch_threads, onnx_dir=folder, max_pixels=settings.max_pixels
            )
        except (LexlipError, ImportError, OSError) as exc:
            if settings.worker_runtime == "onnx":
                raise
            log.warning("encoding %s with torch: no ONNX export (%s)", checkpoint, exc)
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_pretrained(checkpoint, device=device)
    encoder.max_pixels = settings.max_pixels
    return encoder
