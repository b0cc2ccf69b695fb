"""The emoji data set on a hand-made miniature of the two npm packages (no network, no npm)."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from trainer.data.datasets import load_pairs
from trainer.data.emoji import (
    BACKGROUND,
    FLUENT,
    assign_splits,
    composite,
    parse_codepoints,
    write_emoji,
)
from trainer.data.npm import NpmPackage, NpmPackageError, fetch_package, integrity_of

OPAQUE = (10, 200, 30)
SIDE = 16


def _entry(
    hexcode: str, annotation: str, group: str, subgroup: str, tags: str = "", om_tags: str = ""
) -> dict[str, Any]:
    return {
        "emoji": "",
        "hexcode": hexcode,
        "group": group,
        "subgroups": subgroup,
        "annotation": annotation,
        "tags": tags,
        "openmoji_tags": om_tags,
        "skintone": "",
        "skintone_base_hexcode": "",
    }


OPENMOJI_SUBSET = [
    _entry("1F44B", "waving hand", "people-body", "hand-fingers-open", "hand, wave, waving", "hello, goodbye"),
    _entry("1F44B-1F3FD", "waving hand: medium skin tone", "people-body", "hand-fingers-open"),
    _entry("2764", "red heart", "smileys-emotion", "heart", "emotion, heart, love, red", "love, red"),
    _entry("1F408", "cat", "animals-nature", "animal-mammal", "animal, pet", "pet, kitty"),
    _entry("0023-FE0F-20E3", "keycap: #", "symbols", "keycap", "keycap"),
    _entry("1F680", "rocket", "travel-places", "transport-air", "launch, space", "rocket, space"),
]
# render names as the Fluent package spells them: VS-16 kept, one unpadded duplicate, one emoji OpenMoji lacks
RENDERS = ["1f44b", "1f44b-1f3fd", "2764-fe0f", "1f408", "0023-fe0f-20e3", "23-fe0f-20e3", "1fae9"]


def _webp(seed: int) -> bytes:
    """Left half fully transparent over a loud colour, right half opaque, one half-transparent black pixel."""
    image = Image.new("RGBA", (SIDE, SIDE), (255, 0, 255 - seed, 0))
    image.paste((*OPAQUE, 255), (SIDE // 2, 0, SIDE, SIDE))
    image.putpixel((SIDE // 2, SIDE - 1), (0, 0, 0, 128))
    out = io.BytesIO()
    image.save(out, format="WEBP", lossless=True, exact=True)
    return out.getvalue()


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def tarballs(tmp_path: Path) -> tuple[Path, Path]:
    fluent = {f"package/assets/{name}.webp": _webp(k) for k, name in enumerate(RENDERS)}
    fluent["package/package.json"] = b"{}"
    openmoji = {"package/data/openmoji.json": json.dumps(OPENMOJI_SUBSET).encode()}
    return _tar(tmp_path / "fluent.tgz", fluent), _tar(tmp_path / "openmoji.tgz", openmoji)


@pytest.fixture
def written(tmp_path: Path, tarballs: tuple[Path, Path]) -> Path:
    write_emoji(tmp_path / "emoji", *tarballs, size=SIDE)
    return tmp_path / "emoji" / "dataset_emoji.json"


def _records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["codepoints"]: r for r in json.loads(path.read_text(encoding="utf-8"))["images"]}


def test_codepoints_normalise_padding_vs16_and_tag_spelling() -> None:
    assert parse_codepoints("0023-FE0F-20E3") == parse_codepoints("23-fe0f-20e3") == (0x23, 0x20E3)
    flag = parse_codepoints("1F3F4-E0067-E0062-E0065-E006E-E0067-E007F")
    assert parse_codepoints("1f3f4-e0067_e0062_e0065_e006e_e0067") == flag
    with pytest.raises(ValueError):
        parse_codepoints("fe0f")


def test_join_counts_skips_and_duplicates(tmp_path: Path, tarballs: tuple[Path, Path]) -> None:
    report = write_emoji(tmp_path / "emoji", *tarballs, size=SIDE)
    assert report.renders == 7
    assert report.unmatched == ["1fae9"]
    assert report.duplicates == ["23-fe0f-20e3"]
    assert sum(report.splits.values()) == 5
    assert report.bases == 4 and report.skin_tone_variants == 1
    records = _records(report.path)
    assert sorted(records) == ["0023-20e3", "1f408", "1f44b", "1f44b-1f3fd", "2764"]
    assert records["0023-20e3"]["source"] == "0023-fe0f-20e3.webp"
    assert records["2764"]["name"] == "red heart" and records["2764"]["subgroup"] == "heart"
    assert {p.name for p in (report.path.parent / "images").iterdir()} == {f"{k}.png" for k in records}


def test_skin_tone_variant_shares_its_base_split_and_keeps_tone_words(written: Path) -> None:
    records = _records(written)
    variant, base = records["1f44b-1f3fd"], records["1f44b"]
    assert variant["base"] == "1f44b" == base["base"]
    assert variant["split"] == base["split"]
    assert variant["skin_tones"] == ["medium skin tone"] and base["skin_tones"] == []
    raws = [s["raw"] for s in variant["sentences"]]
    assert all("medium skin tone" in r for r in raws)
    # no keywords of its own: the base's are borrowed
    assert any(r.startswith(("hand", "wave", "waving")) and r.endswith(", medium skin tone") for r in raws)
    assert len({r["split"] for r in records.values()}) == 3  # four bases: one test, one val, two train


def test_captions_are_distinct_readable_and_tokenised(written: Path) -> None:
    cat = _records(written)["1f408"]
    assert [s["raw"] for s in cat["sentences"]] == [
        "cat",
        "a cat emoji",
        "animal, pet",
        "animal mammal: cat",
        "animals and nature emoji: cat, pet, kitty",
    ]
    assert cat["sentences"][3]["tokens"] == ["animal", "mammal", "cat"]
    keycap = [s["raw"] for s in _records(written)["0023-20e3"]["sentences"]]
    assert keycap[:2] == ["keycap: #", "a keycap emoji: #"]
    for record in _records(written).values():
        raws = [s["raw"] for s in record["sentences"]]
        assert len(raws) == len(set(raws)) == 5


def test_alpha_is_composited_on_the_background(written: Path) -> None:
    image = Image.open(written.parent / "images" / "1f408.png")
    assert image.mode == "RGB" and image.size == (SIDE, SIDE)
    assert image.getpixel((0, 0)) == BACKGROUND  # transparent over magenta: the background, exactly
    assert image.getpixel((SIDE - 1, 0)) == OPAQUE
    half = image.getpixel((SIDE // 2, SIDE - 1))
    assert isinstance(half, tuple)
    for got, bg in zip(half, BACKGROUND, strict=True):
        assert abs(got - bg * 127 / 255) <= 1


def test_composite_direct_and_resized(tarballs: tuple[Path, Path], tmp_path: Path) -> None:
    clear = Image.new("RGBA", (4, 4), (1, 2, 3, 0))
    assert composite(clear, (9, 8, 7)).getcolors() == [(16, (9, 8, 7))]
    report = write_emoji(tmp_path / "small", *tarballs, size=8)
    small = Image.open(report.path.parent / "images" / "1f408.png")
    assert small.size == (8, 8)
    assert small.getpixel((0, 3)) == BACKGROUND and small.getpixel((7, 3)) == OPAQUE


def test_load_pairs_reads_the_json_and_meta_carries_labels(written: Path) -> None:
    total = 0
    for split in ("train", "val", "test"):
        pairs = load_pairs(written, split)
        total += len(pairs)
        for pair in pairs:
            assert Path(str(pair.image)).is_file() and len(pair.captions) == 5
    assert total == 5
    labelled = {p.meta["codepoints"]: p.meta for s in ("train", "val", "test") for p in load_pairs(written, s)}
    assert labelled["1f44b-1f3fd"]["group"] == "people-body"
    assert labelled["1f44b-1f3fd"]["subgroup"] == "hand-fingers-open"
    assert labelled["2764"]["name"] == "red heart"


def test_rerun_is_quick_and_bytes_are_identical(tmp_path: Path, tarballs: tuple[Path, Path], written: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in written.parent.rglob("*") if p.is_file()}
    again = write_emoji(written.parent, *tarballs, size=SIDE)
    assert again.reused and again.duplicates == ["23-fe0f-20e3"]
    assert {p.name: p.stat().st_mtime_ns for p in written.parent.rglob("*") if p.is_file()} == before
    other = write_emoji(tmp_path / "other", *tarballs, size=SIDE)
    assert not other.reused
    for path in sorted(written.parent.rglob("*")):
        if path.is_file():
            assert (tmp_path / "other" / path.relative_to(written.parent)).read_bytes() == path.read_bytes()
    resized = write_emoji(written.parent, *tarballs, size=SIDE // 2)
    assert not resized.reused  # other settings: written again


def test_split_proportions_and_seed() -> None:
    bases = [f"{k:05x}" for k in range(1000)]
    splits = assign_splits(bases, seed=0)
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 800, "val": 50, "test": 150}
    assert assign_splits(reversed(bases), seed=0) == splits
    assert assign_splits(bases, seed=1) != splits


def _fake_npm(tmp_path: Path, source: Path, filename: str) -> Path:
    """An `npm` on PATH that copies `source` to --pack-destination and logs each call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path / "npm.log"}"\n'
        'while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && dest="$2"; shift; done\n'
        f'cp "{source}" "$dest/{filename}"\n'
        f'echo \'[{{"filename": "{filename}"}}]\'\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_fetch_packs_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _tar(tmp_path / "source.tgz", {"package/package.json": b"{}"})
    package = NpmPackage("@scope/pkg", "1.0.0", integrity_of(source))
    assert package.tarball_name == "scope-pkg-1.0.0.tgz"
    monkeypatch.setenv("PATH", f"{_fake_npm(tmp_path, source, package.tarball_name)}{os.pathsep}/usr/bin:/bin")
    cache = tmp_path / "cache"
    path = fetch_package(package, cache)
    assert path == cache / "scope-pkg-1.0.0.tgz" and path.read_bytes() == source.read_bytes()
    assert fetch_package(package, cache) == path
    calls = (tmp_path / "npm.log").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("pack @scope/pkg@1.0.0 ")
    assert sorted(p.name for p in cache.iterdir()) == ["scope-pkg-1.0.0.tgz"]


