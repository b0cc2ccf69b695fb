"""What the picture data sets built from Debian packages (tuxpaint, openclipart) share: PNGs decoded and SVGs
rasterized into one square RGB look (alpha over the encoders' `BACKGROUND`, padded to a square, LANCZOS-resized),
splits assigned per picture by a seeded hash, caption tokens, and the Karpathy JSON written atomically and reused
when its settings match.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from lexlip_es.encoders.images import BACKGROUND, DEFAULT_MAX_PIXELS
from lexlip_es.errors import LexlipError
from trainer.data.debian import DebianPackage
from trainer.data.emoji import composite

SVG_OVERSAMPLE = 2
"""SVGs are rendered to fit SVG_OVERSAMPLE x the target side, then resized down like a PNG."""
EXTERNAL_HREF = re.compile(r"""(\b(?:xlink:)?href\s*=\s*)(["'])(?!data:|#)[^"']*\2""")
"""`href`s that name a file or URL rather than inline data or a fragment: blanked before rendering, so an SVG never
reads another file (the renderer would load local images by path)."""
XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")


class PictureError(LexlipError):
    """One picture could not be decoded or rendered; `reason` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source, self.reason = source, reason
        super().__init__(f"cannot use picture {source}: {reason}")


def decode_text(data: bytes) -> str:
    """Text of an XML or text file: UTF-8 (BOM dropped), else the XML declaration's encoding, else Latin-1."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        pass
    declared = XML_ENCODING.match(data)
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    return data.decode("latin-1")


def square(image: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """RGB of `image` over `background`, padded with `background` to a square (the picture centred)."""
    flat = composite(image, background)
    width, height = flat.size
    if width == height:
        return flat
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), background)
    canvas.paste(flat, ((side - width) // 2, (side - height) // 2))
    return canvas


def fit(image: Image.Image, size: int, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """`square(image)` resized to `size` x `size` (LANCZOS)."""
    flat = square(image, background)
    return flat if flat.size == (size, size) else flat.resize((size, size), Image.Resampling.LANCZOS)


def open_png(data: bytes, source: str) -> Image.Image:
    """A PNG decoded in full (PNG only; no more than the encoders' pixel limit)."""
    try:
        with warnings.catch_warnings():  # the pixel limit below is ours; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
        with image:
            if image.width * image.height > DEFAULT_MAX_PIXELS:
                raise PictureError(source, f"{image.width}x{image.height} is over {DEFAULT_MAX_PIXELS:,} pixels")
            image.load()
            return image.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise PictureError(source, f"not a readable PNG ({exc})") from None


def rasterize_svg(data: bytes, side: int, source: str) -> Image.Image:
    """An SVG rendered with resvg to fit `side` x `side` (aspect kept, transparent around it), external files and
    system fonts left out so the pixels depend on the SVG alone."""
    try:
        import resvg_py
    except ImportError:
        raise PictureError(source, "rendering SVG needs resvg-py (pip install 'lexlip-es[model]')") from None
    text = EXTERNAL_HREF.sub(r"\1\2\2", decode_text(data))
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # the text is already decoded; a stale encoding would mislead
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, width=side, height=side, dpi=96.0, skip_system_fonts=True)
    except BaseException as exc:  # the binding raises ValueError, and a Rust panic arrives as PanicException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):
            raise
        raise PictureError(source, f"SVG does not render ({type(exc).__name__}: {exc})") from None
    return open_png(bytes(png), source)


def load_picture(path: Path, kind: str, size: int, source: str) -> Image.Image:
    """The file at `path` (`kind` "png" or "svg") as a `size` x `size` RGB picture."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PictureError(source, f"unreadable ({exc.strerror or exc})") from None
    if kind == "svg":
        return fit(rasterize_svg(data, size * SVG_OVERSAMPLE, source), size)
    return fit(open_png(data, source), size)


def split_of(key: str, seed: int, fractions: Sequence[tuple[str, float]]) -> str:
    """The split of one picture: a seeded hash of `key` placed in [0, 1) against the cumulative `fractions`
    (e.g. `(("test", 0.2), ("val", 0.2))`); past them, "train". Depends on the key and seed alone."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    point, edge = int.from_bytes(digest[:8], "big") / 2**64, 0.0
    for name, fraction in fractions:
        edge += fraction
        if point < edge:
            return name
    return "train"


def tokens(caption: str) -> list[str]:
    """Lower-case words of a caption, punctuation dropped (Karpathy's `tokens`)."""
    return TOKEN.findall(caption.lower())


def sentences(captions: Sequence[str], imgid: int, first_sentid: int) -> list[dict[str, Any]]:
    return [{"raw": c, "tokens": tokens(c), "imgid": imgid, "sentid": first_sentid + k} for k, c in enumerate(captions)]


def sources(packages: Sequence[DebianPackage]) -> list[dict[str, str]]:
    return [{"package": p.name, "version": p.version, "sha256": p.sha256, "licence": p.licence} for p in packages]


def split_counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {name: sum(r["split"] == name for r in records) for name in ("train", "val", "test")}


def finished(path: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The data set at `path` when it was finished with exactly the `wanted` header values, else None."""
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return data if all(data.get(k) == v for k, v in wanted.items()) and "counts" in data else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as sorted-key JSON, written to a temporary name and moved into place."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", compress_level=6)
