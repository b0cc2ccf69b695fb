"""`tuxpaint`: Tux Paint's stamps (Debian's `tuxpaint-stamps-default`, GPL-2+) with their English descriptions.

Each stamp is a picture under usr/share/tuxpaint/stamps/CATEGORY/.../STEM (`.png`, `.svg` or both; the PNG is taken
when both exist, an SVG alone is rasterized) beside `STEM.txt`, whose first line is the English description ("A red
apple."; translations follow as `lang.utf8=...` lines and are ignored). The description is the record's one caption:
it is what a search for that stamp asks. `animals/` and `symbols/` are never read (`animals/` is kept for an
independent check), and stamps without a description are skipped and counted. Pictures are composited on the
encoders' background, padded to a square and resized; splits are 60/20/20 per picture by a seeded hash. The output
is byte-for-byte deterministic.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lexlip_es.encoders.images import BACKGROUND
from lexlip_es.settings import Settings
from trainer.data import pictures
from trainer.data.debian import TUXPAINT_STAMPS, DebianPackage, fetch_and_extract

STAMPS_PREFIX = "usr/share/tuxpaint/stamps"
JSON_NAME = "dataset_tuxpaint.json"
EXCLUDED = frozenset({"animals", "symbols"})
"""Top-level categories never read: animals/ is set aside for an independent check."""
SPLITS = (("test", 0.2), ("val", 0.2))  # the rest (60%) is train
KINDS = (".png", ".svg")  # in order of preference
TRANSLATION = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z]{2,4})?(?:@\w+)?\.utf8=")
FORMAT = 1
"""Bumped whenever the records change shape, so a cached set is rebuilt."""


@dataclass(frozen=True)
class Stamp:
    """One stamp with its description."""

    key: str
    """Path under stamps/ without the suffix, e.g. `food/fruit/apple_red`; the image is `KEY with / -> __`.png."""
    description: str
    kind: str
    """"png" or "svg": the file the picture comes from."""

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def source(self) -> str:
        """The picture's path inside the package."""
        return f"{STAMPS_PREFIX}/{self.key}.{self.kind}"

    @property
    def filename(self) -> str:
        return self.key.replace("/", "__") + ".png"


@dataclass(frozen=True)
class Scan:
    stamps: list[Stamp]
    no_description: list[str]
    """Keys of pictures without a `.txt` (or with no English first line): skipped."""
    no_picture: list[str]
    """Keys of descriptions without a picture: skipped."""


@dataclass(frozen=True)
class TuxpaintReport:
    path: Path
    splits: dict[str, int]
    kinds: dict[str, int] = field(default_factory=dict)
    """Records by the file their picture came from: {"png": n, "svg": n}."""
    no_description: list[str] = field(default_factory=list)
    no_picture: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Key -> why its picture could not be used (skipped)."""
    reused: bool = False
    """True when a finished data set with the same settings was already there and nothing was written."""


def description(data: bytes) -> str:
    """The first line of a stamp's `.txt`, whitespace collapsed; "" when there is none (or it is a translation)."""
    lines = pictures.decode_text(data).splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    return "" if TRANSLATION.match(first) else first


def _stems(stamps_root: Path) -> dict[str, set[str]]:
    """`{key: suffixes}` of the .png/.svg/.txt files under the root, never entering the excluded categories."""
    found: dict[str, set[str]] = {}
    for folder, dirs, files in os.walk(stamps_root):
        rel = Path(folder).relative_to(stamps_root)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in EXCLUDED]
            continue  # files at the top have no category
        dirs.sort()
        for name in files:
            stem, suffix = os.path.splitext(name)
            if suffix in (*KINDS, ".txt") and not os.path.islink(os.path.join(folder, name)):
                found.setdefault((rel / stem).as_posix(), set()).add(suffix)
    return found


def scan_stamps(stamps_root: str | Path) -> Scan:
    """Every described stamp under `stamps_root` outside animals/ and symbols/, sorted by key."""
    root = Path(stamps_root)
    stamps, no_description, no_picture = [], [], []
    for key, suffixes in sorted(_stems(root).items()):
        kind = next((k for k in KINDS if k in suffixes), None)
        text = description((root / f"{key}.txt").read_bytes()) if ".txt" in suffixes else ""
        if kind is None:
            no_picture.append(key)
        elif not text:
            no_description.append(key)
        else:
            stamps.append(Stamp(key, text, kind.lstrip(".")))
    return Scan(stamps, no_description, no_picture)


