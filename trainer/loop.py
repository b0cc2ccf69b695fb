"""The training loop for phase 1, phase 2 and fine-tuning: AdamW, linear decay with warm-up, gradient accumulation and
clipping, AMP on CUDA, DDP under torchrun (gloo on CPU, NCCL on GPU), checkpoints with exact resume, a progress bar
with the loss terms and metrics in JSONL."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from lexlip_es.encoders.dense import DenseEncoder
from lexlip_es.encoders.images import normalize, resize_crop
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.errors import LexlipError
from lexlip_es.model.config import get_config
from lexlip_es.tokenizer import trim_padding
from trainer.data.datasets import CorruptCounter, Pair, load_pairs, load_valid_images
from trainer.frozen import FrozenStem, cached_stem_features
from trainer.objectives import PHASES, DenseObjective, LossConfig, Pretrainer
from trainer.sparse_rows import LazyAdamW, clip_grad_norm, sparse_row_matrices
from trainer.state import load_state, save_state
from trainer.vocabulary import ActiveVocabulary

LAST = "last"
FINAL = "final"


@dataclass
class TrainConfig:
    phase: str = "phase1"
    model: str = "tiny"
    init: str | None = None
    data: str = ""
    image_root: str | None = None
    out: str = "runs/lexlip"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-5
    tower_lr: float | None = None  # the towers' bodies (vision backbone, text encoder) at this lr; heads keep `lr`
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_accum: int = 1
    clip: float = 1.0
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    max_images: int | None = None
    device: str = "auto"
    progress: bool = True
    kind: str = "lexlip"  # "dense" trains the dense twin with the same loop, data and budget
    init_backbones: str | None = None  # a dense-twin checkpoint whose towers start this LexLIP model
    stop_after: int | None = None  # end this run at that step (checkpointed) and resume later: time-boxed training
    max_seconds: float | None = None  # a wall-time budget: the schedule runs on max(step/steps, time/budget)
    threads: int | None = None  # torch CPU threads (fixed for reproducible figures); None keeps torch's default
    label: str | None = None  # what the progress bar calls this run (e.g. "stage 1/2 dense twin")
    frozen_vision_blocks: int | str | None = None  # a CNN's stem + first K blocks ("all": all of it) frozen, run once
    group_by: str | None = None  # batches hold groups of this record field together (emoji "base": siblings)
    group_size: int | None = None  # ... at most this many members of a group at a time; None: whole groups
    text_weights: str | None = None  # a transformers folder (or weights source) starting the text tower + tokenizer
    vision_weights: str | None = None  # a timm folder (or weights source, e.g. efficientnet:lite0) for the vision tower
    cache_dir: str | None = None  # where converted weights are kept (the CLI passes Settings.cache_dir)
    sparse_rows: bool = True  # on the active vocabulary, one process: vocabulary rows trained lazily (sparse_rows.py)
    packed_text: bool = True  # the text tower (and its vocabulary head) over real tokens only (model/packed.py)
    losses: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        data = json.loads(Path(path).read_text()) if path else {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        return cls(**data)

    def loss_config(self) -> LossConfig:
        if self.kind not in ("lexlip", "dense"):
            raise ValueError(f"kind must be 'lexlip' or 'dense', got {self.kind!r}")
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {sorted(PHASES)}, got {self.phase!r}")
        return LossConfig.from_dict({**PHASES[self.phase], **self.losses})


class TrainingError(LexlipError):
    pass


@dataclass
class ImageBank:
    """Every training image decoded once into uint8 (N x S x S x 3), with its captions."""

    pixels: np.ndarray
    captions: list[tuple[str, ...]]
    skipped: CorruptCounter
    groups: list[str] | None = None
    """Each image's group (TrainConfig.group_by): a group's members share batches (`group_size` at a time)."""

    @classmethod
    def build(cls, pairs: list[Pair], size: int, max_pixels: int, group_by: str | None = None) -> ImageBank:
        counter = CorruptCounter()
        valid = load_valid_images(pairs, max_pixels, counter)
        if not valid:
            raise TrainingError(f"no usable image among {len(pairs)} (first problems: {counter.reasons[:3]})")
        pixels = np.stack([resize_crop(img, size) for _, img in valid])
        groups = None
        if group_by is not None:
            missing = sum(group_by not in p.meta for p, _ in valid)
            if missing:
                raise TrainingError(f"group_by {group_by!r}: {missing} of {len(valid)} records have no such field")
            groups = [str(p.meta[group_by]) for p, _ in valid]
        return cls(pixels, [p.captions for p, _ in valid], counter, groups)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world


def _batch_indices(
    n: int,
    batch: int,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    groups: list[str] | None = None,
    group_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Epoch order and caption choice from (seed, epoch) alone, so a resumed run sees the same batches. With
    `groups`, the groups (cut into runs of at most `group_size` members) are shuffled and laid out together, so
    members of a group (skin-tone siblings) share a batch and are each other's in-batch negatives."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    caption_pick = rng.integers(0, 1 << 30, size=n)
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i in order.tolist():
            members.setdefault(groups[i], []).append(i)
        size = group_size or n
        runs = [m[start : start + size] for m in members.values() for start in range(0, len(m), size)]
        order = np.array([i for r in rng.permutation(len(runs)).tolist() for i in runs[r]])
    per_rank = (n // (batch * world)) * batch
    mine = order[rank * per_rank : (rank + 1) * per_rank]
    return mine.reshape(-1, batch), caption_pick


def sibling_mask(groups: list[str], index: np.ndarray) -> torch.Tensor:
    """B x B: which items of a batch (`index` into the bank) share a group, the diagonal excluded."""
    names = [groups[i] for i in index.tolist()]
    same = torch.tensor([[a == b for b in names] for a in names], dtype=torch.bool)
    return same & ~torch.eye(len(names), dtype=torch.bool)


def train(config: TrainConfig, echo: Any = print) -> Path:
    """Run (or resume) a training phase; returns the folder of the final checkpoint (LexLIPEncoder format).

    The stages, in the order they draw on the seeded generators: the model (`build_encoder`), its objective and
    optimizer (`build_objective`, `build_optimizer`), the training images and captions (`TrainingData.load`), the
    saved position to resume from, then `Steps.run` until the steps (or the time budget) are spent.
    """
    rank, world = _distributed()
    if config.max_seconds and world > 1:
        raise ValueError("max_seconds stops each process on its own clock: use steps under DDP")
    if config.init and (config.text_weights or config.vision_weights):
        raise ValueError("text_weights / vision_weights start a fresh model: not with init (a checkpoint)")
    if config.init_backbones and config.kind != "lexlip":
        raise ValueError("init_backbones starts a LexLIP model from a dense twin's towers")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed + rank)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    say: Any = echo if rank == 0 else (lambda message: None)
    losses = config.loss_config()
    encoder = build_encoder(config, say)
    objective = build_objective(config, encoder, losses)
    if config.sparse_rows and config.kind == "lexlip" and losses.negatives is not None and world == 1:
        sparse_row_matrices(encoder.model)
        objective.sparse_rows = True
    blocks = config.frozen_vision_blocks
    stem = FrozenStem(encoder.model.visual, blocks) if blocks is not None else None
    optimizer, params = build_optimizer(config, objective)
    data = TrainingData.load(config, encoder, losses, world, say)
    position = Position()
    if (out / LAST / "training_state.json").exists():
        position = Position.of(load_state(out / LAST, objective, optimizer))
        say(f"resuming {config.phase} at step {position.step}")
    steps = Steps(config, encoder, objective, optimizer, params, data, position, out, rank, world)
    budget_spent = steps.run(stem, say)
    if position.step < config.steps and not budget_spent:
        return out / LAST
    final = out / FINAL
    if rank == 0:
        encoder.save_pretrained(final)
    if world > 1:
        dist.barrier()
    return final


def build_encoder(config: TrainConfig, say: Any) -> Any:
    """The model to train: a checkpoint (`init`), else a fresh one of `config.model` (with pretrained tower weights
    when given), its towers optionally started from a dense twin (`init_backbones`)."""
    encoder_class: Any = DenseEncoder if config.kind == "dense" else LexLIPEncoder
    if config.init:
        encoder = encoder_class.from_pretrained(config.init, device=config.device)
    else:
        model_config = get_config(config.model)
        cache_dir = Path(config.cache_dir) if config.cache_dir else None
        if config.text_weights or config.vision_weights:
            model_config = model_config.with_weights(config.text_weights, config.vision_weights, cache_dir=cache_dir)
        encoder = encoder_class.from_config(model_config, seed=config.seed, device=config.device, cache_dir=cache_dir)
    if config.init_backbones:
        copied = load_dense_backbones(encoder.model, Path(config.init_backbones))
        say(f"started {copied} tensors from the dense twin at {config.init_backbones}")
    return encoder


def build_objective(config: TrainConfig, encoder: Any, losses: LossConfig) -> Any:
    """The module whose forward returns the losses: the dense twin's InfoNCE, or LexLIP's `Pretrainer`."""
    vocab = encoder.tokenizer.vocab
    objective: Any
    if config.kind == "dense":
        objective = DenseObjective(encoder.model, losses.temperature, losses.sibling_margin, losses.image_memory)
    else:
        objective = Pretrainer(encoder.model, losses, list(vocab.tokens), vocab.special_ids(), config.steps)
    objective = objective.to(encoder.device)
    objective.packed = config.packed_text
    objective.train()
    return objective


def build_optimizer(config: TrainConfig, objective: Any) -> tuple[torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """AdamW over the parameter groups (heads at `lr`, tower bodies at `tower_lr`), and every trained parameter;
    parameters with sparse gradients (`sparse_rows`) are updated row by row."""
    groups = parameter_groups(objective, config.lr, config.tower_lr)
    params = [p for group in groups for p in group["params"]]
    return LazyAdamW(groups, lr=config.lr, weight_decay=config.weight_decay), params


def lr_factor(config: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Linear warm-up then linear decay over the run's progress: steps done, or the time budget spent."""
    warmup = max(1, int(config.warmup * config.steps))
    if config.max_seconds:
        step = max(step, int(config.steps * min(1.0, elapsed / config.max_seconds)))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (config.steps - step) / max(1, config.steps - warmup))


