"""Real pictures: the emoji recipe with a pretrained and a random image tower, each beside its dense twin.

    .venv/bin/python benchmarks/emoji.py [--steps 430] [--out /tmp/lexlip-emoji] [--seeds 3] [--random-seeds 1]
        [--towers pretrained,random] [--results emoji]

Data: `lexlip data emoji` (Fluent Emoji 3D renders, OpenMoji's names and tags; split by base emoji), scored on the
test split (every image against all its captions). Rows, all at one training budget (the LexLIP recipe's
training-loop seconds):
- LexLIP, emoji recipe (trainer/recipes.py: ImageNet EfficientNet-Lite0 + MiniLM-L6, fine-tuned at `tower_lr`
  under fresh vocabulary heads);
- the dense twin on the same towers, data, batch and learning rates, for the same loop seconds;
- the same two with the image tower from seeded random weights (MiniLM still pretrained), trained whole (a random
  stem is not worth freezing), both for LexLIP-pretrained's loop seconds;
- each LexLIP checkpoint once more with its text queries unweighted (`lexlip calibrate` writes the query term
  weights after training: trainer/calibrate.py).
Figures: recall both ways, grounding@10, terms per vector, and zero-shot classification of the test images by
OpenMoji group and subgroup ("an emoji of {label}") beside chance and the majority class.

One run's R@1 moves by 0.02-0.03 with the seed (model heads, batch order, dropout), about the gap being judged, so
`--seeds N` trains each pretrained-tower pair at seeds 0..N-1 (LexLIP and its twin share a seed, hence batch order)
and reports mean, spread and the paired difference; the random towers, far apart from the pretrained ones, train at
`--random-seeds` seeds (default 1). A run folder that already holds a finished run with the same settings is reused
(its recorded wall seconds too), so an interrupted benchmark resumes. Writes benchmarks/results/emoji.md and
emoji.json.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from shapes_common import evaluate, header, recall_table, training_parser, write

from lexlip_es.model.config import RANDOM
from lexlip_es.settings import Settings
from trainer.data.emoji import ensure_emoji
from trainer.recipes import (
    DENSE_DIR,
    LEXLIP_DIR,
    EmojiRecipe,
    Recipe,
    calibrate_recipe,
    last_record,
    loop_seconds,
    train_dense_twin,
    train_recipe,
    train_stage,
)

TOWERS: dict[str, dict[str, Any]] = {
    "pretrained": {},
    # a random stem has nothing worth freezing: the random tower trains whole, for the same wall time
    "random": {"vision_weights": RANDOM, "frozen_vision_blocks": None},
}


def zero_shot_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| system | group accuracy | classes | chance | majority | subgroup accuracy | classes | chance | majority |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, s = r.get("zero_shot_group"), r.get("zero_shot_subgroup")
        if g is None or s is None:
            continue
        lines.append(
            f"| {r['system']} | {g['accuracy']:.3f} | {g['classes']} | {g['chance']:.3f} | {g['majority']:.3f} "
            f"| {s['accuracy']:.3f} | {s['classes']} | {s['chance']:.3f} | {s['majority']:.3f} |"
        )
    return lines


def misses_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Where each system's text-to-image misses at rank 1 went: a skin-tone variant of the caption's own emoji, or
    another emoji."""
    found = [(r["system"], r["text_to_image_misses"]) for r in rows if "text_to_image_misses" in r]
    if not found:
        return []
    lines = [
        f"Text-to-image misses at rank 1, by the image ranked first ({found[0][1]['captions']} captions, "
        f"{found[0][1]['captions_of_an_image_with_family']} of them of an emoji with skin-tone variants, whose "
        "captions tell the variants apart by their skin-tone words alone):",
        "",
        "| system | misses | a skin-tone variant of the same emoji | another emoji |",
        "|---|---|---|---|",
    ]
    for system, m in found:
        lines.append(f"| {system} | {m['missed']} | {m['to_its_family']} | {m['elsewhere']} |")
    return lines


