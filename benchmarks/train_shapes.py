"""The shapes recipe under a CPU budget, sparse LexLIP against the dense twin with the same steps and data.

    .venv/bin/python benchmarks/train_shapes.py [--steps 1100] [--batch-size 128] [--out /tmp/lexlip-shapes]

Recipe (chosen by measurement, see ARCHITECTURE.md): tiny config from random weights, the in-batch contrastive loss
with FLOPS on L2-normalised vectors, training-time top-K (48 caption terms, 128 image terms) so that the vectors an
index stores are as sparse as the targets demand, AdamW at 1e-3 with 5% warm-up. Writes benchmarks/results/shapes.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shapes_common import ensure_shapes, evaluate, header, recall_table, train, write

TOP_K_TEXT, TOP_K_IMAGE = 48, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexlip-shapes"))
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args()
    data = ensure_shapes()
    common = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": 0.05,
        "log_every": 50,
        "checkpoint_every": 100000,
        "progress": False,
    }
    rows = []
    sparse_settings = {**common, "losses": {"train_top_k_text": TOP_K_TEXT, "train_top_k_image": TOP_K_IMAGE}}
    seconds = train("finetune", data, args.out / "sparse", sparse_settings)
    metrics, eval_s = evaluate(
        args.out / "sparse" / "final", data, "--top-k-image", str(TOP_K_IMAGE), "--top-k-text", str(TOP_K_TEXT)
    )
    rows.append({"system": "LexLIP tiny (sparse)", "train_s": seconds, "eval_s": eval_s, **metrics})
    if not args.skip_dense:
        seconds = train("finetune", data, args.out / "dense", {**common, "kind": "dense"})
        metrics, eval_s = evaluate(args.out / "dense" / "final", data)
        rows.append({"system": "dense twin tiny", "train_s": seconds, "eval_s": eval_s, **metrics})
    lines = [
        "# shapes: text-to-image and image-to-text recall on 1,000 held-out images (5,000 captions)",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- steps {args.steps} x batch {args.batch_size}, lr {args.lr}; ties count against the model",
        "",
        *recall_table(rows),
    ]
    write("shapes", {"header": header(), "settings": common, "rows": rows}, lines)


if __name__ == "__main__":
    main()
