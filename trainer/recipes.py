"""Named training recipes: the stages, their settings, and a runner that trains them as `lexlip train` subprocesses
(so CPU training runs under jemalloc like a user's). The shapes recipe is the one `make demo` and
`benchmarks/train_shapes.py` use: a dense twin first, then LexLIP fine-tuned from its towers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lexlip_es.errors import LexlipError

ROOT = Path(__file__).resolve().parents[1]
SHAPES_TOP_K_TEXT, SHAPES_TOP_K_IMAGE = 48, 128


@dataclass(frozen=True)
class ShapesRecipe:
    """tiny config from random weights; stage 1 dense twin (contrastive), stage 2 sparse heads from its towers with
    the training-time top-K cut. About 20 minutes on 2 CPU cores at the default step counts."""

    dense_steps: int = 4500
    sparse_steps: int = 1700
    batch_size: int = 64
    lr: float = 1e-3
    extra: dict[str, Any] = field(default_factory=dict)

    def common(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "warmup": 0.05,
            "log_every": 50,
            "checkpoint_every": 100000,
            "progress": False,
            **self.extra,
        }

    def dense_settings(self) -> dict[str, Any]:
        return {**self.common(), "steps": self.dense_steps, "kind": "dense"}

    def sparse_settings(self) -> dict[str, Any]:
        return {
            **self.common(),
            "steps": self.sparse_steps,
            "losses": {"train_top_k_text": SHAPES_TOP_K_TEXT, "train_top_k_image": SHAPES_TOP_K_IMAGE},
        }

    def key(self) -> str:
        """A short name for this recipe's settings: checkpoints cached under it are reused only for the same recipe."""
        key = f"shapes-d{self.dense_steps}-s{self.sparse_steps}-b{self.batch_size}-lr{self.lr:g}"
        if self.extra:
            digest = hashlib.sha256(json.dumps(self.extra, sort_keys=True, default=str).encode()).hexdigest()
            key += f"-x{digest[:10]}"
        return key


def run_lexlip(*args: str) -> tuple[str, float]:
    """Run `lexlip ARGS...`; return its stdout and wall seconds; fail loudly with the end of its stderr."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lexlip_es.cli", *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise LexlipError(f"lexlip {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout, time.monotonic() - started


def train_stage(phase: str, data: Path, out: Path, settings: dict[str, Any], *extra: str) -> float:
    """One `lexlip train PHASE` run writing into `out`; returns its wall seconds."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "train-config.json"
    config.write_text(json.dumps(settings))
    _, seconds = run_lexlip("train", phase, "--config", str(config), "--data", str(data), "--out", str(out), *extra)
    return seconds


def train_shapes(data: Path, out: Path, recipe: ShapesRecipe | None = None) -> dict[str, float]:
    """Train both stages into `out/dense` and `out/sparse`; the LexLIP checkpoint is `out/sparse/final`.
    Returns each stage's wall seconds."""
    recipe = recipe or ShapesRecipe()
    dense = train_stage("finetune", data, out / "dense", recipe.dense_settings())
    sparse = train_stage(
        "finetune", data, out / "sparse", recipe.sparse_settings(), "--init-backbones", str(out / "dense" / "final")
    )
    return {"dense": dense, "sparse": sparse}
