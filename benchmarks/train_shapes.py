"""The shapes recipe under the 20-minute CPU budget: a dense twin first, then LexLIP fine-tuned from its towers.

    .venv/bin/python benchmarks/train_shapes.py [--dense-steps 4500] [--sparse-steps 1700] [--out /tmp/lexlip-shapes]

Recipe (chosen by measurement, see README "Training"): tiny config from random weights.
Stage 1 trains the dense twin (contrastive, AdamW 1e-3, 5% warm-up, batch 64): cheap, ~1,800 images/s here.
Stage 2 starts LexLIP's towers from it (`--init-backbones`) and fine-tunes the sparse heads with the in-batch
contrastive loss plus FLOPS, training-time top-K 48 caption / 128 image terms so that the stored vectors are as
sparse as an inverted index wants. The table also lists the dense twin alone (stage 1), evaluated with its dense
vectors, and where each sparse step's time goes. Writes benchmarks/results/shapes.md and shapes.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shapes_common import ensure_shapes, evaluate, header, recall_table, write

from trainer.recipes import SHAPES_TOP_K_IMAGE as TOP_K_IMAGE
from trainer.recipes import SHAPES_TOP_K_TEXT as TOP_K_TEXT
from trainer.recipes import ShapesRecipe, train_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dense-steps", type=int, default=4500)
    parser.add_argument("--sparse-steps", type=int, default=1700)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexlip-shapes"))
    args = parser.parse_args()
    data = ensure_shapes()
    recipe = ShapesRecipe(args.dense_steps, args.sparse_steps, args.batch_size, args.lr)
    seconds = train_shapes(data, args.out, recipe)
    dense_s, sparse_s = seconds["dense"], seconds["sparse"]
    dense_metrics, _ = evaluate(args.out / "dense" / "final", data)
    sparse_metrics, _ = evaluate(
        args.out / "sparse" / "final", data, "--top-k-image", str(TOP_K_IMAGE), "--top-k-text", str(TOP_K_TEXT)
    )
    rows = [
        {"system": f"dense twin tiny ({args.dense_steps} steps)", "train_s": dense_s, **dense_metrics},
        {
            "system": f"LexLIP tiny (dense {args.dense_steps} + sparse {args.sparse_steps} steps)",
            "train_s": dense_s + sparse_s,
            **sparse_metrics,
        },
    ]
    lines = [
        "# shapes: text-to-image and image-to-text recall on 1,000 held-out images (5,000 captions)",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- batch {args.batch_size}, lr {args.lr}, 5% warm-up then linear decay; ties count against the model",
        f"- LexLIP vectors quantized and cut to top-{TOP_K_IMAGE} image / top-{TOP_K_TEXT} caption terms, scored by "
        "exact integer dot products",
        f"- wall time: stage 1 (dense) {dense_s:.0f} s, stage 2 (sparse) {sparse_s:.0f} s, "
        f"total {dense_s + sparse_s:.0f} s",
        "",
        *recall_table(rows),
    ]
    write("shapes", {"header": header(), "settings": vars(args) | {"out": str(args.out)}, "rows": rows}, lines)


if __name__ == "__main__":
    main()
