"""`emoji`: a real image-text data set from two pinned npm packages.

Images are Microsoft's Fluent Emoji 3D renders (`@lobehub/fluent-emoji-3d`, MIT: 256 px RGBA WebP files named by
their code points); text is OpenMoji's emoji table (`openmoji`, CC-BY-SA 4.0: name, keywords, OpenMoji's own tags,
group and subgroup). The two are joined by normalised code points (lowercase hex, no VS-16 `fe0f`, no tag terminator
`e007f`, `-` or `_` between points), each render is composited on a fixed background, resized and written as a PNG,
with about five captions built from the text, into a Karpathy-style JSON that `trainer.data.datasets.load_pairs`
reads. Splits are assigned per base emoji (skin-tone modifiers removed), so every skin-tone variant of an emoji lands
in the split of its base. The output is byte-for-byte deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lexlip_es.settings import Settings
from trainer.data.npm import NpmPackage, fetch_package

FLUENT = NpmPackage(
    "@lobehub/fluent-emoji-3d",
    "1.1.0",
    "sha512-Wlq2lVStTnr8BDpIJ0pEnTKO4LuDxxqTEhTvRtD1DLRF0me7ogeRQjKoehDHXuVJ2Qaecgl5wRBv60lUAG3h7g==",
)
OPENMOJI = NpmPackage(
    "openmoji",
    "17.0.0",
    "sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w==",
)
LICENCES = {FLUENT.name: "MIT", OPENMOJI.name: "CC-BY-SA-4.0"}
ASSETS_DIR = "package/assets/"
OPENMOJI_JSON = "package/data/openmoji.json"
JSON_NAME = "dataset_emoji.json"
BACKGROUND = (228, 228, 222)
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
IGNORED_CODEPOINTS = frozenset({0xFE0F, 0xE007F})  # variation selector-16 (emoji style), cancel tag
SPLITS = (("test", 0.15), ("val", 0.05))  # the rest is train
GROUPS = {
    "smileys-emotion": "smileys and emotion",
    "people-body": "people and body",
    "animals-nature": "animals and nature",
    "food-drink": "food and drink",
    "travel-places": "travel and places",
    "extras-openmoji": "openmoji extras",
    "extras-unicode": "unicode extras",
}
TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


@dataclass(frozen=True)
class Emoji:
    """One render joined with its OpenMoji entry."""

    codepoints: str
    """Normalised code points, e.g. `1f44b-1f3fd`; also the PNG's file stem."""
    base: str
    """`codepoints` without skin-tone modifiers: the unit the split is assigned to."""
    source: str
    """The render's file name in the Fluent package."""
    char: str
    name: str
    group: str
    subgroup: str
    tags: tuple[str, ...]
    openmoji_tags: tuple[str, ...]
    skin_tones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Joined:
    emoji: list[Emoji]
    unmatched: list[str]
    """Render names without an OpenMoji entry (skipped)."""
    duplicates: list[str]
    """Render names whose normalised code points another render already took (skipped)."""


@dataclass(frozen=True)
class EmojiReport:
    path: Path
    splits: dict[str, int]
    renders: int
    unmatched: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    skin_tone_variants: int = 0
    bases: int = 0
    reused: bool = False
    """True when a finished data set with the same settings was already there and nothing was written."""


def parse_codepoints(text: str) -> tuple[int, ...]:
    """`0023-FE0F-20E3`, `23-fe0f-20e3` or `1f3f4-e0067_e0062` -> code points without VS-16 and the cancel tag."""
    points = tuple(int(part, 16) for part in re.split(r"[-_ ]", text.strip()) if part)
    kept = tuple(p for p in points if p not in IGNORED_CODEPOINTS)
    if not kept:
        raise ValueError(f"{text!r} names no code points")
    return kept


def codepoint_key(points: Sequence[int]) -> str:
    return "-".join(f"{p:04x}" for p in points)


def without_skin_tones(points: Sequence[int]) -> tuple[int, ...]:
    return tuple(p for p in points if p not in SKIN_TONES)


