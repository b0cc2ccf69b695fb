"""Encoder throughput and query latency, side by side: tiny and small configs, torch against ONNX Runtime.

    .venv/bin/python benchmarks/encoders.py [--configs tiny small] [--texts 512] [--images 256] [--queries 200]

Writes benchmarks/results/encoders.md and encoders.json. Throughput is measured with the encoder's batch size (32);
latency is one query at a time, as a search service sees it. The models are random (seeded): speed does not depend
on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.encoders.onnx_text import OnnxTextEncoder, export_text_onnx

RESULTS = Path(__file__).parent / "results"
WORDS = [
    "a",
    "the",
    "large",
    "small",
    "red",
    "blue",
    "green",
    "yellow",
    "circle",
    "square",
    "star",
    "triangle",
    "top",
    "bottom",
    "left",
    "right",
    "middle",
    "photo",
    "of",
]


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))) for _ in range(n)]


def _images(n: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _rate(fn: Any, items: list[Any]) -> float:
    fn(items[:8])  # warm-up
    t0 = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - t0)


def _latencies_ms(fn: Any, queries: list[str]) -> dict[str, float]:
    for q in queries[:10]:
        fn([q])
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        fn([q])
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(samples[int(0.95 * (len(samples) - 1))], 2),
        "mean": round(statistics.fmean(samples), 2),
    }


def _agreement(a: list[Any], b: list[Any]) -> dict[str, Any]:
    """How often the ONNX and torch quantized vectors agree: whole vectors, single weights, largest gap."""
    differing, total, worst = 0, 0, 0
    for x, y in zip(a, b, strict=True):
        dx, dy = x.to_dense(30522).astype(np.int64), y.to_dense(30522).astype(np.int64)
        differing += int(np.count_nonzero(dx != dy))
        total += int(np.count_nonzero(dx | dy))
        worst = max(worst, int(np.abs(dx - dy).max()))
    return {
        "identical_vectors": sum(x == y for x, y in zip(a, b, strict=True)),
        "vectors": len(a),
        "differing_weights": differing,
        "weights": total,
        "max_abs_difference": worst,
    }


def bench(config: str, n_texts: int, n_images: int, n_queries: int) -> dict[str, Any]:
    encoder = LexLIPEncoder.from_config(config, seed=0, device="cpu")
    texts, queries = _texts(n_texts, 1), _texts(n_queries, 2)
    images = _images(n_images, 96)
    with tempfile.TemporaryDirectory() as tmp:
        export_text_onnx(encoder, tmp)
        onnx = OnnxTextEncoder(tmp)
        agreement = _agreement(onnx.encode_texts(queries, scale=100), encoder.encode_texts(queries, scale=100))
        row = {
            "config": config,
            "parameters_m": round(sum(p.numel() for p in encoder.model.parameters()) / 1e6, 1),
            "text_positions": encoder.config.text.max_length,
            "image_size": encoder.config.vision.image_size,
            "texts_per_s_torch": round(_rate(encoder.encode_texts, texts), 1),
            "texts_per_s_onnx": round(_rate(onnx.encode_texts, texts), 1),
            "images_per_s_torch": round(_rate(encoder.encode_images, images), 1),
            "query_latency_ms_torch": _latencies_ms(lambda q: encoder.encode_queries(q, scale=100), queries),
            "query_latency_ms_onnx": _latencies_ms(lambda q: onnx.encode_queries(q, scale=100), queries),
            "onnx_vs_torch": agreement,
            "mean_nnz_random_init": round(float(np.mean([v.nnz for v in encoder.encode_texts(queries[:20])])), 1),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = [bench(c, args.texts, args.images, args.queries) for c in args.configs]
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "input images": "96x96 RGB, decoded from PIL and resized to the config's size inside the timing",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "encoders.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    lines = [
        "# Encoders on CPU: throughput and query latency",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| config | params (M) | texts/s torch | texts/s ONNX | images/s torch | query p50 torch (ms) | "
        "query p50 ONNX (ms) | query p95 torch / ONNX (ms) | ONNX == torch: vectors, weights |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, o, a = r["query_latency_ms_torch"], r["query_latency_ms_onnx"], r["onnx_vs_torch"]
        lines.append(
            f"| {r['config']} | {r['parameters_m']} | {r['texts_per_s_torch']} | {r['texts_per_s_onnx']} | "
            f"{r['images_per_s_torch']} | {t['p50']} | {o['p50']} | {t['p95']} / {o['p95']} | "
            f"{a['identical_vectors']}/{a['vectors']}, {a['weights'] - a['differing_weights']}/{a['weights']} "
            f"(max diff {a['max_abs_difference']}) |"
        )
    (RESULTS / "encoders.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
