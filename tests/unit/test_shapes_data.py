"""The shapes generator: seeded, and resumable image by image."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.data.shapes import generate_shapes


def test_an_interrupted_generation_resumes_to_the_same_set(tmp_path: Path) -> None:
    whole = generate_shapes(tmp_path / "whole", n_train=12, n_val=2, n_test=2, seed=9, image_size=32)
    resumed_dir = tmp_path / "resumed"
    generate_shapes(resumed_dir, n_train=12, n_val=2, n_test=2, seed=9, image_size=32)
    # as a killed run leaves it: no JSON, the last images not drawn yet
    (resumed_dir / "dataset_shapes.json").unlink()
    images = sorted((resumed_dir / "images").iterdir())
    for gone in images[9:]:
        gone.unlink()
    kept = images[0].stat().st_mtime_ns
    resumed = generate_shapes(resumed_dir, n_train=12, n_val=2, n_test=2, seed=9, image_size=32)
    assert json.loads(resumed.read_text()) == json.loads(whole.read_text())
    for image in sorted((whole.parent / "images").iterdir()):
        assert (resumed_dir / "images" / image.name).read_bytes() == image.read_bytes()
    assert images[0].stat().st_mtime_ns == kept  # an image already there is not drawn again
    assert not list((resumed_dir / "images").glob(".*.tmp"))


def test_another_seed_gives_another_set(tmp_path: Path) -> None:
    a = json.loads(generate_shapes(tmp_path / "a", 4, 0, 0, seed=1, image_size=32).read_text())
    b = json.loads(generate_shapes(tmp_path / "b", 4, 0, 0, seed=2, image_size=32).read_text())
    assert [r["objects"] for r in a["images"]] != [r["objects"] for r in b["images"]]
