"""`shapes`: a seeded synthetic image-caption data set, our development benchmark and the demo's data.

Each image holds one to three coloured shapes in distinct cells of a 3 x 3 grid, each small or large; five templated
captions per image use words of the BERT vocabulary ("a large red circle at the top left and a small blue star in the
middle"). The generator writes PNG images and a Karpathy-style JSON (train / val / test splits).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 150, 45),
    "blue": (40, 70, 215),
    "yellow": (235, 205, 25),
    "purple": (135, 45, 170),
    "orange": (240, 130, 25),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
SIZES = ("small", "large")
# grid cell (row, column) -> (phrase after "at the"/"in the", short form)
CELLS = {
    (0, 0): ("at the top left", "top left"),
    (0, 1): ("at the top", "top"),
    (0, 2): ("at the top right", "top right"),
    (1, 0): ("on the left", "left"),
    (1, 1): ("in the middle", "middle"),
    (1, 2): ("on the right", "right"),
    (2, 0): ("at the bottom left", "bottom left"),
    (2, 1): ("at the bottom", "bottom"),
    (2, 2): ("at the bottom right", "bottom right"),
}
BACKGROUND = (228, 228, 222)


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]

    def phrase(self, with_size: bool = True, with_place: bool = True) -> str:
        words = ([self.size] if with_size else []) + [self.colour, self.shape]
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
        if with_place:
            words.append(CELLS[self.cell][0])
        return " ".join(words)


def sample_objects(rng: random.Random) -> list[ShapeObject]:
    cells = rng.sample(sorted(CELLS), rng.randint(1, 3))
    return [
        ShapeObject(rng.choice(SHAPES), rng.choice(sorted(COLOURS)), rng.choice(SIZES), cell) for cell in sorted(cells)
    ]


def captions(objects: list[ShapeObject], rng: random.Random) -> list[str]:
    """Five captions: full, reordered, a picture of..., colour and shape only, a terse list."""
    shuffled = objects[:]
    rng.shuffle(shuffled)
    full = " and ".join(o.phrase() for o in objects)
    reordered = " and ".join(o.phrase() for o in reversed(objects))
    picture = "a picture of " + ", ".join(o.phrase() for o in shuffled)
    plain = "there is " + " and ".join(o.phrase(with_size=False, with_place=False) for o in objects)
    terse = ", ".join(f"{o.size} {o.colour} {o.shape} {CELLS[o.cell][1]}" for o in shuffled)
    return [full, reordered, picture, plain, terse]


def _polygon(cx: float, cy: float, r: float, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(cx + r * x, cy + r * y) for x, y in points]


def draw(objects: list[ShapeObject], size: int = 64) -> Any:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), BACKGROUND)
    pen = ImageDraw.Draw(img)
    cell = size / 3
    for o in objects:
        cx, cy = (o.cell[1] + 0.5) * cell, (o.cell[0] + 0.5) * cell
        r = cell * (0.46 if o.size == "large" else 0.24)
        colour = COLOURS[o.colour]
        if o.shape == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif o.shape == "square":
            s = r * 0.85
            pen.rectangle((cx - s, cy - s, cx + s, cy + s), fill=colour)
        elif o.shape == "triangle":
            pen.polygon(_polygon(cx, cy, r, [(0, -1), (0.95, 0.8), (-0.95, 0.8)]), fill=colour)
        elif o.shape == "diamond":
            pen.polygon(_polygon(cx, cy, r, [(0, -1), (0.75, 0), (0, 1), (-0.75, 0)]), fill=colour)
        elif o.shape == "star":
            pts = []
            for k in range(10):
                angle = -math.pi / 2 + k * math.pi / 5
                radius = 1.0 if k % 2 == 0 else 0.45
                pts.append((radius * math.cos(angle), radius * math.sin(angle)))
            pen.polygon(_polygon(cx, cy, r, pts), fill=colour)
        else:  # cross
            w = r * 0.35
            pen.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
            pen.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    return img


def generate_shapes(
    out_dir: str | Path,
    n_train: int = 20000,
    n_val: int = 500,
    n_test: int = 1000,
    seed: int = 0,
    image_size: int = 64,
) -> Path:
    """Write images/ and dataset_shapes.json (Karpathy format plus each image's objects) under `out_dir`.

    Resumable: the objects and captions come from the seed alone and drawing is the cost, so an image file already
    there is kept (each is written to a temporary name and renamed, so one that exists is whole). Progress (images
    drawn, per second, time left) goes to stderr."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    existing = {entry.name for entry in os.scandir(out / "images")}
    rng = random.Random(seed)
    records = []
    sentid = 0
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    bar = tqdm(
        total=len(splits), unit="img", desc="shapes images", file=sys.stderr, mininterval=2.0, dynamic_ncols=True
    )
    for imgid, split in enumerate(splits):
        objects = sample_objects(rng)
        filename = f"shapes_{imgid:07d}.png"
        if filename not in existing:
            tmp = out / "images" / f".{filename}.tmp"
            draw(objects, image_size).save(tmp, format="PNG", optimize=False, compress_level=1)
            tmp.replace(out / "images" / filename)
        bar.update()
        sentences = [
            {"raw": c, "tokens": c.replace(",", "").split(), "sentid": sentid + k}
            for k, c in enumerate(captions(objects, rng))
        ]
        records.append(
            {
                "filepath": "images",
                "filename": filename,
                "imgid": imgid,
                "split": split,
                "sentids": [s["sentid"] for s in sentences],
                "sentences": sentences,
                "objects": [asdict(o) for o in objects],
            }
        )
        sentid += len(sentences)
    bar.close()
    path = out / "dataset_shapes.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"dataset": "shapes", "seed": seed, "images": records}))
    tmp.replace(path)
    return path


def ensure_standard_shapes(directory: str | Path) -> Path:
    """The standard shapes set (20,000 train, 500 val, 1,000 test; seed 0) in `directory`, generated when missing.
    The JSON is written last, so a set whose JSON exists is complete."""
    path = Path(directory) / "dataset_shapes.json"
    if not path.exists():
        generate_shapes(directory)
    return path
