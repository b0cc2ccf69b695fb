"""Several Karpathy-layout data sets as one: the records of each, in order, with their splits, their image paths
made relative to the mixture's folder, and a `dataset` field naming where each came from.

The photographs recipe trains on emoji and clipart together this way; `trainer.data.datasets.load_karpathy` reads a
mixture like any other Karpathy JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = 2


def capped(records: Sequence[dict[str, Any]], max_per_caption: int | None) -> list[dict[str, Any]]:
    """The records, keeping at most `max_per_caption` of those whose first caption is the same (case aside), first
    ones first: openclipart holds 1,378 generated stars all called "star", contradictory in-batch negatives."""
    if max_per_caption is None:
        return list(records)
    seen: dict[str, int] = {}
    kept = []
    for record in records:
        key = record["sentences"][0]["raw"].strip().lower() if record["sentences"] else ""
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= max_per_caption:
            kept.append(record)
    return kept


def mixture_records(
    parts: Sequence[tuple[str, Path]], out_dir: Path, max_per_caption: int | None = None
) -> list[dict[str, Any]]:
    """The records of every `(name, Karpathy JSON)` part (`capped`), renumbered (imgid, sentid) and pointing at
    their images from `out_dir`."""
    records: list[dict[str, Any]] = []
    sentid = 0
    for name, path in parts:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for record in capped(data["images"], max_per_caption):
            folder = Path(path).parent / record.get("filepath", "")
            imgid = len(records)
            sentences = [{**s, "imgid": imgid, "sentid": sentid + k} for k, s in enumerate(record["sentences"])]
            sentid += len(sentences)
            records.append(
                {
                    **record,
                    "filepath": os.path.relpath(folder, out_dir),
                    "imgid": imgid,
                    "sentences": sentences,
                    "sentids": [s["sentid"] for s in sentences],
                    "dataset": name,
                    "group": str(record.get("base") or f"{name}:{record['imgid']}"),
                }
            )
    return records


def write_mixture(
    out_dir: str | Path, name: str, parts: Sequence[tuple[str, Path]], max_per_caption: int | None = None
) -> Path:
    """`dataset_<name>.json` in `out_dir` holding every part's records; rewritten only when a part or the cap
    changed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dataset_{name}.json"
    stamps: list[Any] = [
        [part, str(Path(p).resolve()), Path(p).stat().st_mtime_ns, Path(p).stat().st_size] for part, p in parts
    ]
    stamps.append({"max_per_caption": max_per_caption})
    if path.exists():
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            header = {}
        if header.get("format") == FORMAT and header.get("parts") == stamps:
            return path
    records = mixture_records(parts, out, max_per_caption)
    counts = {f"{part}/{split}": 0 for part, _ in parts for split in ("train", "val", "test")}
    for record in records:
        key = f"{record['dataset']}/{record['split']}"
        counts[key] = counts.get(key, 0) + 1
    data = {"dataset": name, "format": FORMAT, "parts": stamps, "counts": counts, "images": records}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path
