"""`openclipart`: Open Clip Art Library drawings (Debian's `openclipart-png` and `openclipart-svg`, public domain) with
captions cleaned from each SVG's own metadata.

A picture is one PNG file under usr/share/openclipart/png/CATEGORY/.../STEM.png; Debian links duplicates across
categories (symlinks), so every name that leads to the same file is one picture, its other names kept as `aliases`
(their folders add category words). Its words come from the SVG at the same path: the `dc:title` of `cc:Work`
(never the agents' `dc:title`s: publisher, creator, rights) and the `rdf:li` keywords of `dc:subject`. That metadata
is noisy, so titles that are boilerplate, credits or file names, or that more than REPEATED_TITLE pictures share, are
dropped (then the file's stem gives the name, e.g. `button_cancel` -> "button cancel"), and keywords lose a stop list,
theme tags, bare numbers and the authors' names. Each picture gets up to five distinct captions (name; "a drawing of
NAME"; keywords; "CATEGORY PATH: NAME"; an alias's path), and pictures left with no meaningful word are dropped and
counted. The metadata block alone is parsed, without a DTD, so no entity is ever resolved; a file that fails to parse
fails alone. Splits are 90/5/5 per picture by a seeded hash; the output is byte-for-byte deterministic.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from PIL import Image

from lexlip_es.encoders.images import BACKGROUND
from lexlip_es.grounding import STOP_WORDS
from lexlip_es.settings import Settings
from trainer.data import pictures
from trainer.data.debian import OPENCLIPART_PNG, OPENCLIPART_SVG, DebianPackage, fetch_and_extract

PNG_PREFIX = "usr/share/openclipart/png"
SVG_PREFIX = "usr/share/openclipart/svg"
JSON_NAME = "dataset_openclipart.json"
SPLITS = (("test", 0.05), ("val", 0.05))  # the rest (90%) is train
REPEATED_TITLE = 20
"""A cleaned title shared by more than this many pictures names a collection, not a picture: dropped."""
MAX_KEYWORDS = 6
MAX_CAPTIONS = 5
FORMAT = 2
"""Bumped whenever the records change shape, so a cached set is rebuilt."""
PACKAGES = (OPENCLIPART_PNG, OPENCLIPART_SVG)

STOP_KEYWORDS = frozenset(
    {
        "hash", "unsorted", "icon", "icons", "theme", "magick", "lemon theme icon", "mapsym", "united nations member",
        "appicon", "mimetypes", "mime types", "openclipart", "clipart", "clip art", "svg", "misc", "miscellany",
        "special", "stock", "other", "image", "picture", "drawing", "untitled", "new", "test",
    }
)  # fmt: skip
"""Keywords (after `_`/`-` -> space, lower case) that say nothing about a picture: library, theme and tool tags."""
STEM_NOISE = frozenset({"bw", "bwh", "col", "svg", "png"})
"""Stem parts that are not words: "b(lack and) w(hite)" versions, colour variants, extensions."""
JUNK_KEYWORD = re.compile(r"\btheme\b|sym$|^0x[0-9a-f]+$|^[\W\d_]+$")
"""Theme tags (`gold theme`), the `*sym` map-symbol tags, hex ids, and keywords of only digits and punctuation."""
CREDIT = re.compile(r"^clip\s*arts?\s+by\s+.+?\s+[-\u2013:]\s+", re.IGNORECASE)
BOILERPLATE_TITLE = re.compile(
    r"collection|\btheme\b|icon\s*set|\bicons?$|^svg\b|\bclip\s*arts?\b|s[iu]bmission|^part of\b|^untitled",
    re.IGNORECASE,
)
CREDIT_TITLE = re.compile(r"\bby [A-Z][\w.-]+ [A-Z]|\(c\)|\u00a9")
WORD = re.compile(r"[^\W\d_]{2,}")
METADATA = re.compile(r"<(?:[\w.-]+:)?metadata\b.*?</(?:[\w.-]+:)?metadata\s*>", re.DOTALL)
SVG_TAG = re.compile(r"<(?:[\w.-]+:)?svg\b[^>]*>", re.DOTALL)
XMLNS = re.compile(r"""\bxmlns:([\w.-]+)\s*=\s*(["'])(.*?)\2""", re.DOTALL)
DEFAULT_NAMESPACES = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "cc": "http://web.resource.org/cc/",
}
AGENT_ROLES = frozenset({"creator", "publisher", "rights", "contributor"})


