"""Small encoder bases (pyserini style): a query side that encodes texts and a document side that encodes images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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
