"""Ingest items: what one manifest row holds, how manifests are read, and how an item's image is loaded.

A manifest is JSONL (`{"id", "image" | "url" | "image_b64", "captions", "metadata"}`), CSV (columns `id`, `image`,
`captions` separated by `|`, every other column is metadata) or a folder of images (ids are the relative paths).
Relative image paths resolve against the manifest's folder.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lexlip_es.errors import LexlipError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ManifestError(LexlipError):
    """A manifest that cannot be read at all (unknown format, unreadable file); bad rows are items that fail."""


class ItemError(LexlipError):
    """One item cannot be ingested; the reason goes to the dead-letter store and the rest of the batch goes on."""


@dataclass(frozen=True)
class Item:
    """One image to ingest. `image` is a local path, an http(s) URL, or base64 bytes (`image_b64`)."""

    id: str
    image: str = ""
    image_b64: str = ""
    captions: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        """The JSON the producer sends to a worker."""
        message: dict[str, Any] = {"id": self.id, "captions": list(self.captions), "metadata": dict(self.metadata)}
        if self.image_b64:
            message["image_b64"] = self.image_b64
        else:
            message["image"] = self.image
        return message

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Item:
        item_id = data.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise ItemError(f"item has no usable id: {str(item_id)[:80]!r}")
        captions = data.get("captions") or ()
        if isinstance(captions, str):
            captions = (captions,)
        if not all(isinstance(c, str) for c in captions):
            raise ItemError(f"item {item_id!r}: captions must be strings")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ItemError(f"item {item_id!r}: metadata must be an object")
        image, image_b64 = data.get("image") or "", data.get("image_b64") or ""
        if not image and not image_b64:
            raise ItemError(f"item {item_id!r} names no image")
        return cls(item_id, str(image), str(image_b64), tuple(captions), dict(metadata))


def image_bytes(item: Item, max_bytes: int, fetch: Any) -> bytes:
    """The item's encoded image: read from disk, decoded from base64, or fetched by `fetch(url)`."""
    from ingest.fetch import is_url

    if item.image_b64:
        try:
            data = base64.b64decode(item.image_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ItemError(f"item {item.id!r}: image_b64 is not valid base64 ({exc})") from exc
    elif is_url(item.image):
        data = fetch(item.image)
    else:
        path = Path(item.image)
        if not path.is_file():
            raise ItemError(f"item {item.id!r}: no such file {item.image}")
        size = path.stat().st_size
        if size > max_bytes:
            raise ItemError(f"item {item.id!r}: {item.image} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        data = path.read_bytes()
    if not data:
        raise ItemError(f"item {item.id!r}: the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ItemError(f"item {item.id!r}: the image is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    return data


def _resolve(image: str, root: Path) -> str:
    from ingest.fetch import is_url

    if not image or is_url(image) or Path(image).is_absolute():
        return image
    return str(root / image)


def read_manifest(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows as raw dicts (validated later, per item, so that a bad row fails alone)."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            yield {"id": str(file.relative_to(path)), "image": str(file)}
        return
    if not path.is_file():
        raise ManifestError(f"no such manifest: {path}")
    root = path.parent
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    yield {"id": f"{path.name}:{n}", "error": f"line {n} is not a JSON object ({exc})"}
                    continue
                given = str(row.get("image") or row.get("url") or "")
                row.setdefault("id", given or f"{path.name}:{n}")
                row["image"] = _resolve(given, root)
                yield row
    elif path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                given = row.pop("image", "") or row.pop("url", "") or ""
                captions = [c.strip() for c in (row.pop("captions", "") or "").split("|") if c.strip()]
                item_id = row.pop("id", "") or given
                yield {"id": item_id, "image": _resolve(given, root), "captions": captions, "metadata": row}
    else:
        raise ManifestError(f"{path}: manifests are .jsonl, .csv or a folder of images")