class MetadataError(ValueError):
    """An SVG's metadata block could not be parsed."""


@dataclass(frozen=True)
class Metadata:
    """What an SVG's `cc:Work` says, as written (entities decoded, whitespace collapsed)."""

    title: str = ""
    keywords: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    """Names of the publisher, creator, rights holder and contributors."""


@dataclass(frozen=True)
class Clip:
    """One picture of the package."""

    key: str
    """The picture file's path under png/ (or svg/ for an SVG without a PNG) without the suffix."""
    kind: str
    """"png" or "svg": the file the picture comes from."""
    aliases: tuple[str, ...] = ()
    """Other paths (without suffix) that lead to the same file."""
    svg_key: str | None = None
    """The SVG (under svg/, without suffix) whose metadata gives the words; None when there is none."""

    @property
    def filename(self) -> str:
        return self.key.replace("/", "__") + ".png"

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]


@dataclass(frozen=True)
class Words:
    """A clip's cleaned words."""

    title: str
    """The cleaned metadata title ("" when it was dropped)."""
    name: str
    """The title, else words of the file's stem, else ""."""
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class OpenclipartReport:
    path: Path
    splits: dict[str, int]
    kinds: dict[str, int] = field(default_factory=dict)
    pictures: int = 0
    """Distinct picture files found (every alias of one file counted once)."""
    aliases: int = 0
    no_words: list[str] = field(default_factory=list)
    """Keys of pictures left with no meaningful word (dropped)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Key -> why its picture or metadata could not be used (skipped)."""
    titles_dropped: int = 0
    """Pictures whose metadata title was boilerplate, a credit, a file name or repeated."""
    reused: bool = False


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _metadata_element(text: str) -> ET.Element | None:
    """The first `metadata` block holding a `Work`, parsed on its own inside a wrapper that declares the root
    element's namespace prefixes (a prefix bound through an entity gets a placeholder). No DTD reaches the parser."""
    block = next((m.group(0) for m in METADATA.finditer(text) if "Work" in m.group(0)), None)
    if block is None:
        return None
    root = SVG_TAG.search(text)
    declared = dict(DEFAULT_NAMESPACES)
    for prefix, _, uri in XMLNS.findall(root.group(0) if root else ""):
        if prefix not in ("xml", "xmlns"):
            declared[prefix] = uri if not re.search(r"[&<]", uri) else f"urn:unresolved:{prefix}"
    names = " ".join(f"xmlns:{p}={quoteattr(u)}" for p, u in sorted(declared.items()))
    try:
        return ET.fromstring(f"<wrapper {names}>{block}</wrapper>")
    except ET.ParseError as exc:
        raise MetadataError(f"metadata does not parse ({exc})") from None


def read_metadata(data: bytes) -> Metadata:
    """Title, keywords and agents of an SVG's `cc:Work` (empty when it has none); MetadataError when its metadata
    block is malformed."""
    element = _metadata_element(pictures.decode_text(data))
    work = next((e for e in element.iter() if _local(e.tag) == "Work"), None) if element is not None else None
    if work is None:
        return Metadata()
    title, keywords, agents = "", list[str](), list[str]()
    for child in work:  # direct children only: an agent's dc:title is not the picture's
        role = _local(child.tag)
        if role == "title" and not title:
            title = _text(child)
        elif role == "subject":
            items = [e for e in child.iter() if _local(e.tag) == "li"]
            keywords = [_text(e) for e in items] if items else re.split(r"[,;]", _text(child))
        elif role in AGENT_ROLES:
            agents += [_text(e) for e in child.iter() if _local(e.tag) == "title" and _text(e)]
    return Metadata(title, tuple(k.strip() for k in keywords), tuple(dict.fromkeys(agents)))


def clean_keyword(keyword: str, agents: frozenset[str] = frozenset()) -> str:
    """A keyword in lower case with `_`/`-` as spaces; "" when it is junk (stop list, theme tag, digits and
    punctuation only, an author's name)."""
    text = " ".join(re.sub(r"[_\-]+", " ", keyword.lower()).split())
    if not text or text in STOP_KEYWORDS or JUNK_KEYWORD.search(text) or text in agents:
        return ""
    return text