def grounding_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Image grounding@10 within each emoji group, one column per LexLIP row."""
    found = [(r["system"], r["grounding@10_image_by_group"]) for r in rows if "grounding@10_image_by_group" in r]
    if not found:
        return []
    groups = sorted(found[0][1], key=lambda g: -found[0][1][g]["images"])
    lines = [
        "| group | test images | " + " | ".join(system for system, _ in found) + " |",
        "|---|---|" + "---|" * len(found),
    ]
    for g in groups:
        cells = " | ".join(f"{by[g]['grounding@10_image']:.3f}" for _, by in found)
        lines.append(f"| {g} | {found[0][1][g]['images']} | {cells} |")
    return lines


def run(
    data: Path, run_dir: Path, tower: str, recipe: Recipe, budget: float | None
) -> tuple[list[dict[str, Any]], float]:
    """LexLIP and its dense twin with this image tower, into `run_dir`. Without a `budget` LexLIP runs the recipe's
    steps and its twin gets LexLIP's training-loop seconds; with one, both train for `budget` seconds of loop."""
    if budget is None:
        lexlip_wall = train_recipe(data, run_dir, recipe, reuse=True)
    else:
        timed = {**recipe.settings(f"LexLIP, {tower} image tower"), "steps": 100 * recipe.steps, "max_seconds": budget}
        lexlip_wall = train_stage("finetune", data, run_dir / LEXLIP_DIR, timed, stream=True, reuse=True)
        calibrate_recipe(data, run_dir, recipe)
    lexlip_loop = loop_seconds(run_dir / LEXLIP_DIR)
    dense_wall = train_dense_twin(data, run_dir, budget or lexlip_loop, recipe, reuse=True)
    rows = []
    for kind, wall, folder in (("LexLIP", lexlip_wall, LEXLIP_DIR), ("dense twin", dense_wall, DENSE_DIR)):
        metrics, _ = evaluate(run_dir / folder / "final", data)
        seed = int(recipe.extra.get("seed", 0))
        rows.append(
            {
                "system": f"{kind}, {tower} image tower" + (f", seed {seed}" if seed else ""),
                "group": f"{kind}, {tower} image tower",
                "kind": kind,
                "seed": seed,
                "train_s": loop_seconds(run_dir / folder),
                "wall_s": wall,
                "steps": last_record(run_dir / folder)["step"],
                "tower": tower,
                **metrics,
            }
        )
        if "text_to_image_unweighted" in metrics:
            rows.append(unweighted_row(rows[-1]))
    return rows, lexlip_loop


UNWEIGHTED = "LexLIP, unweighted queries"


def unweighted_row(row: dict[str, Any]) -> dict[str, Any]:
    """A LexLIP row as it scores without its query term weights: its recall and lexicon figures only (zero-shot,
    misses and grounding by group stay with the weighted row)."""
    kept = ("seed", "train_s", "wall_s", "steps", "tower", "image_to_text", "mean_nnz_image", "mean_nnz_text")
    return {
        **{k: row[k] for k in kept},
        **{k: row[k] for k in ("grounding@10_image", "grounding@10_caption") if k in row},
        "system": row["system"].replace("LexLIP", UNWEIGHTED, 1),
        "group": row["group"].replace("LexLIP", UNWEIGHTED, 1),
        "kind": UNWEIGHTED,
        "text_to_image": row["text_to_image_unweighted"],
    }


def seeded(tower: str, seed: int, steps: int) -> tuple[str, EmojiRecipe]:
    """The run folder's name and the recipe for this tower at this seed (seed 0: the recipe's own settings)."""
    extra = {**TOWERS[tower], **({"seed": seed} if seed else {})}
    return (tower if seed == 0 else f"{tower}-seed{seed}"), EmojiRecipe(steps=steps, extra=extra)


