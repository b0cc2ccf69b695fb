"""Named training recipes: the stages, their settings, and a runner that trains them as `lexlip train` subprocesses
(so CPU training runs under jemalloc like a user's, and its progress bar reaches the user's terminal).

The shapes recipe is the one `make demo` and `benchmarks/train_shapes.py` use: one grounded LexLIP stage from random
weights on the `shapes` model config, trained on the active vocabulary (the captions' tokens plus sampled negatives),
with the image lexicon taught the words of all its captions and their BM25 weights, each caption's lexicon cut to its
own tokens, and the in-batch contrastive loss on top at 0.3 of the others' weight (at full weight it bends the
weights towards the batch's 128 negatives: R@1 at 100,000 images falls from 0.369 to 0.290). Fixed seed, data order
and thread count.
"""

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
LEXLIP_DIR, DENSE_DIR = "sparse", "dense"


@dataclass(frozen=True)
class ShapesRecipe:
    """About 3 minutes on 2 CPU cores at the defaults (2,000 steps of 128)."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 4e-3
    threads: int = 2
    model: str = "shapes"
    extra: dict[str, Any] = field(default_factory=dict)
    """Settings merged over the recipe's (TrainConfig fields; `losses` entries merge into the recipe's losses)."""

    def losses(self) -> dict[str, Any]:
        return {
            "self_mlm": False,
            "image_mlm": False,
            "text_mlm": False,
            "contrastive": True,
            "contrastive_weight": 0.3,
            "negatives": 256,
            "image_words": 3.0,
            "image_weights": 1.0,
            "caption_words": 1.0,
            "own_tokens": 1.0,
            "flops_lambda": 0.0,
            "temperature": 0.05,
            "normalize": True,
        }

    def settings(self, label: str = "LexLIP") -> dict[str, Any]:
        extra = dict(self.extra)
        losses = {**self.losses(), **extra.pop("losses", {})}
        return {
            "model": self.model,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "warmup": 0.05,
            "threads": self.threads,
            "log_every": 100,
            "checkpoint_every": 100000,
            "label": label,
            **extra,
            "losses": losses,
        }

    def dense_settings(self, seconds: float, label: str = "dense twin") -> dict[str, Any]:
        """The dense twin on the same model config, data, batch and lr, for `seconds` of wall time."""
        settings = self.settings(label)
        settings.pop("losses")
        return {**settings, "kind": "dense", "steps": 100 * self.steps, "max_seconds": seconds}

    def key(self) -> str:
        """A short name for this recipe's settings: checkpoints cached under it are reused only for the same recipe."""
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True, default=str).encode()).hexdigest()
        return f"shapes-grounded-s{self.steps}-b{self.batch_size}-{digest[:10]}"


def run_lexlip(*args: str, stream: bool = False) -> tuple[str, float]:
    """Run `lexlip ARGS...`; return its stdout and wall seconds. With `stream`, its stderr (the progress bar) goes
    straight to ours; else a failure shows the end of it."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "lexlip_es.cli", *args],
        stdout=subprocess.PIPE,
        stderr=None if stream else subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        tail = "(its output is above)" if stream else result.stderr[-4000:]
        raise LexlipError(f"lexlip {' '.join(args)} failed:\n{tail}")
    return result.stdout, time.monotonic() - started


def train_stage(
    phase: str, data: Path, out: Path, settings: dict[str, Any], *extra: str, stream: bool = False
) -> float:
    """One `lexlip train PHASE` run writing into `out`; returns its wall seconds."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "train-config.json"
    config.write_text(json.dumps({"progress": stream, **settings}))
    _, seconds = run_lexlip(
        "train", phase, "--config", str(config), "--data", str(data), "--out", str(out), *extra, stream=stream
    )
    return seconds


def train_shapes(data: Path, out: Path, recipe: ShapesRecipe | None = None, stream: bool = True) -> float:
    """Train the recipe into `out/sparse` (checkpoint `out/sparse/final`); returns the wall seconds."""
    recipe = recipe or ShapesRecipe()
    return train_stage("finetune", data, out / LEXLIP_DIR, recipe.settings("stage 1/1 grounded LexLIP"), stream=stream)


def train_dense_twin(data: Path, out: Path, seconds: float, recipe: ShapesRecipe | None = None) -> float:
    """The dense twin for the same wall time as LexLIP took, into `out/dense` (`out/dense/final`)."""
    recipe = recipe or ShapesRecipe()
    return train_stage("finetune", data, out / DENSE_DIR, recipe.dense_settings(seconds), stream=True)
