"""Several Karpathy data sets as one (the photos recipe's emoji + clipart)."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.data.datasets import load_karpathy
from trainer.data.mixture import write_mixture


def _part(folder: Path, names: list[str], split: str, base: bool) -> Path:
    folder.mkdir(parents=True)
    images = []
    for i, name in enumerate(names):
        (folder / "images").mkdir(exist_ok=True)
        (folder / "images" / f"{name}.png").write_bytes(b"png")
        record = {
            "filepath": "images",
            "filename": f"{name}.png",
            "imgid": i,
            "split": split,
            "sentences": [{"raw": f"a {name}", "tokens": ["a", name], "imgid": i, "sentid": i}],
            "sentids": [i],
        }
        images.append({**record, **({"base": f"b-{name}"} if base else {})})
    path = folder / "dataset.json"
    path.write_text(json.dumps({"images": images}))
    return path


def test_mixture_renumbers_points_at_images_and_groups_every_record(tmp_path: Path) -> None:
    emoji = _part(tmp_path / "emoji", ["cat", "dog"], "train", base=True)
    clipart = _part(tmp_path / "clipart", ["pear"], "train", base=False)
    path = write_mixture(tmp_path / "mix", "photos", [("emoji", emoji), ("clipart", clipart)])
    data = json.loads(path.read_text())
    assert [r["imgid"] for r in data["images"]] == [0, 1, 2]
    assert [r["dataset"] for r in data["images"]] == ["emoji", "emoji", "clipart"]
    assert [r["group"] for r in data["images"]] == ["b-cat", "b-dog", "clipart:0"]
    assert [s["sentid"] for r in data["images"] for s in r["sentences"]] == [0, 1, 2]
    assert data["counts"]["clipart/train"] == 1
    pairs = load_karpathy(path, "train")
    assert [Path(str(p.image)).resolve() for p in pairs][2] == (tmp_path / "clipart" / "images" / "pear.png").resolve()
    assert all(Path(str(p.image)).exists() for p in pairs)
    stamp = path.stat().st_mtime_ns
    assert write_mixture(tmp_path / "mix", "photos", [("emoji", emoji), ("clipart", clipart)]) == path
    assert path.stat().st_mtime_ns == stamp  # unchanged parts: not rewritten


def test_a_cap_keeps_the_first_records_of_each_caption(tmp_path: Path) -> None:
    stars = _part(tmp_path / "stars", ["star", "star", "star", "moon"], "train", base=False)
    path = write_mixture(tmp_path / "mix", "capped", [("clipart", stars)], max_per_caption=2)
    data = json.loads(path.read_text())
    assert [r["sentences"][0]["raw"] for r in data["images"]] == ["a star", "a star", "a moon"]
    assert [r["group"] for r in data["images"]] == ["clipart:0", "clipart:1", "clipart:3"]