def _record(stamp: Stamp, imgid: int, split: str, sentid: int) -> dict[str, Any]:
    sentences = pictures.sentences([stamp.description], imgid, sentid)
    return {
        "filepath": "images",
        "filename": stamp.filename,
        "imgid": imgid,
        "split": split,
        "sentids": [s["sentid"] for s in sentences],
        "sentences": sentences,
        "category": stamp.category,
        "source": stamp.source,
        "kind": stamp.kind,
        "labels": {"category": stamp.category},
    }


def _report_from(path: Path, header: dict[str, Any], reused: bool) -> TuxpaintReport:
    counts = header["counts"]
    return TuxpaintReport(
        path=path,
        splits=dict(counts["splits"]),
        kinds=dict(counts["kinds"]),
        no_description=list(counts["no_description"]),
        no_picture=list(counts["no_picture"]),
        failed=dict(counts["failed"]),
        reused=reused,
    )


def _wanted(size: int, seed: int, packages: tuple[DebianPackage, ...]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "size": size,
        "seed": seed,
        "background": list(BACKGROUND),
        "sources": pictures.sources(packages),
    }


def write_tuxpaint(
    out_dir: str | Path,
    stamps_root: str | Path,
    size: int = 256,
    seed: int = 0,
    packages: tuple[DebianPackage, ...] = (TUXPAINT_STAMPS,),
) -> TuxpaintReport:
    """Write images/KEY.png and dataset_tuxpaint.json under `out_dir` from the stamps folder (the package's
    usr/share/tuxpaint/stamps). The JSON is written last; a finished folder with the same settings is left as it is."""
    if size < 8:
        raise ValueError(f"tuxpaint image size must be at least 8 pixels, not {size}")
    out, wanted = Path(out_dir), _wanted(size, seed, packages)
    path = out / JSON_NAME
    header = pictures.finished(path, wanted)
    if header is not None:
        return _report_from(path, header, reused=True)
    scan = scan_stamps(stamps_root)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    sentid = 0
    for stamp in scan.stamps:
        try:
            image = pictures.load_picture(Path(stamps_root) / f"{stamp.key}.{stamp.kind}", stamp.kind, size, stamp.key)
        except pictures.PictureError as exc:
            failed[stamp.key] = exc.reason
            continue
        pictures.save_png(image, out / "images" / stamp.filename)
        records.append(_record(stamp, len(records), pictures.split_of(stamp.key, seed, SPLITS), sentid))
        sentid += 1
    kinds = {kind: sum(r["kind"] == kind for r in records) for kind in ("png", "svg")}
    counts = {
        "images": len(records),
        "splits": pictures.split_counts(records),
        "kinds": kinds,
        "no_description": scan.no_description,
        "no_picture": scan.no_picture,
        "failed": failed,
    }
    data = {"dataset": "tuxpaint", **wanted, "excluded": sorted(EXCLUDED), "counts": counts, "images": records}
    pictures.write_json(path, data)
    return _report_from(path, data, reused=False)


def stamps_root(cache_dir: Path) -> Path:
    """The package's stamps folder, fetched (`apt-get download`, sha256 checked) and extracted into the cache once."""
    return fetch_and_extract(TUXPAINT_STAMPS, cache_dir, STAMPS_PREFIX)


def generate_tuxpaint(
    out_dir: str | Path, size: int = 256, seed: int = 0, cache_dir: Path | None = None
) -> TuxpaintReport:
    """The tuxpaint data set in `out_dir`, fetching the package into `cache_dir`/debian/ (default: the cache)."""
    cache = cache_dir or Settings.from_env().cache_dir
    path = Path(out_dir) / JSON_NAME
    header = pictures.finished(path, _wanted(size, seed, (TUXPAINT_STAMPS,)))
    if header is not None:
        return _report_from(path, header, reused=True)
    return write_tuxpaint(out_dir, stamps_root(cache), size, seed)


def ensure_tuxpaint(directory: str | Path, size: int = 256, settings: Settings | None = None) -> Path:
    """dataset_tuxpaint.json of the standard tuxpaint set (seed 0) in `directory`, generated when missing."""
    return generate_tuxpaint(directory, size=size, cache_dir=(settings or Settings.from_env()).cache_dir).path
