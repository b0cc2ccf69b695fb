"""The grounded shapes recipe under its CPU budget, with the dense twin trained for the same loop seconds beside it.

    .venv/bin/python benchmarks/train_shapes.py [--steps 2000] [--out /tmp/lexlip-shapes] [--seeds 0]

Recipe (trainer/recipes.py, chosen by measurement): the `shapes` config from random weights, one LexLIP stage on the
active vocabulary (the captions' tokens plus 256 sampled negatives a step): the image lexicon learns the content words
of all its captions (binary cross-entropy) and their BM25 weights in the image's caption document (squared error),
the caption lexicon is cut to its own tokens, and the in-batch contrastive loss (at 0.3) ties the two. The dense twin
trains on the same config, data, batch and learning rate for exactly LexLIP's training-loop seconds (start-up left
out: both pay it alike). Both are scored on the 1,000 held-out images (5,000 captions); LexLIP also by grounding@10
and terms per vector. With several --seeds, each seed is a full run and the table gives every run plus the spread.
Writes benchmarks/results/shapes.md and shapes.json.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from shapes_common import ensure_shapes, evaluate, header, recall_table, training_parser, write

from trainer.recipes import LEXLIP_DIR, ShapesRecipe, loop_seconds, train_dense_twin, train_recipe


def run(data: Path, out: Path, recipe: ShapesRecipe) -> list[dict[str, Any]]:
    lexlip_s = train_recipe(data, out, recipe)
    dense_s = train_dense_twin(data, out, loop_seconds(out / LEXLIP_DIR), recipe)
    lexlip, _ = evaluate(out / "sparse" / "final", data)
    dense, _ = evaluate(out / "dense" / "final", data)
    seed = recipe.extra.get("seed", 0)
    return [
        {"system": f"LexLIP grounded, seed {seed} ({recipe.steps} steps)", "train_s": lexlip_s, **lexlip},
        {"system": f"dense twin, seed {seed} (same training-loop seconds)", "train_s": dense_s, **dense},
    ]


def spread(rows: list[dict[str, Any]], prefix: str) -> str:
    picked = [r for r in rows if r["system"].startswith(prefix)]
    figures = [r["text_to_image"]["R@1"] for r in picked]
    if len(figures) < 2:
        return ""
    return (
        f"- {prefix}: text-to-image R@1 over {len(figures)} seeds: mean {statistics.mean(figures):.3f}, "
        f"min {min(figures):.3f}, max {max(figures):.3f}, stdev {statistics.stdev(figures):.3f}"
    )


def main() -> None:
    parser = training_parser(__doc__, ShapesRecipe.steps, "/tmp/lexlip-shapes")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; the first run's checkpoints stay in --out")
    args = parser.parse_args()
    data = ensure_shapes()
    rows: list[dict[str, Any]] = []
    for n, seed in enumerate(int(s) for s in args.seeds.split(",")):
        recipe = ShapesRecipe(steps=args.steps, extra={"seed": seed} if seed else {})
        rows += run(data, args.out if n == 0 else args.out.with_name(f"{args.out.name}-seed{seed}"), recipe)
    lexlip = rows[0]
    lines = [
        "# shapes: the grounded LexLIP recipe and the dense twin at the same training-loop seconds",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        "- 1,000 held-out images, 5,000 captions; LexLIP scored by exact integer dot products of quantized vectors "
        "(floor(100 p), no top-K cut); ties count against the model",
        f"- grounding@10 (first run): images {lexlip['grounding@10_image']:.3f} (their heaviest content tokens that "
        f"are words of their captions), captions {lexlip['grounding@10_caption']:.3f}",
        *(line for line in (spread(rows, "LexLIP"), spread(rows, "dense")) if line),
        "",
        *recall_table(rows),
    ]
    write("shapes", {"header": header(), "settings": vars(args) | {"out": str(args.out)}, "rows": rows}, lines)


if __name__ == "__main__":
    main()
