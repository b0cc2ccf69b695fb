"""Decoding user images: a format allow-list, 16-bit grey over its range, transparency over a fixed background,
and the centre square cut before any resize (so a tiny file of 50,000 x 1 pixels costs nothing)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lexlip_es.encoders.images import BACKGROUND, ImageDecodeError, fit, load_image, resize_crop


def _encoded(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_sixteen_bit_grey_keeps_its_range_instead_of_turning_white() -> None:
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    img = load_image(_encoded(Image.fromarray(ramp)))
    pixels = np.asarray(img)
    assert img.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255
    assert 100 < float(pixels.mean()) < 155  # a ramp, not a white square


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGBA", (8, 8), (255, 0, 0, 0)),
        Image.new("LA", (8, 8), (255, 0)),
    ],
)
def test_transparent_pixels_show_the_background_not_their_hidden_colour(img: Image.Image) -> None:
    assert np.asarray(load_image(_encoded(img)))[0, 0].tolist() == list(BACKGROUND)


def test_a_palette_image_with_a_transparent_index_is_composited_too() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    data = _encoded(palette, transparency=0)
    assert np.asarray(load_image(data))[0, 0].tolist() == list(BACKGROUND)


def test_formats_outside_the_allow_list_are_refused() -> None:
    eps = _encoded(Image.new("RGB", (10, 10)), "EPS")
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        load_image(eps)
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        assert load_image(_encoded(Image.new("RGB", (10, 10)), fmt)).size == (10, 10)


def test_the_centre_square_is_cut_before_resizing() -> None:
    flat = Image.new("L", (50_000, 1), 200)
    data = _encoded(flat)
    assert len(data) < 1000
    pixels = resize_crop(load_image(data), 224)  # resizing first would ask for 11,200,000 x 224 pixels (7.5 GB)
    assert pixels.shape == (224, 224, 3) and int(pixels[0, 0, 0]) == 200
    wide = Image.fromarray(np.tile(np.arange(300, dtype=np.uint8), (100, 1)))  # columns 0..299
    square = np.asarray(fit(wide, 100))
    assert square.shape == (100, 100) and 95 <= int(square[0, 0]) <= 105  # columns 100..199 kept
