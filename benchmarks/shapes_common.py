"""Helpers shared by the shapes training benchmarks: data in the cache, `lexlip train` / `lexlip eval` as subprocesses
(so training runs under jemalloc like a user's), timings, and result tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from lexlip_es.settings import Settings
from trainer.data.shapes import ensure_standard_shapes
from trainer.recipes import run_lexlip, train_stage

RESULTS = Path(__file__).parent / "results"


def training_parser(doc: str | None, steps: int, out: str) -> argparse.ArgumentParser:
    """The arguments every training benchmark takes: its docstring as help, --steps and --out (run folders)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--out", type=Path, default=Path(out))
    return parser


def ensure_shapes(directory: Path | None = None) -> Path:
    """The standard shapes set (20,000 train, 500 val, 1,000 test; seed 0), generated once into the cache."""
    return ensure_standard_shapes(directory or Settings.from_env().cache_dir / "data" / "shapes")


def lexlip(*args: str) -> tuple[str, float]:
    return run_lexlip(*args)


def train(phase: str, data: Path, out: Path, settings: dict[str, Any], *extra: str) -> float:
    return train_stage(phase, data, out, settings, *extra)


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


def write(name: str, data: dict[str, Any], lines: list[str], folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2))
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def terms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def recall_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: recall both ways, training seconds and the mean number of stored terms where known."""
    lines = [
        "| system | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | train (s) | nnz image | nnz text "
        "| grounding@10 image | grounding@10 caption |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, i = r["text_to_image"], r["image_to_text"]
        lines.append(
            f"| {r['system']} | {t['R@1']:.3f} | {t['R@5']:.3f} | {t['R@10']:.3f} | {i['R@1']:.3f} | "
            f"{i['R@5']:.3f} | {i['R@10']:.3f} | {r['train_s']:.0f} | {terms(r.get('mean_nnz_image'))} | "
            f"{terms(r.get('mean_nnz_text'))} | {fmt(r.get('grounding@10_image'))} | "
            f"{fmt(r.get('grounding@10_caption'))} |"
        )
    return lines
