"""Named training recipes: the stages, their settings, and a runner that trains them as `lexlip train` subprocesses
(so CPU training runs under jemalloc like a user's, and its progress bar reaches the user's terminal).

Each recipe is one grounded LexLIP stage: the shapes recipe from random weights on the `shapes` model config (the
image lexicon taught the words of all its captions and their BM25 weights, each caption's lexicon cut to its own
tokens, the in-batch contrastive loss on top at 0.3 of the others' weight: at full weight it bends the weights
towards the batch's 128 negatives, R@1 at 100,000 images falls from 0.369 to 0.290); the emoji recipe on pretrained
towers; the photos recipe (the ImageNet word prior under the learned lexicon) and the demo's photos recipe, the one
`make demo` trains. Fixed seed, data order and thread count.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lexlip_es.errors import LexlipError

if TYPE_CHECKING:
    from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LEXLIP_DIR, DENSE_DIR = "sparse", "dense"
WALL_FILE = "wall_seconds"


@dataclass(frozen=True)
class Recipe:
    """A one-stage grounded LexLIP recipe: model config, steps, batch, learning rates and loss settings, fixed seed,
    data order and threads. Subclasses give the defaults measured for their data set."""

    name: ClassVar[str] = "recipe"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 4e-3
    tower_lr: float | None = None
    """The towers' bodies at this learning rate (pretrained towers fine-tuned gently); None: everything at `lr`."""
    threads: int = 2
    model: str = "shapes"
    frozen_vision_blocks: int | str | None = None
    """A pretrained CNN tower's stem and first K blocks ("all": all of it) frozen and run once (trainer/frozen.py)."""
    group_by: str | None = None
    """Batches hold members of a group together (a record field, e.g. an emoji's `base`), `group_size` at a time."""
    group_size: int | None = None
    query_weights: ClassVar[bool] = False
    """After training, `lexlip calibrate` writes the checkpoint's query term weights (trainer/calibrate.py)."""
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
            **({"tower_lr": self.tower_lr} if self.tower_lr is not None else {}),
            **({"frozen_vision_blocks": self.frozen_vision_blocks} if self.frozen_vision_blocks is not None else {}),
            **({"group_by": self.group_by, "group_size": self.group_size} if self.group_by is not None else {}),
            "warmup": 0.05,
            "threads": self.threads,
            "log_every": max(1, min(100, self.steps // 20)),
            "checkpoint_every": 100000,
            "label": label,
            **extra,
            "losses": losses,
        }

    def dense_settings(self, seconds: float, label: str = "dense twin") -> dict[str, Any]:
        """The dense twin on the same model config, data, batch and learning rates, for `seconds` of wall time."""
        settings = self.settings(label)
        settings.pop("losses")
        return {**settings, "kind": "dense", "steps": 100 * self.steps, "max_seconds": seconds}

    def key(self) -> str:
        """A short name for this recipe's settings: checkpoints cached under it are reused only for the same recipe."""
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}-grounded-s{self.steps}-b{self.batch_size}-{digest[:10]}"


@dataclass(frozen=True)
class ShapesRecipe(Recipe):
    """The `shapes` config from random weights: about 3 minutes on 2 CPU cores (2,000 steps of 128)."""

    name: ClassVar[str] = "shapes"


