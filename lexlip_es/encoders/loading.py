"""`load_encoder`: the one place that decides which encoder a checkpoint folder needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

from lexlip_es.errors import LexlipError

if TYPE_CHECKING:
    from lexlip_es.encoders.dense import DenseEncoder
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.encoders.onnx_text import OnnxTextEncoder

EncoderKind = Literal["auto", "torch", "onnx"]
AnyEncoder = Union["LexLIPEncoder", "OnnxTextEncoder", "DenseEncoder"]


def load_encoder(
    path: str | Path, *, kind: EncoderKind = "auto", device: str | None = None, batch_size: int = 32
) -> AnyEncoder:
    """The encoder for a checkpoint folder.

    Args:
        path: a folder written by `save_pretrained` or `lexlip train` (config.json, model.safetensors, tokenizer
            files), optionally with `text_encoder.onnx` (`export_text_onnx`).
        kind: "auto" gives the dense twin's `DenseEncoder` for a dense checkpoint, the ONNX Runtime text encoder when
            the folder holds an export (queries without torch), else `LexLIPEncoder`; "torch" always the torch
            encoder (images need it); "onnx" always the ONNX text encoder.
        device: torch device ("cpu", "cuda", "cuda:1"; default: CUDA when present). Ignored for ONNX.
        batch_size: texts or images per forward pass.

    Returns:
        `LexLIPEncoder`, `OnnxTextEncoder` or `DenseEncoder`; each has `model_id` (from the weights' hash) and
        `encode_texts`.

    Raises:
        LexlipError: `path` is not a checkpoint folder, or `kind="onnx"` and it holds no export.
    """
    from lexlip_es.encoders.onnx_text import ONNX_FILE

    directory = Path(path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise LexlipError(f"{directory} is not a checkpoint folder (no config.json)")
    try:
        model_kind = json.loads(config_file.read_text()).get("kind", "lexlip")
    except ValueError as exc:
        raise LexlipError(f"{config_file} is not valid JSON ({exc})") from exc
    has_onnx = (directory / ONNX_FILE).is_file()
    if kind == "onnx" or (kind == "auto" and has_onnx and model_kind == "lexlip"):
        if not has_onnx:
            raise LexlipError(f"{directory} holds no {ONNX_FILE} (write one with `export_text_onnx`)")
        from lexlip_es.encoders.onnx_text import OnnxTextEncoder

        return OnnxTextEncoder(directory, batch_size=batch_size)
    if model_kind == "dense":
        from lexlip_es.encoders.dense import DenseEncoder

        dense: DenseEncoder = DenseEncoder.from_pretrained(directory, device=device, batch_size=batch_size)
        return dense
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder: LexLIPEncoder = LexLIPEncoder.from_pretrained(directory, device=device, batch_size=batch_size)
    return encoder
