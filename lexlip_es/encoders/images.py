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

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""The decoders Pillow may use: common raster formats only (never EPS/PostScript, which runs Ghostscript, nor the
dozens of rare formats whose decoders see little use)."""

BACKGROUND = (228, 228, 222)
"""Transparent pixels are laid over this opaque light grey (the emoji and shapes training images use it too), not
left to show whatever colour the file stores under alpha 0."""


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
            img = Image.open(io.BytesIO(image), formats=FORMATS)
        elif isinstance(image, (str, os.PathLike)):
            path = Path(image)
            if not path.is_file():
                raise ImageDecodeError(source, "no such file")
            if path.stat().st_size == 0:
                raise ImageDecodeError(source, "empty file (0 bytes)")
            with open(path, "rb") as f:
                img = Image.open(io.BytesIO(f.read()), formats=FORMATS)
        else:
            raise ImageDecodeError(source, f"unsupported input type {type(image).__name__}")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(source, f"{width}x{height} exceeds the limit of {max_pixels:,} pixels")
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(source, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(source, f"decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(source, f"corrupt or truncated image ({exc})") from None


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """8-bit RGB: 16- and 32-bit grey scaled down by its range (not clipped to white), transparency laid over
    `BACKGROUND`."""
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _grey_to_8bit(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def _grey_to_8bit(img: PILImage.Image) -> PILImage.Image:
    """16-bit grey over its full range (0-65535); 32-bit int or float grey over 0-255, or 0-max when it goes higher."""
    from PIL import Image

    values = np.nan_to_num(np.asarray(img, dtype=np.float64))
    top = 65535.0 if img.mode.startswith("I;16") else max(255.0, float(values.max(initial=0.0)))
    scaled = np.clip(values * (255.0 / top), 0.0, 255.0)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def to_array(img: PILImage.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> npt.NDArray[np.float32]:
    """Resize the short side to `size` (bicubic), centre-crop to size x size, normalise; returns 3 x size x size."""
    return normalize(resize_crop(img, size), mean, std)


def image_batch(
    images: Sequence[ImageInput],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    offset: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.float32]:
    """N x 3 x size x size: each image decoded (`load_image`, position `offset + i` in errors) and `to_array`."""
    arrays = [to_array(load_image(img, offset + i, max_pixels), size, mean, std) for i, img in enumerate(images)]
    return np.stack(arrays)


def resize_crop(img: PILImage.Image, size: int) -> npt.NDArray[np.uint8]:
    """Short side to `size` (bicubic), centre crop; size x size x 3 uint8."""
    return np.asarray(fit(img, size), dtype=np.uint8)


def fit(img: PILImage.Image, size: int) -> PILImage.Image:
    """The centre square of `img` at size x size (bicubic): cropped first, then resized, so the work and memory
    are those of the square, never of the whole image scaled up (a 50,000 x 1 image asks for a 1 x 1 square)."""
    from PIL import Image

    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = img.crop((left, top, left + side, top + side)) if (width, height) != (side, side) else img
    if side == size:
        return square
    return square.resize((size, size), Image.Resampling.BICUBIC)


def normalize(pixels: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]) -> npt.NDArray[np.float32]:
    """H x W x 3 uint8 (or N x H x W x 3) to channels-first float32, normalised by mean and std."""
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    normalised = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(normalised, -1, -3), dtype=np.float32)
