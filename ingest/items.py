"""What a worker gets for one row: the producer's checked message as an `Item`, and the item's image bytes.

The producer checks rows (`ingest.rows`); a worker still refuses a message of the wrong shape (another producer, an
old one) with a per-item error instead of failing its batch, and reads local files without following a symlink
swapped in since the check, only when they are regular files, and never more than the byte limit.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lexlip_es.errors import LexlipError


class ItemError(LexlipError):
    """One item cannot be ingested; the reason goes to the dead-letter store and the rest of the batch goes on."""


@dataclass(frozen=True)
class Item:
    """One image to ingest. `image` is a local path or an http(s) URL; `image_b64` inline bytes."""

    id: str
    image: str = ""
    image_b64: str = ""
    captions: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    row: str = ""
    """The row's fingerprint (`ingest.rows.fingerprint`), stored with the document."""

    def to_message(self) -> dict[str, Any]:
        """The JSON a worker gets (the producer builds the same from a checked row)."""
        message: dict[str, Any] = {"id": self.id, "captions": list(self.captions), "metadata": dict(self.metadata)}
        message["image_b64" if self.image_b64 else "image"] = self.image_b64 or self.image
        if self.line is not None:
            message["line"] = self.line
        if self.row:
            message["row"] = self.row
        return message

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Item:
        item_id = data.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise ItemError(f"item has no usable id: {str(item_id)[:80]!r}")
        line = data.get("line")
        where = f"line {line}: " if isinstance(line, int) else ""
        captions = data.get("captions") or ()
        if isinstance(captions, str):
            captions = (captions,)
        if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
            raise ItemError(f"{where}item {item_id!r}: captions must be strings")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ItemError(f"{where}item {item_id!r}: metadata must be an object")
        image, image_b64 = data.get("image") or "", data.get("image_b64") or ""
        if not isinstance(image, str) or not isinstance(image_b64, str) or not (image or image_b64):
            raise ItemError(f"{where}item {item_id!r} names no image")
        row = data.get("row") or ""
        return cls(
            item_id,
            image,
            image_b64,
            tuple(captions),
            dict(metadata),
            line if isinstance(line, int) else None,
            str(row),
        )

    @property
    def where(self) -> str:
        """`line N: ` when the item knows its manifest line."""
        return f"line {self.line}: " if self.line is not None else ""


def image_bytes(item: Item, max_bytes: int, fetch: Callable[[str], bytes]) -> bytes:
    """The item's encoded image: decoded from base64, fetched by `fetch(url)`, or read from a regular file."""
    from ingest.fetch import is_url

    if item.image_b64:
        try:
            data = base64.b64decode(item.image_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ItemError(f"{item.where}item {item.id!r}: image_b64 is not valid base64 ({exc})") from exc
    elif is_url(item.image):
        data = fetch(item.image)
    else:
        data = read_file(item, max_bytes)
    if not data:
        raise ItemError(f"{item.where}item {item.id!r}: the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ItemError(
            f"{item.where}item {item.id!r}: the image is {len(data):,} bytes, over the {max_bytes:,}-byte limit"
        )
    return data


def read_file(item: Item, max_bytes: int) -> bytes:
    """At most `max_bytes + 1` bytes of a regular file, opened without following a final symlink and without
    blocking on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(item.image, flags)
    except FileNotFoundError:
        raise ItemError(f"{item.where}item {item.id!r}: no such file {item.image}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ItemError(f"{item.where}item {item.id!r}: {item.image} is a symlink") from None
        raise ItemError(f"{item.where}item {item.id!r}: cannot open {item.image} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ItemError(f"{item.where}item {item.id!r}: {item.image} is not a regular file")
        if info.st_size > max_bytes:
            too_big = f"is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit"
            raise ItemError(f"{item.where}item {item.id!r}: {item.image} {too_big}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise ItemError(f"{item.where}item {item.id!r}: cannot read {item.image} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
