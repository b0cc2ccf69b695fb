"""`lexlip train --recipe NAME --data DATA --out DIR`: a measured recipe on a team's own pictures, start to report.

The data are read and checked (trainer/data/own.py: a record without captions or with an unreadable picture stops
the run, named), split by picture when they have no splits (seeded, printed), and written as `OUT/data/dataset.json`.
The recipe trains with its progress bar and, where it has them, writes its query term weights chosen on val
(`lexlip calibrate`). The report is the test split's: recall both ways, image grounding@10, terms per picture and per
caption, training minutes; `with_twin` also trains the dense twin for the same training-loop seconds and reports it
beside.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trainer.data.own import check, read_records, with_splits, write_karpathy
from trainer.recipes import (
    DENSE_DIR,
    LEXLIP_DIR,
    EmojiRecipe,
    PhotosRecipe,
    Recipe,
    ShapesRecipe,
    loop_seconds,
    run_lexlip,
    train_dense_twin,
    train_recipe,
)

RECIPES: dict[str, type[Recipe]] = {"emoji": EmojiRecipe, "photos": PhotosRecipe, "shapes": ShapesRecipe}


@dataclass(frozen=True)
class Scored:
    system: str
    metrics: dict[str, Any]
    loop_seconds: float


def recipe_for(name: str, seed: int, steps: int | None) -> Recipe:
    """The recipe `name` at this seed (and step count, when given)."""
    if name not in RECIPES:
        raise ValueError(f"no recipe {name!r}: one of {', '.join(RECIPES)}")
    recipe = RECIPES[name](extra={"seed": seed})
    return recipe if steps is None else replace(recipe, steps=steps)


def train_own(
    name: str,
    data: str | Path,
    out: Path,
    *,
    with_twin: bool = False,
    seed: int = 0,
    steps: int | None = None,
    max_pixels: int,
    echo: Callable[[str], None] = print,
) -> list[Scored]:
    """Check and split `data`, train recipe `name` into `out` (and its dense twin), score both on the test split."""
    recipe = recipe_for(name, seed, steps)
    records = read_records(data)
    check(records, max_pixels)
    records, how = with_splits(records, seed)
    echo(f"data: {len(records)} pictures, {sum(len(r.captions) for r in records)} captions; {how}")
    data_json = write_karpathy(records, out / "data" / "dataset.json")
    train_recipe(data_json, out, recipe)
    budget = loop_seconds(out / LEXLIP_DIR)
    scored = [Scored(f"LexLIP ({recipe.name} recipe)", _evaluate(out / LEXLIP_DIR / "final", data_json), budget)]
    if with_twin:
        train_dense_twin(data_json, out, budget, recipe)
        twin = _evaluate(out / DENSE_DIR / "final", data_json)
        scored.append(Scored("dense twin (same loop seconds)", twin, loop_seconds(out / DENSE_DIR)))
    return scored


def _evaluate(checkpoint: Path, data_json: Path) -> dict[str, Any]:
    stdout, _ = run_lexlip("eval", "--checkpoint", str(checkpoint), "--data", str(data_json), "--split", "test")
    metrics: dict[str, Any] = json.loads(stdout)
    return metrics


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(scored: list[Scored]) -> list[str]:
    """The test split's figures, one row a system."""
    lines = [
        "| system | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | grounding@10 image | terms a picture "
        "| terms a caption | training minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scored:
        m = s.metrics
        recall = [m[side][k] for side in ("text_to_image", "image_to_text") for k in ("R@1", "R@5", "R@10")]
        grounding, nnz = m.get("grounding@10_image"), [m.get("mean_nnz_image"), m.get("mean_nnz_text")]
        cells = [f"{v:.3f}" for v in recall] + [_cell(grounding, ".3f")] + [_cell(v, ".1f") for v in nnz]
        lines.append(f"| {s.system} | " + " | ".join(cells) + f" | {s.loop_seconds / 60:.1f} |")
    images = scored[0].metrics.get("images")
    lines.append(f"\ntest split: {images} pictures, {scored[0].metrics.get('captions')} captions; ties count against")
    return lines
