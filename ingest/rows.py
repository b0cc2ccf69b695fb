"""The producer's row checks: the one place that decides whether a manifest row becomes a worker message.

A row passes when its id, image source, captions, metadata and size are usable; otherwise it fails with a reason
that names its line, before anything reaches the broker. The policies a careful user would ask about:

- **ids**: a row's `id` (a string, or an integer taken as its decimal string); without one, the image path or URL as
  written. At most 512 UTF-8 bytes, no control characters. The first row with an id that passes is the one sent;
  a later row with the same id fails as a duplicate naming the first line.
- **local images** resolve against the image root (the manifest's folder unless given), symlinks included, and must
  stay inside it: `../`, absolute paths elsewhere and links out of the root fail. Only regular files are read.
- **metadata** may not use the fields lexlip-es writes (`image`, `captions`, `lexlip_*`, the lexicon fields) nor
  names starting with `_`.
- **sizes**: a row's message is at most `max_row_bytes` (inline base64 images included: larger images belong in
  files), at most `max_captions` captions of `max_caption_chars` characters each.

Every passing row carries a fingerprint of its content (source, captions, metadata, and a local file's size and
modification time): a document is "already there" only when its stored fingerprint matches, so a changed row is
indexed again on the next run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.fetch import is_url
from ingest.manifest import Row
from lexlip_es.bulk import MAX_ID_BYTES, RESERVED
from lexlip_es.errors import LexlipError

ROW_FIELD = "lexlip_row"
"""The fingerprint of the manifest row a document was made from."""
DISPLAY_FIELDS = frozenset({"image", "captions"})
"""Fields the ingest pipeline writes for people (the image source and the captions as given)."""
RESERVED_METADATA = RESERVED | DISPLAY_FIELDS | {ROW_FIELD}


class RowError(LexlipError):
    """A row that will not be sent to the workers; the message says why."""


@dataclass(frozen=True)
class RowLimits:
    max_row_bytes: int = 1 << 20
    max_image_bytes: int = 20 * 1024 * 1024
    max_captions: int = 64
    max_caption_chars: int = 2000


@dataclass(frozen=True)
class CheckedRow:
    """A row after the checks: the message for a worker, or the reason it failed (naming its line)."""

    line: int
    id: str | None
    message: dict[str, Any] | None = None
    reason: str | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.message is not None


class RowChecker:
    """Checks the rows of one manifest, in order (it remembers the ids it has passed)."""

    def __init__(self, image_root: str | Path, limits: RowLimits | None = None, id_prefix: str = "") -> None:
        self.root = Path(image_root).resolve()
        self.limits = limits or RowLimits()
        self.id_prefix = id_prefix
        self.first_line: dict[str, int] = {}

    def check(self, row: Row) -> CheckedRow:
        item_id: str | None = None
        try:
            if row.error is not None or row.data is None:
                raise RowError(row.error or "unreadable")
            data = row.data
            source, extra = self._image(data)
            item_id = self._id(data, source)
            message = {
                "id": item_id,
                "line": row.line,
                **source,
                "captions": self._captions(data.get("captions")),
                "metadata": self._metadata(data.get("metadata")),
            }
            message["row"] = fingerprint(message, extra)
            size = len(json.dumps(message, ensure_ascii=False).encode("utf-8"))
            if size > self.limits.max_row_bytes:
                raise RowError(
                    f"the row is {size:,} bytes, over the {self.limits.max_row_bytes:,}-byte limit for a message "
                    "(write inline images to files)"
                )
            if item_id in self.first_line:
                raise RowError(f"duplicate id {item_id!r} (first on line {self.first_line[item_id]}; the first wins)")
        except RowError as exc:
            reason = str(exc) if str(exc).startswith(f"line {row.line} ") else f"line {row.line}: {exc}"
            return CheckedRow(row.line, item_id, reason=reason)
        self.first_line[item_id] = row.line
        return CheckedRow(row.line, item_id, message, size=size)

    # --- the fields -------------------------------------------------------------------------------------------------
    def _id(self, data: Mapping[str, Any], source: Mapping[str, str]) -> str:
        raw = data.get("id")
        if raw is None or raw == "":
            raw = data.get("image") or data.get("url")
            if not raw:
                raise RowError("the row has no id (an inline image_b64 needs one)")
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise RowError(f"the id must be a string or an integer, not {type(raw).__name__}")
        item_id = self.id_prefix + str(raw)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in item_id):
            raise RowError(f"the id {item_id[:60]!r} holds control characters")
        try:
            encoded = item_id.encode("utf-8")
        except UnicodeEncodeError:
            raise RowError(f"the id {item_id[:60]!r} is not valid Unicode (a lone surrogate)") from None
        if len(encoded) > MAX_ID_BYTES:
            raise RowError(f"the id is {len(encoded):,} bytes, over the {MAX_ID_BYTES}-byte limit")
        return item_id

    def _image(self, data: Mapping[str, Any]) -> tuple[dict[str, str], list[int]]:
        """The message's image field and, for a local file, [size, mtime_ns] for the fingerprint."""
        given = [k for k in ("image", "url", "image_b64") if data.get(k) not in (None, "")]
        if not given:
            raise RowError("the row names no image (image, url or image_b64)")
        if len(given) > 1:
            raise RowError(f"the row names more than one image ({', '.join(given)})")
        value = data[given[0]]
        if not isinstance(value, str):
            raise RowError(f"{given[0]} must be a string, not {type(value).__name__}")
        if given[0] == "image_b64":
            return {"image_b64": self._inline(value)}, []
        if is_url(value):
            if not value.lower().startswith(("http://", "https://")):
                raise RowError(f"{value[:80]!r}: only http and https URLs are fetched")
            return {"image": value}, []
        path, size, mtime = self._local(value)
        return {"image": path}, [size, mtime]

    def _inline(self, value: str) -> str:
        limit = self.limits.max_image_bytes
        if len(value) * 3 // 4 > limit:
            raise RowError(f"image_b64 holds about {len(value) * 3 // 4:,} bytes, over the {limit:,}-byte limit")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RowError(f"image_b64 is not valid base64 ({exc})") from None
        return value

    def _local(self, given: str) -> tuple[str, int, int]:
        try:
            path = Path(given)
            real = (path if path.is_absolute() else self.root / path).resolve(strict=True)
        except FileNotFoundError:
            raise RowError(f"no such file {given[:200]}") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise RowError(f"{given[:200]} cannot be resolved ({exc})") from None
        if not real.is_relative_to(self.root):
            raise RowError(f"{given[:200]} lies outside the image root {self.root} (see --image-root)")
        try:
            info = real.stat()
        except OSError as exc:
            raise RowError(f"{given[:200]} cannot be read ({exc.strerror or exc})") from None
        if not stat.S_ISREG(info.st_mode):
            raise RowError(f"{given[:200]} is not a regular file")
        if info.st_size == 0:
            raise RowError(f"{given[:200]} is empty (0 bytes)")
        if info.st_size > self.limits.max_image_bytes:
            raise RowError(
                f"{given[:200]} is {info.st_size:,} bytes, over the {self.limits.max_image_bytes:,}-byte limit"
            )
        return str(real), info.st_size, info.st_mtime_ns

    def _captions(self, raw: Any) -> list[str]:
        if raw is None:
            return []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise RowError(f"captions must be a string or a list of strings, not {_shape(raw)}")
        captions = [c.strip() for c in raw if c.strip()]
        if len(captions) > self.limits.max_captions:
            raise RowError(f"{len(captions)} captions, over the limit of {self.limits.max_captions}")
        for n, caption in enumerate(captions, 1):
            try:
                caption.encode("utf-8")
            except UnicodeEncodeError:
                raise RowError(f"caption {n} is not valid Unicode (a lone surrogate)") from None
            if len(caption) > self.limits.max_caption_chars:
                raise RowError(
                    f"caption {n} is {len(caption):,} characters, over the limit of {self.limits.max_caption_chars:,}"
                )
        return captions

    def _metadata(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise RowError(f"metadata must be an object, not {_shape(raw)}")
        for key in raw:
            if key in RESERVED_METADATA or key.startswith(("lexlip_", "_")) or not key.strip():
                raise RowError(f"metadata field {key[:60]!r} is reserved (lexlip-es writes it, or the engine does)")
        try:
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RowError("metadata is not valid Unicode (a lone surrogate)") from None
        return dict(raw)


def fingerprint(message: Mapping[str, Any], extra: list[int]) -> str:
    """A short hash of what a document is made from (the row, without its line, and a local file's stat)."""
    content = {k: v for k, v in message.items() if k not in ("id", "line", "row")}
    text = json.dumps([content, extra], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _shape(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value, default=str)[:40]}"
