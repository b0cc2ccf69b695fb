"""A frozen stem for CNN image towers: the first stages run once over the training images, training runs the rest.

On 2 CPU cores most of an EfficientNet step is its first, high-resolution stages (at 128 px the stem and blocks 0-2
are about 80% of a forward pass), and their ImageNet edge and texture filters are what a small data set should keep.
With `TrainConfig.frozen_vision_blocks = K` the stem (`conv_stem`, `bn1`) and `blocks[:K]` are frozen, their output
for every image of the bank is computed once (eval mode, no gradient, float16), and the training steps run with
those modules swapped out for identities. They are swapped back in for every checkpoint, so saved models and resume
states always hold the whole, unchanged tower: nothing of this reaches a checkpoint's format.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STEM = ("conv_stem", "bn1")
HEAD = ("conv_head", "bn2")
ALL = "all"
"""`frozen_vision_blocks = "all"`: the whole tower (stem, every block, conv_head and bn2) frozen and run once; the
training steps read its final feature map. The ImageNet word prior then reads exactly the features its classifier
was trained on (model/prior.py), and a step costs only the heads and the text tower."""


class FrozenStem:
    """The stem and first `blocks` stages of a timm CNN (EfficientNet family: `conv_stem`, `bn1`, `blocks`)."""

    def __init__(self, visual: Any, blocks: int | str) -> None:
        if not all(hasattr(visual, name) for name in (*STEM, "blocks")):
            raise ValueError(
                f"frozen_vision_blocks needs a CNN with conv_stem, bn1 and blocks (EfficientNet family), "
                f"not {type(visual).__name__}"
            )
        count = len(visual.blocks) if blocks == ALL else blocks
        if not isinstance(count, int) or not 0 <= count <= len(visual.blocks):
            raise ValueError(f"frozen_vision_blocks must be in 0..{len(visual.blocks)} or {ALL!r}, got {blocks!r}")
        self.visual = visual
        self.modules: dict[str, nn.Module] = {name: getattr(visual, name) for name in STEM}
        self.modules.update({f"blocks.{i}": visual.blocks[i] for i in range(count)})
        if blocks == ALL:
            self.modules.update({name: getattr(visual, name) for name in HEAD})
        for module in self.modules.values():
            module.requires_grad_(False)
        self._out = False

    @torch.no_grad()
    def features(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """The frozen modules' output for normalised pixels (N x 3 x S x S), float16, in eval mode."""
        if self._out:
            raise RuntimeError("the stem is swapped out: compute features before training starts")
        was_training = [(m, m.training) for m in self.modules.values()]
        for module, _ in was_training:
            module.eval()
        try:
            chunks = []
            for start in range(0, pixels.shape[0], batch):
                x = pixels[start : start + batch]
                for module in self.modules.values():
                    x = module(x)
                chunks.append(x.to(torch.float16))
            return torch.cat(chunks)
        finally:
            for module, mode in was_training:
                module.train(mode)

    @property
    def whole_tower(self) -> bool:
        """Whether every module of the tower is frozen (its output is the final feature map)."""
        return all(name in self.modules for name in HEAD)

    def fingerprint(self) -> str:
        """sha256 over the frozen modules' names and tensors: their outputs depend on nothing else."""
        digest = hashlib.sha256()
        for name, module in self.modules.items():
            for key, tensor in module.state_dict().items():
                digest.update(f"{name}.{key}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def swap_out(self) -> None:
        """From now on `visual.forward_features` takes the stem's output instead of pixels."""
        for name in self.modules:
            self._set(name, nn.Identity())
        self._out = True

    def swap_in(self) -> None:
        for name, module in self.modules.items():
            self._set(name, module)
        self._out = False

    @contextmanager
    def whole(self) -> Iterator[None]:
        """The whole tower for the duration (checkpoints, resume), then back to how it was."""
        out = self._out
        self.swap_in()
        try:
            yield
        finally:
            if out:
                self.swap_out()

    def _set(self, name: str, module: nn.Module) -> None:
        if name.startswith("blocks."):
            self.visual.blocks[int(name.split(".")[1])] = module
        else:
            setattr(self.visual, name, module)


def stem_features(stem: FrozenStem, pixels: np.ndarray, normalize: Any, pooled: bool = False) -> torch.Tensor:
    """The stem's output for a bank of uint8 images (N x S x S x 3), normalised in slices of 256. `pooled` (only for
    a whole frozen tower whose model reads the mean of the cells): each map averaged to 1 x 1, the same mean at a
    fraction of the memory."""
    if pooled and not stem.whole_tower:
        raise ValueError("only a whole frozen tower's features can be pooled before training")
    out = []
    for i in range(0, len(pixels), 256):
        features = stem.features(torch.from_numpy(normalize(pixels[i : i + 256])))
        out.append(features.float().mean(dim=(2, 3), keepdim=True).half() if pooled else features)
    return torch.cat(out)


def cached_stem_features(
    stem: FrozenStem, pixels: np.ndarray, normalize: Any, folder: Path | None, pooled: bool = False
) -> torch.Tensor:
    """`stem_features`, kept in `folder` under a key of the images, the frozen weights and `pooled`, so a second
    run on the same images (another recipe setting, the dense twin) reads them instead of running the tower."""
    if folder is None:
        return stem_features(stem, pixels, normalize, pooled)
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes())
    digest.update(f"{stem.fingerprint()}:{pooled}:{normalize(pixels[:1]).tobytes().hex()[:64]}".encode())
    path = Path(folder) / f"frozen-{digest.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    features = stem_features(stem, pixels, normalize, pooled)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({"features": features.contiguous()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return features