def read_fluent_assets(tarball: Path) -> dict[str, bytes]:
    """`{file stem: WebP bytes}` of the package's `assets/*.webp` (read from the tarball, nothing extracted)."""
    assets = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            rest = member.name.removeprefix(ASSETS_DIR)
            if member.isfile() and rest != member.name and "/" not in rest and rest.endswith(".webp"):
                data = tar.extractfile(member)
                if data is not None:
                    assets[rest.removesuffix(".webp")] = data.read()
    if not assets:
        raise ValueError(f"{tarball} holds no {ASSETS_DIR}*.webp renders")
    return assets


def read_openmoji(tarball: Path) -> list[dict[str, Any]]:
    """OpenMoji's emoji table (`data/openmoji.json`) from its package tarball."""
    with tarfile.open(tarball) as tar:
        try:
            data = tar.extractfile(OPENMOJI_JSON)
        except KeyError:
            data = None
        if data is None:
            raise ValueError(f"{tarball} holds no {OPENMOJI_JSON}")
        entries: list[dict[str, Any]] = json.loads(data.read())
    return entries


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip().translate(TYPOGRAPHY) for t in text.split(",") if t.strip())


def _skin_tones(name: str) -> tuple[str, ...]:
    _, _, detail = name.partition(": ")
    return tuple(part for part in _split_list(detail) if part.endswith("skin tone"))


def _preference(stem: str, hexcode: str) -> tuple[bool, bool, str]:
    """Among renders of one emoji, prefer OpenMoji's exact spelling, then zero-padded code points, then by name."""
    short = any(len(part) < 4 for part in re.split(r"[-_]", stem))
    return (stem != hexcode.lower(), short, stem)


def _emoji(stem: str, points: tuple[int, ...], entry: dict[str, Any], base_entry: dict[str, Any]) -> Emoji:
    name = str(entry["annotation"]).translate(TYPOGRAPHY).strip()
    tones = _skin_tones(name) if set(points) & SKIN_TONES else ()
    return Emoji(
        codepoints=codepoint_key(points),
        base=codepoint_key(without_skin_tones(points)),
        source=f"{stem}.webp",
        char=str(entry.get("emoji", "")),
        name=name,
        group=str(entry.get("group", "")),
        subgroup=str(entry.get("subgroups", "")),
        tags=_split_list(entry.get("tags") or base_entry.get("tags") or ""),
        openmoji_tags=_split_list(entry.get("openmoji_tags") or base_entry.get("openmoji_tags") or ""),
        skin_tones=tones,
    )


def join(asset_names: Iterable[str], openmoji: Sequence[dict[str, Any]]) -> Joined:
    """Match render names to OpenMoji entries by normalised code points; skin-tone variants without keywords of
    their own borrow their base emoji's. The result is sorted by code points."""
    table: dict[tuple[int, ...], dict[str, Any]] = {}
    for entry in openmoji:
        table.setdefault(parse_codepoints(entry["hexcode"]), entry)
    by_key: dict[tuple[int, ...], list[str]] = {}
    unmatched = []
    for stem in sorted(asset_names):
        points = parse_codepoints(stem)
        if points in table:
            by_key.setdefault(points, []).append(stem)
        else:
            unmatched.append(stem)
    emoji, duplicates = [], []
    for points in sorted(by_key):
        entry = table[points]
        stems = sorted(by_key[points], key=lambda s: _preference(s, str(entry["hexcode"])))
        duplicates.extend(stems[1:])
        base_entry = table.get(without_skin_tones(points), entry)
        emoji.append(_emoji(stems[0], points, entry, base_entry))
    return Joined(emoji, unmatched, sorted(duplicates))


def _article(word: str) -> str:
    lower = word.lower()
    if lower.startswith(("uni", "use", "usb", "one ", "eu", "ewe")):
        return "a"
    return "an" if lower[:1] in set("aeiou") or lower.startswith(("hour", "honest")) else "a"


def group_phrase(group: str) -> str:
    return GROUPS.get(group, group.replace("-", " "))


