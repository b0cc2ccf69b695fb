"""Helpers shared by the shapes training benchmarks: data in the cache, `lexlip train` / `lexlip eval` as subprocesses
(so training runs under jemalloc like a user's), timings, and result tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lexlip_es.settings import Settings

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def ensure_shapes(directory: Path | None = None) -> Path:
    """The standard shapes set (20,000 train, 500 val, 1,000 test; seed 0), generated once into the cache."""
    directory = directory or Settings.from_env().cache_dir / "data" / "shapes"
    path = directory / "dataset_shapes.json"
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "lexlip_es.cli", "data", "shapes", "--out", str(directory)], check=True, cwd=ROOT
        )
    return path


def lexlip(*args: str) -> tuple[str, float]:
    """Run `lexlip ARGS...`; return its stdout and wall seconds; fail loudly with its stderr."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lexlip_es.cli", *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"lexlip {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout, time.monotonic() - started


def train(phase: str, data: Path, out: Path, settings: dict[str, Any], *extra: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "train-config.json"
    config.write_text(json.dumps(settings))
    _, seconds = lexlip("train", phase, "--config", str(config), "--data", str(data), "--out", str(out), *extra)
    return seconds


def evaluate(checkpoint: Path, data: Path, *extra: str) -> tuple[dict[str, Any], float]:
    stdout, seconds = lexlip("eval", "--checkpoint", str(checkpoint), "--data", str(data), *extra)
    return json.loads(stdout), seconds


def header() -> dict[str, Any]:
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
    }


def write(name: str, data: dict[str, Any], lines: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def recall_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: recall both ways, training seconds and the mean number of stored terms where known."""
    lines = [
        "| system | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | train (s) | nnz image | nnz text |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, i = r["text_to_image"], r["image_to_text"]
        lines.append(
            f"| {r['system']} | {t['R@1']:.3f} | {t['R@5']:.3f} | {t['R@10']:.3f} | {i['R@1']:.3f} | "
            f"{i['R@5']:.3f} | {i['R@10']:.3f} | {r['train_s']:.0f} | {r.get('mean_nnz_image', '-')} | "
            f"{r.get('mean_nnz_text', '-')} |"
        )
    return lines