@dataclass
class TrainingData:
    """The decoded training images with their captions, and the active vocabulary when the losses sample one."""

    bank: ImageBank
    active: ActiveVocabulary | None

    @classmethod
    def load(cls, config: TrainConfig, encoder: Any, losses: LossConfig, world: int, say: Any) -> TrainingData:
        pairs = load_pairs(config.data, "train", config.image_root)
        if config.max_images:
            pairs = pairs[: config.max_images]
        bank = ImageBank.build(pairs, encoder.config.vision.image_size, encoder.max_pixels, config.group_by)
        if bank.skipped.skipped:
            say(f"skipped {bank.skipped.skipped} unusable image(s), e.g. {bank.skipped.reasons[0]}")
        if len(bank.captions) < config.batch_size * world:
            raise TrainingError(f"{len(bank.captions)} images cannot fill one batch of {config.batch_size} x {world}")
        active = None
        if losses.negatives is not None:
            prior = getattr(encoder.model, "prior", None)
            extra = prior.words() if losses.prior_columns and prior is not None else []
            active = ActiveVocabulary(
                bank.captions, encoder.tokenizer, losses.negatives, losses.words_only, losses.max_df, extra
            )
            if losses.inactive_bias is not None and config.kind == "lexlip":
                heads = (encoder.model.text.cls.predictions, encoder.model.visual_head)
                active.set_inactive_bias(heads, losses.inactive_bias)
            say(f"active vocabulary: {len(active)} caption tokens + {active.negatives} sampled negatives a step")
        return cls(bank, active)