@dataclass(frozen=True)
class EmojiRecipe(Recipe):
    """The `emoji` config: ImageNet EfficientNet-Lite0 (stem and blocks 0-4 frozen and run once; blocks 5-6 and the
    head fine-tuned at `tower_lr`; the vocabulary head reads the mean of the feature-map cells) and MiniLM-L6
    (fine-tuned at `tower_lr`) under fresh vocabulary heads at `lr`; batches of 64 at 128 px with skin-tone siblings
    two at a time, each to be beaten by a margin (`sibling_margin`); the lexicons distil the auxiliary dense term's
    scores, shared codes on the image side cost their square (`hub_words`), and from the second epoch each caption
    also ranks its image among every training image by its own words (`image_memory`). About 5-7 minutes on 2 CPU
    cores (training 250-370 s as the machine's load varies, calibrating the query weights 36 s).
    Measured figures: benchmarks/results/emoji.md."""

    name: ClassVar[str] = "emoji"
    # 430 steps (a loop of 249-370 s on 2 cores, 0.6-0.85 s a step; the whole recipe 5-7 minutes): LexLIP-only
    # screens at 320 steps gave test t2i R@1 0.439 / 0.426 / 0.457 over seeds 0-2 and grounding@10 0.605 / 0.605 /
    # 0.591, at 430 0.454 / 0.453 / 0.443 and 0.611 / 0.611 / 0.613 (earlier recipes, one seed: 300 0.429, 350 0.398)
    steps: int = 430
    batch_size: int = 64
    lr: float = 4e-3
    tower_lr: float | None = 3e-4
    model: str = "emoji"
    frozen_vision_blocks: int | str | None = 5
    # skin-tone siblings two at a time in a batch: each other's in-batch negatives, while a batch still spans
    # about 50 emoji (whole families of six cost more between-emoji negatives than they gained)
    group_by: str | None = "base"
    group_size: int | None = 2
    # query tokens weighed by idf ** power over the training images' lexicons, the power picked on val (0.5 on the
    # three seeds of benchmarks/results/emoji.md): "skin", "tone", "people" stop ranking tone-only lexicons first
    query_weights: ClassVar[bool] = True

    def losses(self) -> dict[str, Any]:
        return {
            **super().losses(),
            # thousands of active columns: an item's few words weigh as much as all the columns it must not hold
            "balanced_words": True,
            # tokens no training caption uses start off (bias -10) instead of being sampled as negatives 4,096 at a
            # time: with pretrained embeddings as decoders they would light up at inference otherwise
            "inactive_bias": -10.0,
            # stop words, one-character pieces and the pieces of "emoji" (in every caption) are trained off on both
            # sides: left to the contrastive term they became "÷", "and" and "##oj" in every lexicon
            "words_only": True,
            "max_df": 0.6,
            # the image lexicon is taught *which* words (at 6, twice the base weight), not their BM25 ratios: with the
            # distillation below, the regression onto BM25 (3.0, `weights_direction`) cost recall (0.382 at 1.0)
            "image_words": 6.0,
            "image_weights": 0.0,
            # the images' vectors leave the model at one norm (config output_norm), so the cosine training is what
            # ranks, and contrastive at full weight pays: 0.211 against 0.200 t2i R@1 at 0.3
            "contrastive_weight": 1.0,
            # captions learn expansions from the first step (no cut to their own tokens): 0.295 against 0.284
            "own_tokens": 0.0,
            # the towers' mean-pooled features also trained as the dense twin trains them (trainer-only projections)
            "dense_weight": 1.0,
            # and that dense term's in-batch scores distilled into the lexicons' (D2S): 0.392 against 0.363 t2i R@1
            "distill_weight": 0.5,
            # the square of each word's batch-mean weight on images whose captions lack it: distillation had made
            # "trophy", "sailing", "objects" codes in 10-12% of image lexicons (0.491 grounding@10); at 30 (160
            # steps) 0.574 with t2i 0.390, at 10 0.549 / 0.383, at 50 0.574 / 0.379, at 100 0.571 / 0.340
            "hub_words": 30.0,
            # an item must beat its in-batch skin-tone sibling by 0.1 in cosine: a caption's tone word is a subset of
            # a sibling's ("medium" of "medium-light"), and 141-161 of 2,615 test captions went to a sibling (the
            # twin: 22-47); with it 49-69, t2i R@1 +0.010 and i2t +0.025 over 3 seeds (at 0.05 0.423, 0.2 0.384)
            "sibling_margin": 0.1,
            # each caption also ranks its image among every other training image's latest lexicon (trainer/memory.py),
            # the ranking a search does, with the caption cut to its own words there, so an image gains only from
            # weight on its captions' words (seed 0: t2i R@1 0.4665 and grounding@10 0.605 against 0.4543 / 0.611
            # without the memory; with whole caption lexicons 0.4746 but grounding 0.558, expansions such as "woman"
            # and "man" growing on images whose captions say "person")
            "image_memory": 1.0,
            "memory_captions": "words",
        }