def _keywords(emoji: Emoji, shown: set[str], rng: random.Random, max_tags: int) -> str:
    """A seeded handful of keywords that are not the name itself (CLDR's, else OpenMoji's), plus the skin tones."""
    pool = [t for t in emoji.tags if t.lower() not in shown] or [
        t for t in emoji.openmoji_tags if t.lower() not in shown
    ]
    pool = list(dict.fromkeys(pool))
    picked = sorted(rng.sample(range(len(pool)), min(max_tags, len(pool))))
    return ", ".join([pool[i] for i in picked] + list(emoji.skin_tones)) if pool else ""


def captions(emoji: Emoji, seed: int = 0, max_tags: int = 4) -> list[str]:
    """About five distinct captions: the name; "a NAME emoji"; a few keywords; "SUBGROUP: NAME"; "GROUP emoji:
    NAME, OpenMoji tags". Skin-tone variants keep their tone words in every caption."""
    head, _, detail = emoji.name.partition(": ")
    inline = f"{head}, {detail}" if detail else head
    shown = {part.lower() for part in (head, *_split_list(detail))}
    keywords = _keywords(emoji, shown, random.Random(f"{seed}:{emoji.codepoints}"), max_tags)
    fresh = [t for t in dict.fromkeys(emoji.openmoji_tags) if t.lower() not in shown]
    extra = "".join(f", {t}" for t in fresh[:max_tags])
    texts = [
        emoji.name,
        f"{_article(head)} {head} emoji" + (f": {detail}" if detail else ""),
        keywords or f"{inline} emoji",
        f"{emoji.subgroup.replace('-', ' ')}: {inline}" if emoji.subgroup else f"emoji of {inline}",
        f"{group_phrase(emoji.group)} emoji: {inline}{extra}" if emoji.group else f"{inline}{extra}",
    ]
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def tokens(caption: str) -> list[str]:
    return re.findall(r"[^\s,:;()\"]+", caption.lower())


def assign_splits(bases: Iterable[str], seed: int = 0) -> dict[str, str]:
    """`{base: split}`: bases ordered by a seeded hash, the first 15% test, the next 5% val, the rest train (at least
    one of each from three bases on)."""
    unique = sorted(set(bases), key=lambda b: (hashlib.sha256(f"{seed}:{b}".encode()).hexdigest(), b))
    splits: dict[str, str] = {}
    start = 0
    for name, fraction in SPLITS:
        count = max(1, round(len(unique) * fraction)) if len(unique) >= 3 else 0
        splits.update((b, name) for b in unique[start : start + count])
        start += count
    splits.update((b, "train") for b in unique[start:])
    return splits


