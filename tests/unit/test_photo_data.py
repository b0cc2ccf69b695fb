"""The Debian-packaged picture sets (tuxpaint stamps, openclipart) on hand-made miniatures: a .deb built here (ar +
data.tar.xz), a fake apt-get on PATH, tiny PNG/SVG trees. No network, no services."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from trainer.data import pictures
from trainer.data.debian import DebianPackage, DebianPackageError, extract_deb, fetch_deb, sha256_of
from trainer.data.openclipart import clean_keyword, clean_title, read_metadata, stem_name, write_openclipart
from trainer.data.tuxpaint import STAMPS_PREFIX, scan_stamps, write_tuxpaint

BACKGROUND = pictures.BACKGROUND
RED = (200, 10, 10)


def _png(width: int = 8, height: int = 8, transparent_left: bool = False) -> bytes:
    image = Image.new("RGBA", (width, height), (*RED, 255))
    if transparent_left:
        image.paste((0, 255, 0, 0), (0, 0, width // 2, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


SQUARE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20pt" height="10pt" viewBox="0 0 20 10">'
    '<rect width="20" height="10" fill="#c80a0a"/></svg>'
)


def _ar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def _tar_xz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        folders = sorted({str(Path(n).parent) for n in [*files, *(links or {})]})
        for folder in folders:
            info = tarfile.TarInfo(f"./{folder}/")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name if name.startswith("/") else f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"./{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def _deb(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    control = _tar_xz({"control": b"Package: test\n"})
    return _ar(path, [("debian-binary", b"2.0\n"), ("control.tar.xz", control), ("data.tar.xz", _tar_xz(files, links))])


def _stamp_files() -> dict[str, bytes]:
    base = STAMPS_PREFIX
    return {
        f"{base}/food/fruit/apple_red.png": _png(16, 8, transparent_left=True),
        f"{base}/food/fruit/apple_red.txt": "\ufeffA red apple.\nfr.utf8=Une pomme rouge.\n".encode(),
        f"{base}/food/fruit/cherry.png": _png(),
        f"{base}/food/fruit/cherry.svg": SQUARE_SVG.encode(),
        f"{base}/food/fruit/cherry.txt": b"Some  cherries.\r\n",
        f"{base}/vehicles/car.svg": SQUARE_SVG.encode(),
        f"{base}/vehicles/car.txt": b"A car.\n",
        f"{base}/vehicles/car_desc_fr.ogg": b"OggS",
        f"{base}/plants/nodesc.png": _png(),
        f"{base}/plants/lonely.txt": b"A description without a picture.\n",
        f"{base}/seasonal/broken.svg": b"<svg><g>",
        f"{base}/seasonal/broken.txt": b"A broken drawing.\n",
        f"{base}/animals/cat.png": _png(),
        f"{base}/animals/cat.txt": b"A cat.\n",
        f"{base}/symbols/heart.svg": SQUARE_SVG.encode(),
        f"{base}/symbols/heart.txt": b"A heart.\n",
        "usr/share/doc/tuxpaint-stamps-default/copyright": b"GPL-2\n",
    }


@pytest.fixture()
def stamps(tmp_path: Path) -> Path:
    deb = _deb(tmp_path / "stamps.deb", _stamp_files())
    return extract_deb(deb, tmp_path / "extracted", STAMPS_PREFIX)


def test_extract_writes_only_the_prefix_once(tmp_path: Path) -> None:
    deb = _deb(tmp_path / "stamps.deb", _stamp_files(), links={f"{STAMPS_PREFIX}/food/apple": "fruit/apple_red.png"})
    dest = tmp_path / "out"
    root = extract_deb(deb, dest, STAMPS_PREFIX)
    assert root == dest / STAMPS_PREFIX
    assert (root / "food/fruit/apple_red.txt").read_bytes().startswith(b"\xef\xbb\xbfA red apple.")
    assert (root / "food/apple").is_symlink() and (root / "food/apple").read_bytes() == _png(16, 8, True)
    assert not (dest / "usr/share/doc").exists()
    (root / "vehicles/car.txt").write_bytes(b"changed")
    assert extract_deb(deb, dest, STAMPS_PREFIX) == root  # the marker says it is done: nothing rewritten
    assert (root / "vehicles/car.txt").read_bytes() == b"changed"


@pytest.mark.parametrize(
    ("files", "links", "words"),
    [
        ({"usr/share/x/../../../../etc/evil": b"x"}, None, "`..`"),
        ({"/usr/share/x/evil": b"x"}, None, "absolute"),
        ({"usr/share/x/ok": b"x"}, {"usr/share/x/up": "../../../../etc/passwd"}, "leaves"),
        ({"usr/share/x/ok": b"x"}, {"usr/share/x/abs": "/etc/passwd"}, "leaves"),
        ({"usr/share/x/ok": b"x"}, {"usr/share/x/sibling": "../y"}, "leaves"),
    ],
)
def test_extract_refuses_paths_and_links_that_escape(
    tmp_path: Path, files: dict[str, bytes], links: dict[str, str] | None, words: str
) -> None:
    deb = _deb(tmp_path / "evil.deb", files, links)
    with pytest.raises(DebianPackageError, match=words):
        extract_deb(deb, tmp_path / "out", "usr/share/x")
    assert not (tmp_path / "etc").exists()
    assert not list((tmp_path / "out").glob(".extracted-*"))


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="building a zstd .deb needs dpkg-deb")
def test_extract_reads_zstd_through_dpkg_deb(tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: a <a@b>\nDescription: t\n"
    )
    (tree / "usr/share/x").mkdir(parents=True)
    (tree / "usr/share/x/a.txt").write_text("hello")
    (tree / "usr/share/x/b.txt").symlink_to("a.txt")
    deb = tmp_path / "t.deb"
    subprocess.run(
        ["dpkg-deb", "-Zzstd", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True
    )
    root = extract_deb(deb, tmp_path / "out", "usr/share/x")
    assert (root / "a.txt").read_text() == "hello" and (root / "b.txt").is_symlink()
    assert (root / "b.txt").read_text() == "hello"


def test_extract_refuses_what_is_not_a_deb(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(DebianPackageError, match="no ar signature"):
        extract_deb(bad, tmp_path / "out", "usr")
    only_control = _ar(tmp_path / "control.deb", [("debian-binary", b"2.0\n")])
    with pytest.raises(DebianPackageError, match=r"no data\.tar"):
        extract_deb(only_control, tmp_path / "out", "usr")


def _fake_apt(tmp_path: Path, source: Path, filename: str, fail_until_update: bool = False) -> Path:
    """An `apt-get` on PATH that logs each call and copies `source` into its working folder as `filename`; with
    `fail_until_update`, `download` fails as it does without package lists until `update` has run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, flag = tmp_path / "apt.log", tmp_path / "updated"
    gate = f'[ "$1" = download ] && [ ! -e "{flag}" ] && {{ echo "E: Unable to locate package x" >&2; exit 100; }}\n'
    script = bin_dir / "apt-get"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'[ "$1" = update ] && {{ touch "{flag}"; exit 0; }}\n'
        + (gate if fail_until_update else "")
        + f'cp "{source}" "./{filename}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _package(deb: Path, name: str = "pkg") -> DebianPackage:
    return DebianPackage(name, "1:2.0-1", sha256_of(deb), "test")


