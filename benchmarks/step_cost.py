"""Where one training step's time goes on this CPU: the dense twin against LexLIP, towers against vocabulary heads.

    .venv/bin/python benchmarks/step_cost.py [--model shapes] [--batch-size 128] [--repeats 5] [--negatives 256]

Times forward + backward at the training batch: (1) the dense twin (CLS -> projection, InfoNCE), (2) LexLIP's
towers alone (the same transformers, no heads), (3) LexLIP over the whole vocabulary (30,522-wide LM heads over every
position, max-pool, contrastive), (4) LexLIP on the active vocabulary as the grounded recipe trains it: the heads
score only the shapes captions' tokens plus --negatives sampled ones. (3) - (2) is the price of a full lexicon head;
(4) - (2) what is left of it. Writes benchmarks/results/step_cost.md and step_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from shapes_common import header, write

from trainer.vocabulary import ActiveVocabulary


def timed(step: Callable[[], torch.Tensor], repeats: int) -> float:
    step().backward()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def main() -> None:
    from trainer.allocator import reexec_with_jemalloc

    reexec_with_jemalloc([__file__, *sys.argv[1:]])
    from lexlip_es.encoders.dense import DenseEncoder
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    lexlip = LexLIPEncoder.from_config(args.model)
    dense = DenseEncoder.from_config(args.model)
    lexlip.model.train()
    dense.model.train()
    size = lexlip.config.vision.image_size
    pixels = torch.randn(args.batch_size, 3, size, size)
    ids, mask = lexlip.tokenizer(["a large red circle at the top left and a small blue star"] * args.batch_size)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    m = lexlip.model

    def dense_step() -> torch.Tensor:
        return info_nce(dense.model.encode_image(pixels), dense.model.encode_text(ids_t, mask_t))

    def towers_step() -> torch.Tensor:
        image = m.visual_proj(m.visual.forward_features(pixels))
        text = m.text.bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        return info_nce(image.mean(1), text.mean(1))

    def lexlip_step() -> torch.Tensor:
        return info_nce(m.encode_image(pixels), m.encode_text(ids_t, mask_t))

    from lexlip_es.model import sparse_pool
    from trainer.data.shapes import COLOURS, SHAPES

    words = " ".join([*COLOURS, *SHAPES, "small large at the top bottom left right middle on in and a an there is of"])
    active = ActiveVocabulary([(words, "a picture of , ")], lexlip.tokenizer, args.negatives)
    targets = active.targets(np.arange(1).repeat(args.batch_size), ids, mask, torch.Generator().manual_seed(0))
    columns, vocab_mask = targets.columns, m.vocab_mask[targets.columns]

    def active_step() -> torch.Tensor:
        image = sparse_pool(m.image_logits(pixels, columns), None, vocab_mask)
        text = sparse_pool(m.text_logits(ids_t, mask_t, columns), mask_t, vocab_mask)
        return info_nce(image, text)

    rows = []
    steps = [
        ("dense twin", dense_step),
        ("LexLIP towers only", towers_step),
        ("LexLIP, whole vocabulary", lexlip_step),
        (f"LexLIP, active vocabulary ({columns.numel()} columns)", active_step),
    ]
    for name, step in steps:
        seconds = timed(step, args.repeats)
        rows.append({"step": name, "seconds": seconds, "images_per_s": args.batch_size / seconds})
    heads = rows[2]["seconds"] - rows[1]["seconds"]
    active_heads = rows[3]["seconds"] - rows[1]["seconds"]
    lines = [
        f"# One training step (forward + backward), {args.model} config, batch {args.batch_size}",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- median of {args.repeats} steps after one warm-up; vocabulary {m.vocab_mask.numel():,} tokens",
        "",
        "| step | seconds | images/s | vs dense twin |",
        "|---|---|---|---|",
        *(
            f"| {r['step']} | {r['seconds']:.3f} | {r['images_per_s']:.0f} | {r['seconds'] / rows[0]['seconds']:.1f}x |"
            for r in rows
        ),
        "",
        f"The vocabulary heads and pooling take {heads:.3f} s of LexLIP's {rows[2]['seconds']:.3f} s "
        f"({100 * heads / rows[2]['seconds']:.0f}%); on the active vocabulary {max(active_heads, 0.0):.3f} s of "
        f"{rows[3]['seconds']:.3f} s, and a LexLIP step costs {rows[3]['seconds'] / rows[0]['seconds']:.1f}x a "
        "dense-twin step.",
    ]
    write("step_cost", {"header": header(), "settings": vars(args), "rows": rows}, lines)


if __name__ == "__main__":
    main()
