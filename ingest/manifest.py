"""Reading manifests into numbered rows: JSONL, CSV or a folder of images, whatever bytes they hold.

A manifest is JSONL (`{"id", "image" | "url" | "image_b64", "captions", "metadata"}`), CSV (columns `id`, `image`
or `url`, `captions` separated by `|`, every other column is metadata) or a folder of images (ids are the relative
paths). Each row comes out as a `Row` with its line number; a row that cannot be read (invalid UTF-8, not JSON,
over the size limit, a CSV record the parser refuses) comes out with `error` set instead of stopping the run, so the
producer accounts for it like any other failed row. A UTF-8 byte-order mark is skipped. Folders are walked without
following symlinked directories; whether a file lies under the image root is the row checks' business.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lexlip_es.errors import LexlipError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
BOM = b"\xef\xbb\xbf"


class ManifestError(LexlipError):
    """A manifest that cannot be read at all (unknown format, unreadable file); bad rows are items that fail."""


@dataclass(frozen=True)
class Row:
    """One manifest row: its 1-based line (a folder's file number), its fields, or why it could not be read."""

    line: int
    data: dict[str, Any] | None = None
    error: str | None = None


def read_manifest(path: str | Path, max_row_bytes: int = 1 << 20) -> Iterator[Row]:
    """The rows of a JSONL or CSV manifest, or of a folder of images, in order."""
    path = Path(path)
    if path.is_dir():
        yield from _folder_rows(path)
        return
    if not path.is_file():
        raise ManifestError(f"no such manifest: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ManifestError(f"{path}: manifests are .jsonl, .csv or a folder of images")
    try:
        with open(path, "rb") as f:
            if suffix == ".csv":
                yield from _csv_rows(f, path.name, max_row_bytes)
            else:
                yield from _jsonl_rows(f, max_row_bytes)
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from exc


def _folder_rows(root: Path) -> Iterator[Row]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        files.extend(Path(folder) / n for n in sorted(names) if Path(n).suffix.lower() in IMAGE_SUFFIXES)
    for n, file in enumerate(files, 1):
        yield Row(n, {"id": file.relative_to(root).as_posix(), "image": file.relative_to(root).as_posix()})


def _lines(f: IO[bytes], max_row_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline) or (line number, None) for a line over the limit, read without
    ever holding more than the limit of it."""
    n = 0
    while True:
        raw = f.readline(max_row_bytes + 1)
        if not raw:
            return
        n += 1
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
                raw = f.readline(1 << 20)
            yield n, None
            continue
        yield n, raw.rstrip(b"\r\n")


def _decode(raw: bytes, n: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"line {n} is not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
        ) from None


def _jsonl_rows(f: IO[bytes], max_row_bytes: int) -> Iterator[Row]:
    for n, raw in _lines(f, max_row_bytes):
        if raw is None:
            yield Row(n, error=f"line {n} is longer than the {max_row_bytes:,}-byte limit for a row")
            continue
        if not raw.strip():
            continue
        try:
            row = json.loads(_decode(raw, n))
            if not isinstance(row, dict):
                raise ValueError(f"line {n} is not a JSON object (a {type(row).__name__})")
        except ValueError as exc:
            message = str(exc) if str(exc).startswith(f"line {n} ") else f"line {n} is not a JSON object ({exc})"
            yield Row(n, error=message)
            continue
        yield Row(n, row)


def _csv_rows(f: IO[bytes], name: str, max_row_bytes: int) -> Iterator[Row]:
    """CSV records as rows. Bytes are decoded per record (a bad byte fails its record, not the file); a field is
    limited to the row limit through the parser's own check, set for this reader only (`field_size_limit` is a
    module-wide setting, so it is restored afterwards)."""
    text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
    previous_limit = csv.field_size_limit(max_row_bytes)
    try:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ManifestError(f"{name}: the header line cannot be read ({exc})") from exc
        columns = [c.strip() for c in header]
        if not {"image", "url"} & set(columns):
            raise ManifestError(f"{name}: the header names no `image` or `url` column (it has {columns[:12]})")
        yield from _csv_records(reader, columns, max_row_bytes)
    finally:
        csv.field_size_limit(previous_limit)
        text.detach()


def _csv_records(reader: Any, columns: list[str], max_row_bytes: int) -> Iterator[Row]:
    line = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(line, error=f"line {line} is not a usable CSV record ({exc})")
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not any(field.strip() for field in record):
            continue
        if any(_has_bad_bytes(field) for field in record):
            yield Row(start, error=f"line {start} is not valid UTF-8")
            continue
        if sum(len(field) for field in record) > max_row_bytes:
            yield Row(start, error=f"line {start} is longer than the {max_row_bytes:,}-byte limit for a row")
            continue
        if len(record) != len(columns):
            yield Row(start, error=f"line {start} has {len(record)} fields; the header has {len(columns)}")
            continue
        yield Row(start, _csv_fields(dict(zip(columns, record, strict=True))))


def _csv_fields(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in ("id", "image", "url"):
        value = row.pop(key, "").strip()
        if value:
            data[key] = value
    data["captions"] = [c.strip() for c in row.pop("captions", "").split("|") if c.strip()]
    data["metadata"] = row
    return data


def _has_bad_bytes(text: str) -> bool:
    """True when the text holds surrogate escapes, i.e. bytes that were not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)
