"""Small encoder bases (pyserini style): a query side that encodes texts and a document side that encodes images."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lexlip_es.encoders.images import ImageInput


class TextEncoder(ABC):
    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> list[Any]:
        """One vector per text, in order."""


class ImageEncoder(ABC):
    @abstractmethod
    def encode_images(self, images: Sequence[ImageInput]) -> list[Any]:
        """One vector per image, in order; an unusable image raises ImageDecodeError naming it."""


def checkpoint_model_id(directory: str | Path) -> str:
    """`<config name>-<first 12 hex of sha256(model.safetensors)>`: the same weights give the same id anywhere."""
    directory = Path(directory)
    name = json.loads((directory / "config.json").read_text()).get("name") or "lexlip"
    digest = hashlib.sha256()
    with open(directory / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{name}-{digest.hexdigest()[:12]}"