def clean_title(title: str, agents: frozenset[str] = frozenset()) -> str:
    """A title without its "Clipart by X -" credit; "" when it is boilerplate (a collection, a theme, a
    submission), a credit, an author's name, a credited file name or has no word. Another file name
    (`jigsaw_red_10`, `arrow-down-purple`) keeps its words."""
    text = " ".join(title.split())
    credited = CREDIT.sub("", text)
    if credited != text and " " not in credited:
        return ""  # "Clipart by X - pear": the name of the file the author last saved, often another picture's
    text = credited
    if not text or BOILERPLATE_TITLE.search(text) or CREDIT_TITLE.search(text) or text.lower() in agents:
        return ""
    if " " not in text and re.search(r"[_\d.]", text):
        text = " ".join(WORD.findall(re.sub(r"\.(svg|png)$", "", text, flags=re.IGNORECASE)))
    elif " " not in text:
        text = text.replace("-", " ")  # `arrow-down-purple`
    text = " ".join(text.replace("_", " ").split())
    return text if WORD.search(text) else ""


def stem_name(key: str, agents: frozenset[str] = frozenset()) -> str:
    """Words of a file's stem (`button_cancel` -> "button cancel", `cloudy03` -> "cloudy"): a part's trailing
    number dropped, then no parts with digits, no single letters, no authors' names (the package's stems often end
    in a truncated one)."""
    names = {word for agent in agents for word in agent.split() if len(word) > 2}
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key.rsplit("/", 1)[-1])  # camelCase -> camel Case
    parts = [re.sub(r"\d+$", "", p) for p in re.split(r"[_\-\s.]+", stem.lower())]
    words = [w for w in parts if WORD.fullmatch(w) and w not in STEM_NOISE]
    kept = [w for w in words if not any(n.startswith(w) for n in names if len(w) > 2) and w not in names]
    return " ".join(kept)


def path_phrase(key: str) -> str:
    """A picture's folders as words (`signs_and_symbols/flags/europe/x` -> "signs and symbols, flags, europe"),
    junk folders (`lemon-theme`, `icons`, `unsorted`) left out."""
    folders = [clean_keyword(part) for part in key.split("/")[:-1]]
    return ", ".join(dict.fromkeys(f for f in folders if f))


def meaningful(text: str) -> bool:
    """Whether `text` has a word of two or more letters that is not an English stop word."""
    return any(w not in STOP_WORDS for w in WORD.findall(text.lower()))


def _files(root: Path, suffix: str) -> dict[str, str]:
    """`{key: key of the file it is}` for every `suffix` file under `root`: a file is itself, a symlink is the file
    it leads to (links that leave `root` or lead nowhere are left out). Keys are paths without the suffix."""
    real_root = os.path.realpath(root)
    found: dict[str, str] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(suffix):
                continue
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root).replace(os.sep, "/").removesuffix(suffix)
            real = os.path.realpath(path)
            if os.path.isfile(real) and real.startswith(real_root + os.sep) and real.endswith(suffix):
                found[key] = os.path.relpath(real, real_root).replace(os.sep, "/").removesuffix(suffix)
    return found


