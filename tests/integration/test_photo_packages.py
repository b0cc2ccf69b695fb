"""The real pinned Debian packages: fetched with apt-get into the user's cache (once; later runs reuse the checked
files), extracted, and a handful of their real pictures built into records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lexlip_es.settings import Settings
from trainer.data.debian import DEBIAN_PACKAGES, fetch_debian_packages, fetch_wordnet, sha256_of
from trainer.data.openclipart import package_roots, write_openclipart
from trainer.data.tuxpaint import scan_stamps, stamps_root, write_tuxpaint


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    cache = Settings.from_env().cache_dir
    paths = fetch_debian_packages(cache)
    for package in DEBIAN_PACKAGES:
        assert sha256_of(paths[package.name]) == package.sha256
        assert paths[package.name] == cache / "debian" / package.deb_name
    return cache


def _copy(root: Path, keys: list[str], suffixes: tuple[str, ...], dest: Path) -> None:
    for key in keys:
        for suffix in suffixes:
            source = root / f"{key}{suffix}"
            if source.exists():
                (dest / key).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest / f"{key}{suffix}")


def test_tuxpaint_stamps_from_the_real_package(cache_dir: Path, tmp_path: Path) -> None:
    root = stamps_root(cache_dir)
    scan = scan_stamps(root)
    described = {s.key: s for s in scan.stamps}
    assert described["food/fruit/apple_red"].description == "A red apple."
    assert len(described) == 547 and (root / "animals").is_dir()
    assert not [k for k in described if k.startswith(("animals/", "symbols/"))]
    keys = ["food/fruit/apple_red", "seasonal/christmas/elfhat", "animals/birds/blackbird", "symbols/clock"]
    _copy(root, keys, (".png", ".svg", ".txt"), tmp_path / "stamps")
    assert (tmp_path / "stamps/animals/birds/blackbird.txt").is_file() and (
        tmp_path / "stamps/symbols/clock.svg"
    ).is_file()
    report = write_tuxpaint(tmp_path / "set", tmp_path / "stamps", size=64)
    records = json.loads(report.path.read_text())["images"]
    assert [(r["filename"], r["kind"], r["sentences"][0]["raw"]) for r in records] == [
        ("food__fruit__apple_red.png", "png", "A red apple."),
        ("seasonal__christmas__elfhat.png", "svg", described["seasonal/christmas/elfhat"].description),
    ]
    assert not report.failed


def test_openclipart_pictures_from_the_real_packages(cache_dir: Path, tmp_path: Path) -> None:
    png_root, svg_root = package_roots(cache_dir)
    assert len(list(png_root.rglob("*.png"))) == len(list(svg_root.rglob("*.svg"))) == 8121
    keys = ["food/fruit/pesca_architetto_frances_01", "signs_and_symbols/flags/europe/united_kingdom/uk_england"]
    _copy(png_root, keys, (".png",), tmp_path / "png")
    _copy(svg_root, keys, (".svg",), tmp_path / "svg")
    report = write_openclipart(tmp_path / "set", tmp_path / "png", tmp_path / "svg", size=32)
    records = {r["filename"]: r for r in json.loads(report.path.read_text())["images"]}
    flag = records["signs_and_symbols__flags__europe__united_kingdom__uk_england.png"]
    assert flag["title"] == "United Kingdom - England" and "flag" in flag["keywords"]
    assert records["food__fruit__pesca_architetto_frances_01.png"]["sentences"][0]["raw"] == "Pesca"


def test_wordnet_dict_folder(cache_dir: Path) -> None:
    folder = fetch_wordnet(cache_dir)
    for part in ("noun", "verb", "adj", "adv"):
        assert (folder / f"data.{part}").stat().st_size > 0 and (folder / f"index.{part}").is_file()
