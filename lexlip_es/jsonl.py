"""JSON Lines, read and written in one place: vectors for the parity harness and Anserini, training manifests,
the benchmarks' cached vectors. A `.gz` path is gzip on both sides. Blank lines are skipped; a line that is not
JSON is an error naming the file and the line. (Ingest manifests have their own reader, `ingest/manifest.py`: there a
bad line fails that row only, and bytes that are not UTF-8 are a row's failure too.)"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _open(path: Path, writing: bool, gz: bool) -> IO[str]:
    if gz:
        return gzip.open(path, "wt" if writing else "rt", encoding="utf-8")
    return open(path, "w" if writing else "r", encoding="utf-8")


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line.

    Raises:
        ValueError: a line that is not JSON, as `path:line: not JSON (...)`.
    """
    path = Path(path)
    with _open(path, False, path.suffix == ".gz") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write one JSON value a line (UTF-8, not ASCII-escaped) through a temporary file renamed into place, so a
    reader never sees half a file; returns the number of lines."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with _open(tmp, True, path.suffix == ".gz") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count