def test_fetch_refuses_a_download_with_wrong_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = _tar(tmp_path / "wrong.tgz", {"package/package.json": b"{}"})
    monkeypatch.setenv("PATH", f"{_fake_npm(tmp_path, wrong, FLUENT.tarball_name)}{os.pathsep}/usr/bin:/bin")
    cache = tmp_path / "cache"
    with pytest.raises(NpmPackageError, match=r"@lobehub/fluent-emoji-3d@1\.1\.0.*pinned integrity"):
        fetch_package(FLUENT, cache)
    assert list(cache.iterdir()) == []  # the bad download is not kept


def test_cached_tarball_with_wrong_bytes_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FLUENT.tarball_name).write_bytes(b"not the package")
    with pytest.raises(NpmPackageError, match=r"@lobehub/fluent-emoji-3d@1\.1\.0.*delete the file"):
        fetch_package(FLUENT, cache)


def test_missing_npm_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(NpmPackageError, match=r"@lobehub/fluent-emoji-3d@1\.1\.0: npm is not installed"):
        fetch_package(FLUENT, tmp_path / "cache")


def test_zero_shot_reads_readable_labels_and_scores_ties_as_wrong(written: Path) -> None:
    import numpy as np

    from trainer.evaluate import zero_shot, zero_shot_accuracy, zero_shot_tasks

    pairs = [p for s in ("train", "val", "test") for p in load_pairs(written, s)]
    tasks = zero_shot_tasks(pairs)
    assert set(tasks) == {"group", "subgroup"} and "-" not in "".join(tasks["group"])
    scores = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 3.0]])
    assert zero_shot_accuracy(scores, ["a", "a", "b"], ["a", "b"]) == 2 / 3  # the tie in row 2 is wrong
    names = sorted({label for labels in tasks.values() for label in labels})
    images = sum(np.eye(len(names))[[names.index(x) for x in labels]] for labels in tasks.values())

    def prompts(texts: list[str]) -> np.ndarray:  # a perfect encoder: one-hot of the label named in the prompt
        return np.eye(len(names))[[names.index(t.removeprefix("an emoji of ")) for t in texts]]

    out = zero_shot(images, prompts, pairs)
    assert out["zero_shot_group"]["accuracy"] == 1.0 and out["zero_shot_subgroup"]["accuracy"] == 1.0
    assert out["zero_shot_group"]["chance"] == 1 / len(set(tasks["group"]))