SPREAD_METRICS = (
    ("t2i R@1", lambda r: r["text_to_image"]["R@1"]),
    ("t2i R@10", lambda r: r["text_to_image"]["R@10"]),
    ("i2t R@1", lambda r: r["image_to_text"]["R@1"]),
    ("i2t R@10", lambda r: r["image_to_text"]["R@10"]),
)


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def seed_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Mean ± sample standard deviation over seeds per system, and LexLIP minus its twin paired by seed."""
    names = [name for name, _ in SPREAD_METRICS]
    lines = ["| system | seeds | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for system in dict.fromkeys(r["group"] for r in rows):
        found = [r for r in rows if r["group"] == system]
        cells = " | ".join(mean_sd([get(r) for r in found]) for _, get in SPREAD_METRICS)
        lines.append(f"| {system} | {len(found)} | {cells} |")
    for tower in dict.fromkeys(r["tower"] for r in rows):
        by_seed = {(r["kind"], r["seed"]): r for r in rows if r["tower"] == tower}
        for lexlip in ("LexLIP", UNWEIGHTED):
            seeds = sorted(s for kind, s in by_seed if kind == lexlip and ("dense twin", s) in by_seed)
            if not seeds:
                continue
            diffs = [
                mean_sd([get(by_seed[lexlip, s]) - get(by_seed["dense twin", s]) for s in seeds])
                for _, get in SPREAD_METRICS
            ]
            label = f"{lexlip} minus twin, {tower} tower, paired by seed"
            lines.append(f"| {label} | {len(seeds)} | " + " | ".join(diffs) + " |")
    return lines


def main() -> None:
    parser = training_parser(__doc__, EmojiRecipe.steps, "/tmp/lexlip-emoji")
    parser.add_argument("--towers", default="pretrained,random", help="comma-separated: pretrained, random")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 for the pretrained tower")
    parser.add_argument("--random-seeds", type=int, default=1, help="seeds 0..N-1 for the random tower")
    parser.add_argument("--results", default="emoji", help="write benchmarks/results/RESULTS.md and .json")
    args = parser.parse_args()
    settings = Settings.from_env()
    data = ensure_emoji(settings.cache_dir / "data" / "emoji", settings=settings)
    rows: list[dict[str, Any]] = []
    budget: float | None = None
    for tower in args.towers.split(","):
        for seed in range(args.seeds if tower == "pretrained" else args.random_seeds):
            folder, recipe = seeded(tower, seed, args.steps)
            # every run trains for the first LexLIP run's loop seconds (the twins get their own LexLIP's)
            found, seconds = run(data, args.out / folder, tower, recipe, budget if tower != "pretrained" else None)
            budget = budget or seconds
            rows += found
    first = rows[0]
    lines = [
        "# emoji: LexLIP and the dense twin on real pictures, pretrained and random image towers",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- test split: {first['images']} images, {first['captions']} captions (split by base emoji: no skin-tone "
        "variant of a test emoji was seen in training)",
        f"- recipe: trainer/recipes.py EmojiRecipe, {args.steps} steps of {EmojiRecipe.batch_size}; every other run "
        f"(the dense twins, LexLIP with a random image tower) trains for that run's training-loop time "
        f"({budget:.0f} s; start-up, which both pay alike, left out: wall seconds and steps below)",
        "- LexLIP scored by exact integer dot products of quantized vectors; ties count against the model; text "
        "queries carry the checkpoint's query term weights (idf ** power over the training images' lexicons, the "
        "power picked on the val split: lexlip_es/query_weights.py), and the `unweighted queries` rows score the "
        "same checkpoints without them (image-to-text is the same in both: captions are documents there)",
        "",
        "Mean ± sample standard deviation over seeds (LexLIP and its twin share each seed's batch order), and LexLIP's "
        "lead over its twin paired by seed:",
        "",
        *seed_lines(rows),
        "",
        "Each run:",
        "",
        *recall_table(rows),
        "",
        "Training steps and wall seconds (start-up included) behind the loop seconds above:",
        "",
        "| system | steps | loop (s) | wall (s) |",
        "|---|---|---|---|",
        *(
            f"| {r['system']} | {r['steps']} | {r['train_s']:.0f} | {r['wall_s']:.0f} |"
            for r in rows
            if r["kind"] != UNWEIGHTED
        ),
        "",
        *misses_lines(rows),
        "",
        "Zero-shot classification of the test images (prompt `an emoji of {label}`; a tie counts as wrong):",
        "",
        *zero_shot_lines(rows),
        "",
        "Image grounding@10 within each group (the test emoji are kinds no training image showed):",
        "",
        *grounding_lines(rows),
    ]
    write(args.results, {"header": header(), "settings": {**vars(args), "out": str(args.out)}, "rows": rows}, lines)


if __name__ == "__main__":
    main()
