"""Turning user images (paths, bytes, PIL images) into model input, with a typed error that names the bad input."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from lexlip_es.errors import LexlipError

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = Union[str, os.PathLike[str], bytes, "PILImage.Image"]

DEFAULT_MAX_PIXELS = 64_000_000
"""Images with more pixels than this are refused before decoding (decompression bombs)."""


class ImageDecodeError(LexlipError):
    """An input could not be turned into an image; `source` names it and `reason` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot use image {source}: {reason}")


def describe(image: Any, position: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes at position {position}>"
    return f"<{type(image).__name__} at position {position}>"


def load_image(image: ImageInput, position: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> PILImage.Image:
    """Decode fully, apply the EXIF orientation, convert to RGB; raise ImageDecodeError for anything unusable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = describe(image, position)
    try:
        if isinstance(image, Image.Image):
            img = image
        elif isinstance(image, bytes):
            if not image:
                raise ImageDecodeError(source, "empty input (0 bytes)")
            img = Image.open(io.BytesIO(image))
        elif isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise ImageDecodeError(source, "no such file")
            if path.stat().st_size == 0:
                raise ImageDecodeError(source, "empty file (0 bytes)")
            with open(path, "rb") as f:
                img = Image.open(io.BytesIO(f.read()))
        else:
            raise ImageDecodeError(source, f"unsupported input type {type(image).__name__}")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(source, f"{width}x{height} exceeds the limit of {max_pixels:,} pixels")
        img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(source, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(source, f"decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(source, f"corrupt or truncated image ({exc})") from None


def to_array(img: PILImage.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> npt.NDArray[np.float32]:
    """Resize the short side to `size` (bicubic), centre-crop to size x size, normalise; returns 3 x size x size."""
    return normalize(resize_crop(img, size), mean, std)


def resize_crop(img: PILImage.Image, size: int) -> npt.NDArray[np.uint8]:
    """Short side to `size` (bicubic), centre crop; size x size x 3 uint8."""
    from PIL import Image

    width, height = img.size
    scale = size / min(width, height)
    resized = img.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def normalize(pixels: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]) -> npt.NDArray[np.float32]:
    """H x W x 3 uint8 (or N x H x W x 3) to channels-first float32, normalised by mean and std."""
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    normalised = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(normalised, -1, -3), dtype=np.float32)