def composite(image: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """RGB of `image` laid over an opaque `background` by its alpha (Porter-Duff over)."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def render(data: bytes, size: int, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Decode a render, composite it on `background`, resize to `size` x `size` (LANCZOS)."""
    with Image.open(io.BytesIO(data)) as image:
        flat = composite(image, background)
    if flat.size != (size, size):
        flat = flat.resize((size, size), Image.Resampling.LANCZOS)
    return flat


def _sources() -> list[dict[str, str]]:
    return [
        {"package": p.name, "version": p.version, "integrity": p.integrity, "licence": LICENCES[p.name]}
        for p in (FLUENT, OPENMOJI)
    ]


def _record(emoji: Emoji, imgid: int, split: str, first_sentid: int, seed: int) -> dict[str, Any]:
    sentences = [
        {"raw": c, "tokens": tokens(c), "imgid": imgid, "sentid": first_sentid + k}
        for k, c in enumerate(captions(emoji, seed))
    ]
    return {
        "filepath": "images",
        "filename": f"{emoji.codepoints}.png",
        "imgid": imgid,
        "split": split,
        "sentids": [s["sentid"] for s in sentences],
        "sentences": sentences,
        "codepoints": emoji.codepoints,
        "base": emoji.base,
        "emoji": emoji.char,
        "name": emoji.name,
        "group": emoji.group,
        "subgroup": emoji.subgroup,
        "skin_tones": list(emoji.skin_tones),
        "source": emoji.source,
        "labels": {"group": group_phrase(emoji.group), "subgroup": emoji.subgroup.replace("-", " ")},
    }


def _report_from(path: Path, header: dict[str, Any], reused: bool) -> EmojiReport:
    counts = header["counts"]
    return EmojiReport(
        path=path,
        splits={name: counts["splits"].get(name, 0) for name in ("train", "val", "test")},
        renders=counts["renders"],
        unmatched=list(counts["unmatched"]),
        duplicates=list(counts["duplicates"]),
        skin_tone_variants=counts["skin_tone_variants"],
        bases=counts["bases"],
        reused=reused,
    )


FORMAT = 2
"""Bumped whenever the records change shape (2: readable zero-shot `labels`), so a cached set is rebuilt."""


def _finished(path: Path, size: int, seed: int, background: tuple[int, int, int]) -> dict[str, Any] | None:
    """The header of a finished data set written with these settings, else None."""
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    wanted = {"format": FORMAT, "size": size, "seed": seed, "background": list(background), "sources": _sources()}
    return data if all(data.get(k) == v for k, v in wanted.items()) and "counts" in data else None


def write_emoji(
    out_dir: str | Path,
    fluent_tarball: Path,
    openmoji_tarball: Path,
    size: int = 128,
    seed: int = 0,
    background: tuple[int, int, int] = BACKGROUND,
) -> EmojiReport:
    """Write images/CODEPOINTS.png and dataset_emoji.json under `out_dir` from the two package tarballs.
    The JSON is written last; a finished folder with the same settings is left as it is."""
    if size < 8:
        raise ValueError(f"emoji image size must be at least 8 pixels, not {size}")
    out = Path(out_dir)
    path = out / JSON_NAME
    header = _finished(path, size, seed, background)
    if header is not None:
        return _report_from(path, header, reused=True)
    assets = read_fluent_assets(fluent_tarball)
    joined = join(assets, read_openmoji(openmoji_tarball))
    splits = assign_splits((e.base for e in joined.emoji), seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records, sentid = [], 0
    for imgid, emoji in enumerate(joined.emoji):
        image = render(assets[emoji.source.removesuffix(".webp")], size, background)
        image.save(out / "images" / f"{emoji.codepoints}.png", format="PNG", compress_level=6)
        records.append(_record(emoji, imgid, splits[emoji.base], sentid, seed))
        sentid += len(records[-1]["sentences"])
    per_split = {name: sum(r["split"] == name for r in records) for name in ("train", "val", "test")}
    counts = {
        "renders": len(assets),
        "images": len(records),
        "splits": per_split,
        "bases": len(splits),
        "skin_tone_variants": sum(e.codepoints != e.base for e in joined.emoji),
        "unmatched": joined.unmatched,
        "duplicates": joined.duplicates,
    }
    data = {
        "dataset": "emoji",
        "format": FORMAT,
        "seed": seed,
        "size": size,
        "background": list(background),
        "sources": _sources(),
        "counts": counts,
        "images": records,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return _report_from(path, data, reused=False)


def npm_cache(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).cache_dir / "npm"


def fetch_emoji_packages(cache_dir: Path) -> dict[str, Path]:
    """`{package name: verified tarball}`, fetched with `npm pack` into `cache_dir` when missing."""
    return {p.name: fetch_package(p, cache_dir) for p in (FLUENT, OPENMOJI)}


def generate_emoji(out_dir: str | Path, size: int = 128, seed: int = 0, cache_dir: Path | None = None) -> EmojiReport:
    """The emoji data set in `out_dir`, fetching the packages into `cache_dir` (default: the cache's npm/)."""
    cache = cache_dir or npm_cache()
    header = _finished(Path(out_dir) / JSON_NAME, size, seed, BACKGROUND)
    if header is not None:
        return _report_from(Path(out_dir) / JSON_NAME, header, reused=True)
    tarballs = fetch_emoji_packages(cache)
    return write_emoji(out_dir, tarballs[FLUENT.name], tarballs[OPENMOJI.name], size, seed)


def ensure_emoji(directory: str | Path, size: int = 128, settings: Settings | None = None) -> Path:
    """dataset_emoji.json of the standard emoji set (seed 0) in `directory`, generated when missing."""
    return generate_emoji(directory, size=size, cache_dir=npm_cache(settings)).path