def test_fetch_downloads_once_and_checks_the_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = _deb(tmp_path / "source.deb", {"usr/share/x/a": b"a"})
    package = _package(deb)
    assert package.deb_name == "pkg_1%3a2.0-1_all.deb"
    monkeypatch.setenv("PATH", f"{_fake_apt(tmp_path, deb, package.deb_name)}{os.pathsep}/usr/bin:/bin")
    cache = tmp_path / "cache"
    path = fetch_deb(package, cache)
    assert path == cache / "debian" / package.deb_name and path.read_bytes() == deb.read_bytes()
    assert fetch_deb(package, cache) == path
    assert (tmp_path / "apt.log").read_text().splitlines() == ["download pkg=1:2.0-1"]
    assert sorted(p.name for p in (cache / "debian").iterdir()) == [package.deb_name]


def test_fetch_updates_the_lists_once_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = _deb(tmp_path / "source.deb", {"usr/share/x/a": b"a"})
    package = _package(deb)
    bin_dir = _fake_apt(tmp_path, deb, package.deb_name, fail_until_update=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert fetch_deb(package, tmp_path / "cache").is_file()
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["download pkg=1:2.0-1", "update -qq", "download pkg=1:2.0-1"]


def test_fetch_without_lists_as_a_user_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = _deb(tmp_path / "source.deb", {"usr/share/x/a": b"a"})
    package = _package(deb)
    bin_dir = _fake_apt(tmp_path, deb, package.deb_name, fail_until_update=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DebianPackageError, match=r"pkg=1:2\.0-1: `apt-get download` failed.*apt-get update` as root"):
        fetch_deb(package, tmp_path / "cache")


def test_fetch_refuses_a_download_with_wrong_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = _deb(tmp_path / "source.deb", {"usr/share/x/a": b"a"})
    package = DebianPackage("pkg", "2.0-1", "0" * 64, "test")
    monkeypatch.setenv("PATH", f"{_fake_apt(tmp_path, deb, package.deb_name)}{os.pathsep}/usr/bin:/bin")
    cache = tmp_path / "cache"
    with pytest.raises(DebianPackageError, match=r"pkg=2\.0-1: .*pinned sha256.*discarded"):
        fetch_deb(package, cache)
    assert list((cache / "debian").iterdir()) == []


def test_a_cached_deb_with_wrong_bytes_is_refused(tmp_path: Path) -> None:
    package = DebianPackage("pkg", "2.0-1", "0" * 64, "test")
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian" / package.deb_name).write_bytes(b"not the package")
    with pytest.raises(DebianPackageError, match=r"pkg=2\.0-1: .*pinned sha256.*delete the file"):
        fetch_deb(package, tmp_path)


def test_missing_apt_get_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DebianPackageError, match=r"pkg=2\.0-1: apt-get is not installed"):
        fetch_deb(DebianPackage("pkg", "2.0-1", "0" * 64, "test"), tmp_path)


