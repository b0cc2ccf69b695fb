"""The paper's Table 3 on shapes: the full pipeline, then each phase-1 loss off in turn, then phase 2 off.

    .venv/bin/python benchmarks/ablation.py [--phase1-steps 60] [--phase2-steps 30] [--finetune-steps 300]
        [--backbones /tmp/lexlip-shapes/dense/final]

Every row runs phase 1 -> phase 2 -> fine-tune with the same steps and data, and reports recall on the 1,000 held-out
images. As in the shapes recipe (benchmarks/train_shapes.py), every row starts its towers from the same dense twin
(trained here first when --backbones does not exist): phase 1 from random towers needs hours on this CPU, and a
table of chance-level rows would show nothing. Writes benchmarks/results/ablation.md and ablation.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shapes_common import ensure_shapes, evaluate, header, recall_table, train, write

ROWS: list[tuple[str, dict[str, Any], bool]] = [
    ("LexLIP (all objectives, both phases)", {}, True),
    ("w/o self-MLM", {"self_mlm": False}, True),
    ("w/o image-bottleneck MLM", {"image_mlm": False}, True),
    ("w/o text-bottleneck MLM", {"text_mlm": False}, True),
    ("w/o in-batch contrastive", {"contrastive": False}, True),
    ("w/o phase 2", {}, False),
]
TOP_K = {"train_top_k_text": 48, "train_top_k_image": 128}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase1-steps", type=int, default=60)
    parser.add_argument("--phase2-steps", type=int, default=30)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lexlip-ablation"))
    parser.add_argument("--backbones", type=Path, default=Path("/tmp/lexlip-shapes/dense/final"))
    parser.add_argument("--backbone-steps", type=int, default=4500)
    args = parser.parse_args()
    data = ensure_shapes()
    if not (args.backbones / "config.json").exists():
        settings = {
            "kind": "dense",
            "steps": args.backbone_steps,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup": 0.05,
            "log_every": 100,
            "checkpoint_every": 100000,
            "progress": False,
        }
        train("finetune", data, args.backbones.parent, settings)
    base = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": 0.05,
        "log_every": 50,
        "checkpoint_every": 100000,
        "progress": False,
    }
    results = []
    for name, switches, phase2 in ROWS:
        run = args.out / name.replace(" ", "_").replace("/", "")
        seconds = train(
            "phase1",
            data,
            run / "phase1",
            {**base, "steps": args.phase1_steps, "losses": {**TOP_K, **switches}},
            "--init-backbones",
            str(args.backbones),
        )
        start = run / "phase1" / "final"
        if phase2:
            seconds += train(
                "phase2",
                data,
                run / "phase2",
                {**base, "steps": args.phase2_steps, "losses": {**TOP_K, "queue_size": 2048}},
                "--init",
                str(start),
            )
            start = run / "phase2" / "final"
        seconds += train(
            "finetune",
            data,
            run / "finetune",
            {**base, "steps": args.finetune_steps, "losses": TOP_K},
            "--init",
            str(start),
        )
        metrics, _ = evaluate(run / "finetune" / "final", data, "--top-k-image", "128", "--top-k-text", "48")
        results.append({"system": name, "train_s": seconds, **metrics})
    lines = [
        "# Ablation on shapes (paper Table 3): recall on 1,000 held-out images",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- phase 1 {args.phase1_steps} steps, phase 2 {args.phase2_steps}, fine-tune {args.finetune_steps}, "
        f"batch {args.batch_size}, lr {args.lr}; towers from the dense twin at {args.backbones}",
        "",
        *recall_table(results),
    ]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write("ablation", {"header": header(), "settings": settings, "rows": results}, lines)


if __name__ == "__main__":
    main()
