"""What a text query costs before it reaches an index: each table 2 query encoded on its own, one at a time, as a
search service encodes what a user typed. Encoders: LexLIP's text tower through torch and through ONNX Runtime (the
deployable path: no torch in the service), the dense twin's through torch (it has no ONNX export), and none for
BM25 (the engine analyses the text itself). Per-query seconds are kept so that a row's latency with encoding is the
percentile of encode + search for the same query, not the sum of two percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LEXLIP_TORCH = "LexLIP torch"
LEXLIP_ONNX = "LexLIP ONNX"
DENSE_TORCH = "dense torch"


def per_query_seconds(encode: Callable[[str], Any], texts: Sequence[str], warmup: int = 5) -> list[float]:
    """Seconds of `encode(text)` for each text in turn, after a few warm-up calls."""
    for text in texts[:warmup]:
        encode(text)
    seconds = []
    for text in texts:
        started = time.perf_counter()
        encode(text)
        seconds.append(time.perf_counter() - started)
    return seconds


def encoding_seconds(lexlip: Path, dense: Path, texts: Sequence[str], work: Path) -> dict[str, list[float]]:
    """Per-query encoding seconds of each encoder, one thread each way (the engines get the other core)."""
    import torch

    from lexlip_es.encoders.dense import DenseEncoder
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.encoders.onnx_text import OnnxTextEncoder, export_text_onnx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder = LexLIPEncoder.from_pretrained(lexlip, batch_size=1)
        onnx_dir = work / f"onnx-{encoder.model_id}"
        if not (onnx_dir / "text_encoder.onnx").exists():
            export_text_onnx(encoder, onnx_dir)
        onnx = OnnxTextEncoder(onnx_dir, batch_size=1, threads=1)
        twin = DenseEncoder.from_pretrained(dense, batch_size=1)
        return {
            LEXLIP_TORCH: per_query_seconds(lambda t: encoder.encode_queries([t], scale=100.0, top_k=48), texts),
            LEXLIP_ONNX: per_query_seconds(lambda t: onnx.encode_queries([t], scale=100.0, top_k=48), texts),
            DENSE_TORCH: per_query_seconds(lambda t: twin.encode_texts([t]), texts),
        }
    finally:
        torch.set_num_threads(threads)
