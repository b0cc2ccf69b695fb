"""Image-caption data sets: Karpathy-split JSON (Flickr30k/COCO/shapes), JSONL manifests and webdataset tar shards.

Every source yields `Pair(image, captions, image_id)`. Images load lazily through the encoders' loader, so a corrupt
file is skipped and counted (`CorruptCounter`) instead of crashing a run.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lexlip_es.encoders.images import ImageDecodeError, ImageInput, load_image
from lexlip_es.jsonl import read_jsonl


@dataclass(frozen=True)
class Pair:
    image: ImageInput
    captions: tuple[str, ...]
    image_id: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class CorruptCounter:
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, error: ImageDecodeError) -> None:
        self.skipped += 1
        if len(self.reasons) < 20:
            self.reasons.append(str(error))


KARPATHY_FIELDS = frozenset({"filepath", "filename", "split", "sentences", "sentids", "imgid", "cocoid"})


def load_karpathy(
    path: str | Path, split: str, image_root: str | Path | None = None, *, exact_split: bool = False
) -> list[Pair]:
    """The Karpathy-split JSON used for Flickr30k and COCO: `images[*].{filepath?, filename, split, sentences}`.

    `split="train"` also takes COCO's `restval` (unless `exact_split`); `split="all"` takes every
    record. Paths are relative to `image_root` (default:
    the JSON's folder). Every other field of a record (shapes' `objects`, emoji's `group`, `subgroup`, ...) lands in
    `Pair.meta`.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    data = json.loads(path.read_text())
    wanted = {"train", "restval"} if split == "train" and not exact_split else {split}
    pairs = []
    for record in data["images"]:
        if split != "all" and record.get("split") not in wanted:
            continue
        image_path = root / record.get("filepath", "") / record["filename"]
        captions = tuple(s["raw"].strip() for s in record["sentences"])
        meta = {k: v for k, v in record.items() if k not in KARPATHY_FIELDS}
        pairs.append(Pair(str(image_path), captions, str(record.get("imgid", record["filename"])), meta))
    if not pairs:
        raise ValueError(f"{path} has no images in split {split!r}")
    return pairs


def load_manifest(path: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """JSONL lines `{"image": path, "captions": [...], "id": optional}`; relative paths resolve against `image_root`
    (default: the manifest's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    pairs = []
    for number, row in read_jsonl(path):
        try:
            image, captions = row["image"], row["captions"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a manifest line (no {exc})") from None
        if isinstance(captions, str):
            captions = [captions]
        image_path = Path(image) if Path(image).is_absolute() else root / image
        pairs.append(Pair(str(image_path), tuple(captions), str(row.get("id", number))))
    return pairs


def iter_webdataset(shards: Sequence[str | Path]) -> Iterator[Pair]:
    """webdataset tar shards: members `KEY.jpg|jpeg|png|webp` with `KEY.txt` (one caption a line) or `KEY.json`
    (`{"captions": [...]}` or `{"caption": "..."}`), grouped by key in tar order."""
    image_exts = {"jpg", "jpeg", "png", "webp"}
    for shard in shards:
        with tarfile.open(shard) as tar:
            current: str | None = None
            group: dict[str, bytes] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                if current is not None and key != current:
                    yield from _webdataset_pair(current, group, image_exts)
                    group = {}
                current = key
                data = tar.extractfile(member)
                group[ext.lower()] = data.read() if data is not None else b""
            if current is not None:
                yield from _webdataset_pair(current, group, image_exts)


def _webdataset_pair(key: str, group: dict[str, bytes], image_exts: set[str]) -> Iterator[Pair]:
    image = next((group[e] for e in sorted(image_exts) if e in group), None)
    if image is None:
        return
    if "json" in group:
        meta = json.loads(group["json"])
        captions = meta.get("captions") or [meta.get("caption", "")]
    else:
        captions = group.get("txt", b"").decode("utf-8").splitlines()
    captions = [c.strip() for c in captions if c.strip()]
    if captions:
        yield Pair(image, tuple(captions), key)


def write_webdataset(pairs: Sequence[Pair], shard: str | Path) -> Path:
    """Write pairs (image paths or bytes) as one webdataset shard: KEY.png + KEY.txt."""
    shard = Path(shard)
    with tarfile.open(shard, "w") as tar:
        for pair in pairs:
            image = pair.image if isinstance(pair.image, bytes) else Path(str(pair.image)).read_bytes()
            for name, data in (
                (f"{pair.image_id}.png", image),
                (f"{pair.image_id}.txt", "\n".join(pair.captions).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return shard


def load_pairs(source: str | Path, split: str = "train", image_root: str | Path | None = None) -> list[Pair]:
    """Any supported source by its name: a Karpathy JSON, a JSONL manifest, a .tar shard or a folder of shards."""
    path = Path(source)
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if not shards:
            raise ValueError(f"{path} holds no .tar shards")
        return list(iter_webdataset(shards))
    if path.suffix == ".tar":
        return list(iter_webdataset([path]))
    if path.suffix == ".jsonl":
        return load_manifest(path, image_root)
    if path.suffix == ".json":
        return load_karpathy(path, split, image_root)
    raise ValueError(f"{path}: expected a Karpathy .json, a .jsonl manifest, a .tar shard or a folder of shards")


def load_valid_images(pairs: Sequence[Pair], max_pixels: int, counter: CorruptCounter) -> list[tuple[Pair, Any]]:
    """Decode every image once; unusable ones are counted and dropped."""
    kept = []
    for i, pair in enumerate(pairs):
        try:
            kept.append((pair, load_image(pair.image, i, max_pixels)))
        except ImageDecodeError as exc:
            counter.add(exc)
    return kept