def test_scan_never_enters_animals_or_symbols(stamps: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    original = Path.read_bytes

    def spy(self: Path) -> bytes:
        read.append(str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    scan = scan_stamps(stamps)
    assert [s.key for s in scan.stamps] == [
        "food/fruit/apple_red",
        "food/fruit/cherry",
        "seasonal/broken",
        "vehicles/car",
    ]
    assert [s.kind for s in scan.stamps] == ["png", "png", "svg", "svg"]
    assert scan.stamps[0].description == "A red apple." and scan.stamps[1].description == "Some cherries."
    assert scan.no_description == ["plants/nodesc"] and scan.no_picture == ["plants/lonely"]
    assert read and not [p for p in read if "/animals/" in p or "/symbols/" in p]


def test_tuxpaint_records_and_pictures(stamps: Path, tmp_path: Path) -> None:
    report = write_tuxpaint(tmp_path / "set", stamps, size=16)
    data = json.loads(report.path.read_text())
    records = {r["filename"]: r for r in data["images"]}
    assert sorted(records) == ["food__fruit__apple_red.png", "food__fruit__cherry.png", "vehicles__car.png"]
    apple = records["food__fruit__apple_red.png"]
    assert [s["raw"] for s in apple["sentences"]] == ["A red apple."]
    assert apple["sentences"][0]["tokens"] == ["a", "red", "apple"]
    assert (apple["category"], apple["kind"], apple["source"]) == (
        "food",
        "png",
        "usr/share/tuxpaint/stamps/food/fruit/apple_red.png",
    )
    assert records["vehicles__car.png"]["kind"] == "svg"
    assert report.failed.keys() == {"seasonal/broken"} and "does not render" in report.failed["seasonal/broken"]
    assert report.no_description == ["plants/nodesc"] and report.kinds == {"png": 2, "svg": 1}
    text = report.path.read_text()
    assert "A cat." not in text and "A heart." not in text and "animals/" not in text and "symbols/" not in text
    sentids = [s["sentid"] for r in data["images"] for s in r["sentences"]]
    assert sentids == list(range(len(sentids))) and [r["imgid"] for r in data["images"]] == [0, 1, 2]
    with Image.open(tmp_path / "set/images/food__fruit__apple_red.png") as image:
        assert image.mode == "RGB" and image.size == (16, 16)
        assert image.getpixel((8, 1)) == BACKGROUND  # the 16x8 stamp is padded to a square: top rows are background
        assert image.getpixel((2, 8)) == BACKGROUND  # its transparent left half shows the background
        assert image.getpixel((13, 8)) == RED
    with Image.open(tmp_path / "set/images/vehicles__car.png") as image:
        assert image.getpixel((8, 0)) == BACKGROUND and image.getpixel((8, 8)) == RED  # a 2:1 SVG, padded


def test_tuxpaint_output_is_deterministic_and_reused(stamps: Path, tmp_path: Path) -> None:
    first = write_tuxpaint(tmp_path / "a", stamps, size=16)
    second = write_tuxpaint(tmp_path / "b", stamps, size=16)
    assert first.path.read_bytes() == second.path.read_bytes()
    for name in os.listdir(tmp_path / "a/images"):
        assert (tmp_path / "a/images" / name).read_bytes() == (tmp_path / "b/images" / name).read_bytes()
    again = write_tuxpaint(tmp_path / "a", stamps, size=16)
    assert again.reused and again.splits == first.splits
    assert not write_tuxpaint(tmp_path / "a", stamps, size=16, seed=1).reused


def test_splits_are_seeded_per_picture_with_the_asked_fractions() -> None:
    keys = [f"food/item_{i}" for i in range(20000)]
    tux = Counter(pictures.split_of(k, 0, (("test", 0.2), ("val", 0.2))) for k in keys)
    assert abs(tux["train"] / 20000 - 0.6) < 0.02 and abs(tux["test"] / 20000 - 0.2) < 0.02
    clip = Counter(pictures.split_of(k, 0, (("test", 0.05), ("val", 0.05))) for k in keys)
    assert abs(clip["val"] / 20000 - 0.05) < 0.01 and abs(clip["train"] / 20000 - 0.9) < 0.01
    assert [pictures.split_of(k, 0, (("test", 0.2),)) for k in keys[:50]] == [
        pictures.split_of(k, 0, (("test", 0.2),)) for k in keys[:50]
    ]
    assert [pictures.split_of(k, 1, (("test", 0.2),)) for k in keys[:50]] != [
        pictures.split_of(k, 0, (("test", 0.2),)) for k in keys[:50]
    ]


def _clip_svg(title: str, keywords: list[str], creator: str = "Jane Doe", prolog: str = "") -> bytes:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'width="10" height="10"><metadata><rdf:RDF><cc:Work rdf:about="">'
        f"<dc:title>{title}</dc:title><dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
        "<dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>"
        f"<dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>"
        '</cc:Work></rdf:RDF></metadata><rect width="10" height="10" fill="#c80a0a"/></svg>'
    ).encode()


def _clipart(tmp_path: Path) -> tuple[Path, Path]:
    png, svg = tmp_path / "png", tmp_path / "svg"
    pairs = {
        "food/fruit/apple_01": _clip_svg("Red Apple", ["fruit", "hash", "", "food_item", "123", "unsorted"]),
        "computer/icons/lemon-theme/actions/button_cancel": _clip_svg("Lemon SVG theme", ["icon", "lemon_theme_icon"]),
        "signs_and_symbols/flags/europe/uk_england": _clip_svg(
            "Clipart by Michael Wheeler - United Kingdom - England", ["europe", "united_nations_member", "flag"]
        ),
        "unsorted/x_01": _clip_svg("Clipart by Nicu Buculei - pear", ["unsorted", "hash", "jane doe"]),
        "office/broken": b'<svg xmlns="http://www.w3.org/2000/svg"><metadata><cc:Work><dc:title>Oops</cc:Work>'
        b"</metadata></svg>",
        "office/entity": _clip_svg(
            "&xxe;", ["paper"], prolog='<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
        ),
        **{f"shapes/stars/star_{i:02d}pt": _clip_svg("gramastar", ["stars", "magick"]) for i in range(22)},
    }
    for key, data in pairs.items():
        (png / key).parent.mkdir(parents=True, exist_ok=True)
        (svg / key).parent.mkdir(parents=True, exist_ok=True)
        (png / f"{key}.png").write_bytes(_png())
        (svg / f"{key}.svg").write_bytes(data)
    (png / "signs_and_symbols/flags/uk_england.png").symlink_to("europe/uk_england.png")
    (svg / "signs_and_symbols/flags/uk_england.svg").symlink_to("europe/uk_england.svg")
    (svg / "shapes/circle.svg").write_bytes(_clip_svg("Blue circle", ["circle"]))  # an SVG without a PNG
    return png, svg


def test_metadata_reads_the_work_title_not_the_agents() -> None:
    meta = read_metadata(_clip_svg("Red &amp; Apple", ["fruit", " food "], creator="Jane Doe"))
    assert meta.title == "Red & Apple" and meta.keywords == ("fruit", "food")
    assert meta.agents == ("Open Clip Art Library", "Jane Doe")
    assert read_metadata(b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>').title == ""


@pytest.mark.parametrize(
    ("title", "cleaned"),
    [
        ("Red Apple", "Red Apple"),
        ("Part of the Flat Icon Collection (Wed Aug 25 23:29:46 2004)", ""),
        ("Lemon SVG theme", ""),
        ("Clipart by Nicu Buculei - jigsaw_red_10", ""),
        ("Clipart by Steve Hall - United States - Alabama", "United States - Alabama"),
        ("SVG Gradient Collection by Alan Horkan, 2004.", ""),
        ("AIGA_Symbol_Signs", "AIGA Symbol Signs"),
        ("smiley111", "smiley"),
        ("arrow-down-purple", "arrow down purple"),
        ("mouth - body part", "mouth - body part"),
        ("70a024", ""),
        ("R16 sibmission", ""),
        ("Jane Doe", ""),
    ],
)
def test_titles_are_cleaned(title: str, cleaned: str) -> None:
    assert clean_title(title, frozenset({"jane doe"})) == cleaned


@pytest.mark.parametrize(
    ("keyword", "cleaned"),
    [
        ("north_america", "north america"),
        ("mime-types", ""),
        ("hash", ""),
        ("", ""),
        ("123", ""),
        ("--", ""),
        ("0x9c7e2ec", ""),
        ("lemon_theme_icon", ""),
        ("gold-theme", ""),
        ("mapsym", ""),
        ("united_nations_member", ""),
        ("Jane Doe", ""),
        ("Fruit", "fruit"),
    ],
)
def test_keywords_are_cleaned(keyword: str, cleaned: str) -> None:
    assert clean_keyword(keyword, frozenset({"jane doe"})) == cleaned


def test_stem_names_drop_numbers_letters_and_authors() -> None:
    assert stem_name("computer/icons/button_cancel") == "button cancel"
    assert stem_name("plants/albero_architetto_france_01", frozenset({"architetto francesco rollandin"})) == "albero"
    assert stem_name("shapes/stars/star_57pt20step") == "star"
    assert stem_name("signs/RadiationsNonIonisantes") == "radiations non ionisantes"
    assert stem_name("unsorted/Pinguino1") == "pinguino" and stem_name("computer/icons/70a001") == ""


def test_openclipart_records(tmp_path: Path) -> None:
    png, svg = _clipart(tmp_path)
    report = write_openclipart(tmp_path / "set", png, svg, size=16)
    data = json.loads(report.path.read_text())
    records = {r["source"].split("/", 4)[-1]: r for r in data["images"]}
    apple = records["food/fruit/apple_01.png"]
    assert [s["raw"] for s in apple["sentences"]] == ["Red Apple", "fruit, food item"]  # no shelf, no style
    assert (apple["title"], apple["keywords"], apple["category"]) == ("Red Apple", ["fruit", "food item"], "food")
    icon = records["computer/icons/lemon-theme/actions/button_cancel.png"]
    assert (icon["title"], icon["name"]) == ("", "button cancel")
    assert [s["raw"] for s in icon["sentences"]] == ["button cancel"]
    flag = records["signs_and_symbols/flags/europe/uk_england.png"]
    assert flag["aliases"] == ["signs_and_symbols/flags/uk_england"] and flag["keywords"] == ["europe", "flag"]
    assert [s["raw"] for s in flag["sentences"]] == ["United Kingdom - England", "europe, flag"]
    stars = [r for r in data["images"] if r["category"] == "shapes" and r["kind"] == "png"]
    assert len(stars) == 22 and {r["title"] for r in stars} == {""} and {r["name"] for r in stars} == {"star"}
    circle = records["shapes/circle.svg"]
    assert circle["kind"] == "svg" and circle["sentences"][0]["raw"] == "Blue circle"
    assert report.no_words == ["unsorted/x_01"]
    assert report.failed.keys() == {"office/broken", "office/entity"}
    assert (report.pictures, report.aliases) == (29, 1)
    assert sum(report.splits.values()) == len(data["images"]) == 26
    assert "/etc/hostname" not in json.dumps(data["images"])
    with Image.open(tmp_path / "set/images/food__fruit__apple_01.png") as image:
        assert image.size == (16, 16) and image.getpixel((8, 8)) == RED


def test_openclipart_output_is_deterministic(tmp_path: Path) -> None:
    png, svg = _clipart(tmp_path)
    first = write_openclipart(tmp_path / "a", png, svg, size=16)
    second = write_openclipart(tmp_path / "b", png, svg, size=16)
    assert first.path.read_bytes() == second.path.read_bytes()
    digest = {
        n: hashlib.sha256((tmp_path / "a/images" / n).read_bytes()).digest() for n in os.listdir(tmp_path / "a/images")
    }
    assert digest == {n: hashlib.sha256((tmp_path / "b/images" / n).read_bytes()).digest() for n in digest}
    assert write_openclipart(tmp_path / "a", png, svg, size=16).reused
