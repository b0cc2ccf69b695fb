"""What the torch encoders share: device choice, AMP, batching, image tensors, checkpoint save and load."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.encoders.images import DEFAULT_MAX_PIXELS, ImageInput, image_batch
from lexlip_es.model import create_model, create_tokenizer
from lexlip_es.model.config import CONFIG_FILE, LexLIPConfig, get_config
from lexlip_es.model.screen import bf16_matmul_is_fast
from lexlip_es.model.towers import WEIGHTS_FILE
from lexlip_es.query_weights import QueryWeights
from lexlip_es.tokenizer import LENGTH_WINDOW, TextTokenizer, length_batches


def choose_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class TorchEncoderBase:
    """Holds a model, its config and tokenizer on one device; subclasses turn pooled outputs into their vector type."""

    kind = "lexlip"

    def __init__(
        self,
        model: nn.Module,
        config: LexLIPConfig,
        tokenizer: TextTokenizer,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.device = choose_device(device)
        self.model: Any = model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.model_id = f"{config.name}-unsaved"
        """Recorded with every document this encoder writes; set from the weights' hash when loaded or saved."""
        self.query_weights: QueryWeights | None = None
        """The checkpoint's query term weights (lexlip_es/query_weights.py), saved and loaded with it."""
        self.screen_texts = (
            self.device.type == "cpu" and hasattr(self.model, "encode_text_screened") and bf16_matmul_is_fast()
        )
        """Texts through the screened vocabulary head (model/screen.py): the same lexicons to float32 rounding,
        faster on a CPU with bf16 matrix units."""

    @property
    def vocab(self) -> Any:
        return self.tokenizer.vocab

    @property
    def image_size(self) -> int:
        """The side of the square images the image tower reads."""
        return int(self.config.vision.image_size)

    @classmethod
    def from_config(
        cls, name_or_path: str | Path, *, seed: int | None = 0, device: str | None = None, **model_kwargs: Any
    ) -> Any:
        """A fresh model of a registered size (random where no weights are given, seeded)."""
        config = get_config(name_or_path).with_(kind=cls.kind)
        tokenizer = create_tokenizer(config)
        model = create_model(config, seed=seed, tokenizer=tokenizer, **model_kwargs)
        return cls(model, config, tokenizer, device=device)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | None = None, batch_size: int = 32) -> Any:
        """Load a checkpoint folder written by `save_pretrained`: config.json, model.safetensors, tokenizer files."""
        from safetensors.torch import load_model

        directory = Path(directory)
        data = json.loads((directory / CONFIG_FILE).read_text())
        config = LexLIPConfig.from_dict(data)
        if config.kind != cls.kind:
            raise ValueError(f"{directory} holds a {config.kind!r} model, not {cls.kind!r}")
        tokenizer = create_tokenizer(config, relative_to=directory)
        # Build the architecture only: weights come from the checkpoint, never from the config's sources.
        bare = config.with_(text=replace(config.text, weights=None), vision=replace(config.vision, weights=None))
        model = create_model(bare, seed=None, tokenizer=tokenizer)
        load_model(model, str(directory / WEIGHTS_FILE), strict=True)
        encoder = cls(model, config, tokenizer, device=device, batch_size=batch_size)
        encoder.model_id = checkpoint_model_id(directory)
        encoder.query_weights = QueryWeights.load(directory)
        return encoder

    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(directory)
        data = self.config.with_(tokenizer=".").to_dict()
        (directory / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
        save_model(self.model, str(directory / WEIGHTS_FILE))
        if self.query_weights is not None:
            self.query_weights.save(directory)
        self.model_id = checkpoint_model_id(directory)
        return directory

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def _text_outputs(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """One output row per text, in the texts' order. A window of `LENGTH_WINDOW` batches is tokenized at once and
        run in batches of similar length, each cut to its longest text: the same rows as fixed-length batches at a
        fraction of the cost, and only one window of vocabulary-wide rows is alive."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text at position {i} is a {type(text).__name__}, not a str")
        window = self.batch_size * LENGTH_WINDOW
        for start in range(0, len(texts), window):
            yield from self._text_window(texts[start : start + window])

    def _text_window(self, texts: list[str]) -> list[np.ndarray]:
        ids, mask = self.tokenizer(texts)
        rows: list[np.ndarray] = [np.empty(0)] * len(texts)
        for picked, short_ids, short_mask in length_batches(ids, mask, self.batch_size):
            encode = self.model.encode_text_screened if self.screen_texts else self.model.encode_text
            with torch.inference_mode(), self._autocast():
                pooled = encode(
                    torch.from_numpy(short_ids).to(self.device), torch.from_numpy(short_mask).to(self.device)
                )
            for row, out in zip(picked.tolist(), np.asarray(pooled.float().cpu().numpy()), strict=True):
                rows[row] = out
        return rows

    def _rows(self, n: int, run: Callable[[slice], np.ndarray]) -> Iterator[np.ndarray]:
        for part in batches(n, self.batch_size):
            with torch.inference_mode(), self._autocast():
                out = run(part)
            yield from out

    def image_tensor(self, images: Sequence[ImageInput], offset: int = 0) -> torch.Tensor:
        vision = self.config.vision
        return torch.from_numpy(
            image_batch(images, vision.image_size, vision.mean, vision.std, offset, self.max_pixels)
        )

    def _image_outputs(self, images: Sequence[ImageInput]) -> Iterator[np.ndarray]:
        """One output row per image, a batch at a time (1M images never hold 1M vocabulary-wide rows)."""
        images = list(images)

        def run(part: slice) -> np.ndarray:
            pixels = self.image_tensor(images[part], offset=part.start).to(self.device)
            return np.asarray(self.model.encode_image(pixels).float().cpu().numpy())

        return self._rows(len(images), run)