@dataclass
class Position:
    """Where a run is: steps done, the epoch, and the next batch of that epoch (all a resume needs)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Position:
        return cls(meta["step"], meta["epoch"], meta["batch_in_epoch"])


@dataclass
class Steps:
    """The optimisation loop of one run, from `position` on."""

    config: TrainConfig
    encoder: Any
    objective: Any
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    data: TrainingData
    position: Position
    out: Path
    rank: int
    world: int

    def __post_init__(self) -> None:
        self.device = self.encoder.device
        self.runner: Any = self.objective
        self.use_amp = self.config.amp and self.device.type == "cuda"
        bf16 = self.use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.stem_cache: torch.Tensor | None = None
        self.images_seen = 0
        self.batches, self.picks = self._epoch_batches()

    def _epoch_batches(self) -> tuple[np.ndarray, np.ndarray]:
        c, bank = self.config, self.data.bank
        return _batch_indices(
            len(bank.captions),
            c.batch_size,
            c.seed,
            self.position.epoch,
            self.rank,
            self.world,
            bank.groups,
            c.group_size,
        )

    def _set_lr(self, elapsed: float = 0.0) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(self.config, self.position.step, elapsed)

    def _next_batch(self) -> np.ndarray:
        if self.position.batch_in_epoch >= len(self.batches):
            self.position.epoch, self.position.batch_in_epoch = self.position.epoch + 1, 0
            self.batches, self.picks = self._epoch_batches()
        index: np.ndarray = self.batches[self.position.batch_in_epoch]
        self.position.batch_in_epoch += 1
        return index

    def _forward_backward(self, index: np.ndarray) -> Any:
        """One micro-batch: its captions (one per image, chosen by the epoch's picks) and pixels through the
        objective; the loss's gradient accumulated."""
        c, bank, vision, device = self.config, self.data.bank, self.encoder.config.vision, self.device
        texts = [bank.captions[i][self.picks[i] % len(bank.captions[i])] for i in index]
        ids, mask = trim_padding(*self.encoder.tokenizer(texts))
        if self.stem_cache is not None:
            pixels = self.stem_cache[torch.from_numpy(index).to(device)].float()
        else:
            pixels = torch.from_numpy(normalize(bank.pixels[index], vision.mean, vision.std)).to(device)
        generator = torch.Generator().manual_seed(c.seed * 1_000_003 + self.position.step * 101 + self.rank)
        active = self.data.active
        targets = active.targets(index, ids, mask, generator).to(device) if active is not None else None
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            items = torch.from_numpy(index).to(device)
            result: Any = self.runner(pixels, ids_t, mask_t, generator, targets, self._siblings(index), items)
        self.scaler.scale(result["loss"] / c.grad_accum).backward()
        self.images_seen += len(index) * self.world
        return result

    def _siblings(self, index: np.ndarray) -> torch.Tensor | None:
        groups = self.data.bank.groups
        return sibling_mask(groups, index).to(self.device) if groups is not None else None

    def _step(self) -> tuple[dict[str, float], torch.Tensor]:
        """One optimizer step over `grad_accum` micro-batches: the averaged loss terms and the gradient norm."""
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        for _ in range(c.grad_accum):
            for key, value in self._forward_backward(self._next_batch()).items():
                logged[key] = logged.get(key, 0.0) + float(value.detach()) / c.grad_accum
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_grad_norm(self.params, c.clip) if c.clip > 0 else torch.tensor(0.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.objective.momentum_update()
        self.position.step += 1
        self.objective.step.fill_(self.position.step)
        return logged, grad_norm

    def _record(self, logged: dict[str, float], grad_norm: torch.Tensor, elapsed: float) -> None:
        row = {
            "step": self.position.step,
            "epoch": self.position.epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": float(grad_norm),
            "images_per_s": self.images_seen / max(elapsed, 1e-9),
            "elapsed_s": elapsed,
            **logged,
        }
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as metrics:
            metrics.write(json.dumps(row) + "\n")

    def _bar(self) -> Any:
        c = self.config
        if not c.progress or self.rank != 0:
            return None
        from tqdm import tqdm

        label = c.label or c.phase
        if c.max_seconds:  # a time budget: the bar counts seconds, the step goes into the postfix
            return tqdm(total=round(c.max_seconds), unit="s", desc=label, dynamic_ncols=True)
        return tqdm(total=c.steps, initial=self.position.step, desc=label, dynamic_ncols=True)

    def _show(self, bar: Any, logged: dict[str, float], elapsed: float) -> None:
        budget = round(self.config.max_seconds or 0)
        bar.update(min(round(elapsed), budget) - bar.n if budget else 1)
        shown = {"step": str(self.position.step)} if self.config.max_seconds else {}
        bar.set_postfix(shown | {k: f"{v:.3g}" for k, v in logged.items()})

    def run(self, stem: FrozenStem | None, say: Any) -> bool:
        """Steps until `steps` (or `stop_after`, or the time budget); True when the time budget ended the run."""
        c, position = self.config, self.position
        if stem is not None:
            vision = self.encoder.config.vision
            pooled = stem.whole_tower and (self.encoder.kind == "dense" or vision.pool == "mean")
            folder = Path(c.cache_dir) / "features" if c.cache_dir else None
            features = cached_stem_features(
                stem, self.data.bank.pixels, lambda px: normalize(px, vision.mean, vision.std), folder, pooled
            )
            self.stem_cache = features.to(self.device)
            stem.swap_out()
            say(f"frozen image stem: {c.frozen_vision_blocks} blocks run once, {tuple(self.stem_cache.shape)}")
        whole = stem.whole if stem is not None else contextlib.nullcontext
        self._set_lr()
        if self.world > 1:  # after the stem is swapped out: DDP sees only what trains
            self.runner = torch.nn.parallel.DistributedDataParallel(self.objective, find_unused_parameters=True)
        bar = self._bar()
        started = time.monotonic()
        stop, budget_spent = min(c.steps, c.stop_after or c.steps), False
        try:
            while position.step < stop:
                logged, grad_norm = self._step()
                elapsed = time.monotonic() - started
                self._set_lr(elapsed)
                if c.max_seconds and elapsed >= c.max_seconds and position.step < c.steps:
                    stop, budget_spent = position.step, True  # the time budget is spent: this step is the last
                if not math.isfinite(logged["loss"]):
                    raise TrainingError(
                        f"loss became {logged['loss']} at step {position.step}; lower the learning rate"
                    )
                if self.rank != 0:
                    continue
                if bar is not None:
                    self._show(bar, logged, elapsed)
                if position.step % c.log_every == 0 or position.step == stop:
                    self._record(logged, grad_norm, elapsed)
                if position.step % c.checkpoint_every == 0 or position.step == stop:
                    with whole():
                        _checkpoint(self.out, self.encoder, self.objective, self.optimizer, c, position)
        finally:
            if bar is not None:
                bar.close()
            if stem is not None:
                stem.swap_in()
        return budget_spent


TOWER_PREFIXES = ("model.visual.", "model.text.")
"""Parameter names (under the objective) of the towers' bodies, what `tower_lr` applies to: the vision backbone and
the text encoder (LexLIP's `text.bert`, the dense twin's `text`). Not the vocabulary heads (`text.cls`, the visual
head, and the word embeddings the text head's decoder is tied to), nor the projections."""


HEAD_NAMES = ("model.text.cls.", "model.text.bert.embeddings.word_embeddings.")
"""Under a tower prefix but trained as heads: the text vocabulary head, and the word embeddings, which are its
decoder (tied), so a caption's lexicon can learn its words at the heads' pace."""


def is_tower(name: str) -> bool:
    return name.startswith(TOWER_PREFIXES) and not name.startswith(HEAD_NAMES)


def parameter_groups(module: torch.nn.Module, lr: float, tower_lr: float | None) -> list[dict[str, Any]]:
    """AdamW groups: everything trainable at `lr`, or with `tower_lr` the towers' bodies in a group of their own
    (a pretrained tower is fine-tuned gently while fresh heads learn fast). `base_lr` is what the schedule scales."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if tower_lr is None:
        return [{"params": [p for _, p in named], "lr": lr, "base_lr": lr}]
    towers = [p for n, p in named if is_tower(n)]
    rest = [p for n, p in named if not is_tower(n)]
    return [
        g
        for g in ({"params": rest, "lr": lr, "base_lr": lr}, {"params": towers, "lr": tower_lr, "base_lr": tower_lr})
        if g["params"]
    ]


def load_dense_backbones(model: Any, directory: Path) -> int:
    """Copy a dense twin's text and vision towers into a LexLIP model (its LM heads keep their own weights).

    Contrastive training of the dense twin needs no vocabulary-wide heads and is ~15x faster per step on a CPU, so
    it is a cheap first stage for the backbones."""
    from safetensors.torch import load_file

    config = json.loads((directory / "config.json").read_text())
    if config.get("kind") != "dense":
        raise ValueError(f"{directory} is not a dense-twin checkpoint")
    dense = load_file(str(directory / "model.safetensors"))
    target = model.state_dict()
    mapped = {}
    for key, value in dense.items():
        name = "text.bert." + key.removeprefix("text.") if key.startswith("text.") else key
        if key.startswith(("text.", "visual.")):
            if name not in target or target[name].shape != value.shape:
                raise ValueError(f"{directory}: {key} does not fit this model's {name}")
            mapped[name] = value
    model.load_state_dict(mapped, strict=False)
    model.text.tie_weights()
    return len(mapped)


def _checkpoint(
    out: Path, encoder: Any, objective: Any, optimizer: torch.optim.Optimizer, config: TrainConfig, position: Position
) -> None:
    """Write the checkpoint to a temporary folder, then swap it in as `last`: a crash never leaves half a state."""
    tmp = out / f"{LAST}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    encoder.save_pretrained(tmp)
    meta = {**asdict(position), "config": asdict(config)}
    save_state(tmp, objective, optimizer, meta)
    last = out / LAST
    old = out / f"{LAST}.old"
    if last.exists():
        last.rename(old)
    tmp.rename(last)
    if old.exists():
        shutil.rmtree(old)