def _groups(files: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key, real in sorted(files.items()):
        groups.setdefault(real, []).append(key)
    return groups


def find_clips(png_root: str | Path, svg_root: str | Path) -> list[Clip]:
    """Every distinct picture: each PNG file with the names that lead to it, then each SVG file none of whose names
    has a PNG (rasterized). Sorted by key."""
    pngs, svgs = _files(Path(png_root), ".png"), _files(Path(svg_root), ".svg")
    clips = []
    for real, members in _groups(pngs).items():
        names = [real, *(m for m in members if m != real)]
        svg_key = next((svgs[m] for m in names if m in svgs), None)
        clips.append(Clip(real, "png", tuple(names[1:]), svg_key))
    for real, members in _groups(svgs).items():
        if not any(m in pngs for m in members):
            clips.append(Clip(real, "svg", tuple(m for m in members if m != real), real))
    return sorted(clips, key=lambda c: c.key)


def _raw_words(clip: Clip, svg_root: Path) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """(cleaned title, cleaned keywords, authors in lower case) of a clip; MetadataError or OSError on failure."""
    meta = read_metadata((svg_root / f"{clip.svg_key}.svg").read_bytes()) if clip.svg_key else Metadata()
    agents = frozenset(a.lower() for a in meta.agents)
    keywords = (clean_keyword(k, agents) for k in meta.keywords)
    return clean_title(meta.title, agents), tuple(dict.fromkeys(k for k in keywords if k)), agents


def clip_words(clips: list[Clip], svg_root: str | Path) -> tuple[dict[str, Words], dict[str, str], int]:
    """`({key: Words}, {key: why its metadata failed}, titles dropped)`: titles shared by more than
    REPEATED_TITLE pictures are dropped, and a picture without a title is named by its stem."""
    raw, failed = {}, {}
    for clip in clips:
        try:
            raw[clip.key] = _raw_words(clip, Path(svg_root))
        except (MetadataError, OSError) as exc:
            failed[clip.key] = f"{clip.svg_key}.svg: {exc}"
    shared = Counter(title.lower() for title, _, _ in raw.values() if title)
    words, dropped = {}, 0
    for key, (title, keywords, agents) in raw.items():
        kept = title if shared[title.lower()] <= REPEATED_TITLE else ""
        dropped += not kept
        words[key] = Words(kept, kept or stem_name(key, agents), keywords)
    return words, failed, dropped


def captions(clip: Clip, words: Words) -> list[str]:
    """What the drawing shows, in at most two captions: its NAME and its keywords (without a name the first keywords
    stand in for it). The folder path ("computer, applications", "signs and symbols") and "a drawing of" are left
    out: they name the collection's shelves and style, and a head trained on them answered photographs with
    "computer", "signs", "symbols" (benchmarks/results/photos.md)."""
    keywords = list(words.keywords[:MAX_KEYWORDS])
    texts = [words.name or ", ".join(keywords[:3]), ", ".join(keywords)]
    unique: dict[str, str] = {}
    for text in texts:
        if text.strip():
            unique.setdefault(text.strip().lower(), text.strip())
    return list(unique.values())[:MAX_CAPTIONS]


def _record(clip: Clip, words: Words, kind: str, place: tuple[int, str, int]) -> dict[str, Any]:
    """The record of a clip whose picture came from its `kind` file; `place` is (imgid, split, first sentid)."""
    imgid, split, sentid = place
    sentences = pictures.sentences(captions(clip, words), imgid, sentid)
    source = f"{PNG_PREFIX}/{clip.key}.png" if kind == "png" else f"{SVG_PREFIX}/{clip.svg_key}.svg"
    return {
        "filepath": "images",
        "filename": clip.filename,
        "imgid": imgid,
        "split": split,
        "sentids": [s["sentid"] for s in sentences],
        "sentences": sentences,
        "category": clip.category,
        "source": source,
        "svg_source": f"{SVG_PREFIX}/{clip.svg_key}.svg" if clip.svg_key else None,
        "kind": kind,
        "aliases": list(clip.aliases),
        "title": words.title,
        "name": words.name,
        "keywords": list(words.keywords),
        "labels": {"category": clean_keyword(clip.category) or clip.category},
    }


def _report_from(path: Path, header: dict[str, Any], reused: bool) -> OpenclipartReport:
    counts = header["counts"]
    return OpenclipartReport(
        path=path,
        splits=dict(counts["splits"]),
        kinds=dict(counts["kinds"]),
        pictures=counts["pictures"],
        aliases=counts["aliases"],
        no_words=list(counts["no_words"]),
        failed=dict(counts["failed"]),
        titles_dropped=counts["titles_dropped"],
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


def _load(clip: Clip, roots: tuple[Path, Path], size: int) -> tuple[Image.Image, str]:
    """(picture, "png" or "svg"): the PNG, else (too large, unreadable) the SVG beside it."""
    try:
        root = roots[0] if clip.kind == "png" else roots[1]
        return pictures.load_picture(root / f"{clip.key}.{clip.kind}", clip.kind, size, clip.key), clip.kind
    except pictures.PictureError as exc:
        if clip.kind == "svg" or clip.svg_key is None:
            raise
        try:
            return pictures.load_picture(roots[1] / f"{clip.svg_key}.svg", "svg", size, clip.svg_key), "svg"
        except pictures.PictureError as svg_exc:
            raise pictures.PictureError(clip.key, f"{exc.reason}; its SVG: {svg_exc.reason}") from None


def _write_images(
    out: Path, clips: list[Clip], words: dict[str, Words], roots: tuple[Path, Path], size: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Each clip with words as images/KEY.png and its record; `{key: reason}` for the pictures that failed."""
    records: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    sentid = 0
    for clip in clips:
        if clip.key not in words:
            continue
        try:
            image, kind = _load(clip, roots, size)
        except pictures.PictureError as exc:
            failed[clip.key] = exc.reason
            continue
        pictures.save_png(image, out / "images" / clip.filename)
        split = pictures.split_of(clip.key, seed, SPLITS)
        records.append(_record(clip, words[clip.key], kind, (len(records), split, sentid)))
        sentid += len(records[-1]["sentences"])
    return records, failed


def write_openclipart(
    out_dir: str | Path,
    png_root: str | Path,
    svg_root: str | Path,
    size: int = 128,
    seed: int = 0,
    packages: tuple[DebianPackage, ...] = PACKAGES,
) -> OpenclipartReport:
    """Write images/KEY.png and dataset_openclipart.json under `out_dir` from the package's png/ and svg/ folders.
    The JSON is written last; a finished folder with the same settings is left as it is."""
    if size < 8:
        raise ValueError(f"openclipart image size must be at least 8 pixels, not {size}")
    out, wanted = Path(out_dir), _wanted(size, seed, packages)
    path = out / JSON_NAME
    header = pictures.finished(path, wanted)
    if header is not None:
        return _report_from(path, header, reused=True)
    clips = find_clips(png_root, svg_root)
    words, failed, titles_dropped = clip_words(clips, svg_root)
    no_words = sorted(k for k, w in words.items() if not meaningful(" ".join((w.name, *w.keywords))))
    usable = {k: w for k, w in words.items() if k not in set(no_words)}
    (out / "images").mkdir(parents=True, exist_ok=True)
    records, unreadable = _write_images(out, clips, usable, (Path(png_root), Path(svg_root)), size, seed)
    counts = {
        "pictures": len(clips),
        "aliases": sum(len(c.aliases) for c in clips),
        "images": len(records),
        "splits": pictures.split_counts(records),
        "kinds": {kind: sum(r["kind"] == kind for r in records) for kind in ("png", "svg")},
        "no_words": no_words,
        "failed": dict(sorted({**failed, **unreadable}.items())),
        "titles_dropped": titles_dropped,
    }
    data = {"dataset": "openclipart", **wanted, "counts": counts, "images": records}
    pictures.write_json(path, data)
    return _report_from(path, data, reused=False)


def package_roots(cache_dir: Path) -> tuple[Path, Path]:
    """The png/ and svg/ folders of the two packages, fetched (sha256 checked) and extracted into the cache once."""
    return (
        fetch_and_extract(OPENCLIPART_PNG, cache_dir, PNG_PREFIX),
        fetch_and_extract(OPENCLIPART_SVG, cache_dir, SVG_PREFIX),
    )


def generate_openclipart(
    out_dir: str | Path, size: int = 128, seed: int = 0, cache_dir: Path | None = None
) -> OpenclipartReport:
    """The openclipart data set in `out_dir`, fetching the packages into `cache_dir`/debian/ (default: the cache)."""
    cache = cache_dir or Settings.from_env().cache_dir
    path = Path(out_dir) / JSON_NAME
    header = pictures.finished(path, _wanted(size, seed, PACKAGES))
    if header is not None:
        return _report_from(path, header, reused=True)
    png_root, svg_root = package_roots(cache)
    return write_openclipart(out_dir, png_root, svg_root, size, seed)


def ensure_openclipart(directory: str | Path, size: int = 128, settings: Settings | None = None) -> Path:
    """dataset_openclipart.json of the standard openclipart set (seed 0) in `directory`, generated when missing."""
    return generate_openclipart(directory, size=size, cache_dir=(settings or Settings.from_env()).cache_dir).path
