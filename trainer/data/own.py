"""A team's own captioned pictures as a split Karpathy JSON that every recipe trains on.

Three shapes of input, each record checked before anything trains:
- a Karpathy JSON (`images[*].{filepath?, filename, sentences[*].raw, split?}`);
- a JSONL manifest (`{"image": path, "captions": [...] | "...", "split"?: ...}` a line);
- a folder of pictures with `captions.txt` beside them: `FILENAME<TAB>CAPTION` a line, as many lines a picture as
  it has captions.

A record without captions, or whose picture cannot be decoded, stops the run with one line naming it. Data without
splits is split by picture (seeded; 80 / 10 / 10, at least one picture in val and test); data with splits keeps
them, and a split with no picture stops the run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lexlip_es.encoders.images import ImageDecodeError, load_image
from lexlip_es.errors import LexlipError
from lexlip_es.jsonl import read_jsonl

CAPTIONS_FILE = "captions.txt"
SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)


class OwnDataError(LexlipError):
    """A record that cannot be trained on, named by where it is."""


@dataclass(frozen=True)
class Record:
    image: Path
    captions: tuple[str, ...]
    where: str
    """How an error names it: `data.jsonl line 7`, `dataset.json image 12`, `captions.txt: cat.jpg`."""
    split: str | None = None


def read_records(source: str | Path) -> list[Record]:
    """The records of a Karpathy JSON, a JSONL manifest or a folder with captions.txt."""
    path = Path(source)
    if path.is_dir():
        return _folder(path)
    if path.suffix == ".jsonl":
        return _manifest(path)
    if path.suffix == ".json":
        return _karpathy(path)
    raise OwnDataError(f"{path}: expected a Karpathy .json, a .jsonl manifest or a folder with {CAPTIONS_FILE}")


def _karpathy(path: Path) -> list[Record]:
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OwnDataError(f"{path}: not a Karpathy JSON ({exc})") from None
    records = []
    for i, item in enumerate(images):
        where = f"{path.name} image {i}"
        try:
            image = path.parent / item.get("filepath", "") / item["filename"]
            captions = tuple(s["raw"] for s in item.get("sentences", []))
        except (KeyError, TypeError, AttributeError) as exc:
            raise OwnDataError(f"{where}: not a Karpathy record (no {exc})") from None
        records.append(Record(image, captions, where, item.get("split")))
    return records


def _manifest(path: Path) -> list[Record]:
    records = []
    for number, row in read_jsonl(path):
        where = f"{path.name} line {number}"
        if not isinstance(row, dict) or "image" not in row:
            raise OwnDataError(f'{where}: not a manifest line (no "image")')
        captions = row.get("captions", [])
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise OwnDataError(f"{where}: captions must be a string or a list of strings")
        image = Path(row["image"]) if Path(row["image"]).is_absolute() else path.parent / row["image"]
        records.append(Record(image, tuple(captions), where, row.get("split")))
    return records


def _folder(path: Path) -> list[Record]:
    captions_file = path / CAPTIONS_FILE
    if not captions_file.is_file():
        raise OwnDataError(f"{path}: a folder of pictures needs {CAPTIONS_FILE} (FILENAME<TAB>CAPTION a line)")
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(captions_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, tab, caption = line.partition("\t")
        if not tab:
            raise OwnDataError(f"{CAPTIONS_FILE} line {number}: expected FILENAME<TAB>CAPTION")
        captions.setdefault(name.strip(), []).append(caption)
    return [Record(path / name, tuple(c), f"{CAPTIONS_FILE}: {name}") for name, c in captions.items()]


def check(records: Sequence[Record], max_pixels: int) -> None:
    """Every record has a caption and a picture that decodes; the first that does not stops the run."""
    if not records:
        raise OwnDataError("the data holds no pictures")
    for record in records:
        if not any(c.strip() for c in record.captions):
            raise OwnDataError(f"{record.where}: no captions")
        try:
            load_image(str(record.image), 0, max_pixels)
        except ImageDecodeError as exc:
            raise OwnDataError(f"{record.where}: not a readable picture ({exc.reason})") from None


def with_splits(records: Sequence[Record], seed: int) -> tuple[list[Record], str]:
    """The records with a split each, and a line saying where the splits came from."""
    if all(r.split for r in records):
        for name in SPLITS:
            if not any(r.split == name for r in records):
                raise OwnDataError(f"the data's {name} split has no pictures")
        return list(records), "splits as given"
    if len(records) < 3:
        raise OwnDataError(f"{len(records)} pictures cannot make train, val and test splits")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = max(1, round(FRACTIONS[1] * len(records)))
    split_of = {i: "val" if k < held else "test" if k < 2 * held else "train" for k, i in enumerate(order)}
    assigned = [Record(r.image, r.captions, r.where, split_of[i]) for i, r in enumerate(records)]
    counts = {s: sum(r.split == s for r in assigned) for s in SPLITS}
    return assigned, f"no splits in the data: split by picture with seed {seed}: " + ", ".join(
        f"{n} {s}" for s, n in counts.items()
    )


def write_karpathy(records: Sequence[Record], path: Path) -> Path:
    """The records as a Karpathy JSON (absolute picture paths) that `lexlip train` and `lexlip eval` read."""
    images = [
        {
            "filename": str(r.image.resolve()),
            "split": r.split,
            "imgid": i,
            "sentences": [{"raw": c, "imgid": i} for c in r.captions if c.strip()],
        }
        for i, r in enumerate(records)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images}), encoding="utf-8")
    return path