@dataclass(frozen=True)
class PhotosRecipe(EmojiRecipe):
    """The `photos` config (the ImageNet word prior added to the learned image lexicon, texts keeping their own words)
    on emoji and clipart together (trainer/data/mixture.py), the whole image tower frozen and run once at 224 px so
    the prior reads exactly the features its classifier knows; the emoji recipe's losses otherwise. Skin-tone
    siblings (emoji) two at a time; every clipart picture is a group of its own."""

    name: ClassVar[str] = "photos"
    steps: int = 1200
    model: str = "photos"
    frozen_vision_blocks: int | str | None = "all"
    group_by: str | None = "group"
    max_per_caption: ClassVar[int | None] = 3
    """The mixture keeps at most 3 pictures sharing a first caption (trainer/data/mixture.py: openclipart's 1,378
    generated stars called "star" became 3)."""

    def losses(self) -> dict[str, Any]:
        # "emoji" is in every emoji caption but, beside the clipart, in only 38% of the images: at the emoji
        # recipe's 0.6 it became a target ("##oj", "em" topped photographs' lexicons)
        return {**super().losses(), "max_df": 0.3}


@dataclass(frozen=True)
class PhotosDemoRecipe(PhotosRecipe):
    """The model `make demo` ships: the photos recipe on the emoji and Tux Paint's train split (`ensure_photos_demo`;
    no clipart, so a fresh machine fetches one Debian package and renders 547 pictures, not 6,869). Tux Paint's
    val split chooses, its test split reports (benchmarks/photos.py, second block); animals/ is never read."""

    name: ClassVar[str] = "photos-demo"
    max_per_caption: ClassVar[int | None] = None
    """Every picture kept: the demo indexes the same mixture it trains on, all 547 Tux Paint pictures included."""
    # 800 steps: Tux Paint val t2i R@1 / R@10 0.314 / 0.571 against 0.248 / 0.514 at 400 (emoji val 0.476 against
    # 0.461); hub_words 100 instead of 30: 0.295 / 0.562 (emoji val 0.497)
    steps: int = 800
    # no query weights: on the mixture's val split idf ** 0.25 gave t2i R@1 0.439 against 0.434 unweighted, and the
    # calibration cost a fresh demo 121 s
    query_weights: ClassVar[bool] = False


def ensure_photos_demo(root: Path, settings: Settings | None = None) -> Path:
    """The demo's mixture in `root`/photos-demo: the emoji at 224 px and Tux Paint's stamps (every split; training
    reads the train splits only), each built once in `root`; WordNet (the prior's broader words) fetched into the
    cache too, so training finds it."""
    from lexlip_es.settings import Settings
    from trainer.data.debian import fetch_wordnet
    from trainer.data.emoji import ensure_emoji
    from trainer.data.mixture import write_mixture
    from trainer.data.tuxpaint import ensure_tuxpaint

    fetch_wordnet((settings or Settings.from_env()).cache_dir)
    parts = [
        ("emoji", ensure_emoji(root / "emoji-224", size=224, settings=settings)),
        ("tuxpaint", ensure_tuxpaint(root / "tuxpaint", settings=settings)),
    ]
    return write_mixture(root / "photos-demo", "photos_demo", parts, PhotosDemoRecipe.max_per_caption)


def run_lexlip(*args: str, stream: bool = False) -> tuple[str, float]:
    """Run `lexlip ARGS...`; return its stdout and wall seconds. With `stream`, its stderr (the progress bar) goes
    straight to ours; else a failure shows the end of it."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "lexlip_app.cli", *args],
        stdout=subprocess.PIPE,
        stderr=None if stream else subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        tail = "(its output is above)" if stream else result.stderr[-4000:]
        raise LexlipError(f"lexlip {' '.join(args)} failed:\n{tail}")
    return result.stdout, time.monotonic() - started


def finished_seconds(out: Path, settings: dict[str, Any]) -> float | None:
    """The wall seconds of a finished run in `out` trained with exactly these settings, or None if there is none (no
    `final` checkpoint, no recorded wall time, or other settings)."""
    config, wall = out / "train-config.json", out / WALL_FILE
    if not ((out / "final").is_dir() and config.exists() and wall.exists()):
        return None
    written = json.loads(config.read_text(encoding="utf-8"))
    written.pop("progress", None)
    return float(wall.read_text(encoding="utf-8")) if written == json.loads(json.dumps(settings)) else None


def train_stage(
    phase: str,
    data: Path,
    out: Path,
    settings: dict[str, Any],
    *extra: str,
    stream: bool = False,
    reuse: bool = False,
) -> float:
    """One `lexlip train PHASE` run writing into `out`; returns its wall seconds (also written to `out/wall_seconds`).
    With `reuse`, a finished run in `out` with the same settings is kept and its recorded wall seconds returned."""
    if reuse and (seconds := finished_seconds(out, settings)) is not None:
        print(f"reusing the finished run in {out} (same settings, {seconds:.0f} s)", file=sys.stderr)
        return seconds
    out.mkdir(parents=True, exist_ok=True)
    config = out / "train-config.json"
    config.write_text(json.dumps({"progress": stream, **settings}))
    _, seconds = run_lexlip(
        "train", phase, "--config", str(config), "--data", str(data), "--out", str(out), *extra, stream=stream
    )
    (out / WALL_FILE).write_text(f"{seconds:.3f}\n", encoding="utf-8")
    return seconds


def train_recipe(data: Path, out: Path, recipe: Recipe, stream: bool = True, reuse: bool = False) -> float:
    """Train the recipe into `out/sparse` (checkpoint `out/sparse/final`), then write its query term weights when
    the recipe has them; returns the training run's wall seconds."""
    label = f"stage 1/1 grounded LexLIP ({recipe.name})"
    seconds = train_stage("finetune", data, out / LEXLIP_DIR, recipe.settings(label), stream=stream, reuse=reuse)
    calibrate_recipe(data, out, recipe)
    return seconds


def calibrate_recipe(data: Path, out: Path, recipe: Recipe) -> float:
    """Write the recipe's query term weights into its checkpoint once (`lexlip calibrate`); returns the seconds it
    took (0 when the recipe has none or the checkpoint already holds them)."""
    from lexlip_es.query_weights import QUERY_WEIGHTS_FILE

    final = out / LEXLIP_DIR / "final"
    if not recipe.query_weights or (final / QUERY_WEIGHTS_FILE).exists():
        return 0.0
    _, seconds = run_lexlip("calibrate", "--checkpoint", str(final), "--data", str(data), stream=True)
    return seconds


def last_record(stage: Path) -> dict[str, Any]:
    """The last metrics record of a finished `lexlip train` run in `stage` (its step, elapsed_s and loss terms)."""
    metrics = stage / "metrics.jsonl"
    if not metrics.exists():
        raise LexlipError(f"{metrics} is missing: {stage} holds no finished training run")
    record: dict[str, Any] = json.loads(metrics.read_text(encoding="utf-8").strip().splitlines()[-1])
    return record


def loop_seconds(stage: Path) -> float:
    """The seconds a finished run in `stage` spent in its training loop: the budget two systems are compared at,
    without the start-up both pay alike (loading towers and images, the frozen stem's one pass)."""
    return float(last_record(stage)["elapsed_s"])


def train_dense_twin(data: Path, out: Path, seconds: float, recipe: Recipe, reuse: bool = False) -> float:
    """The dense twin with `seconds` of training loop (LexLIP's `loop_seconds`), into `out/dense` (`out/dense/final`);
    returns its wall seconds."""
    return train_stage("finetune", data, out / DENSE_DIR, recipe.dense_settings(seconds), stream=True, reuse=reuse)
