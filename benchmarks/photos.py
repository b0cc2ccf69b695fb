"""Photographs, zero-shot: Tux Paint's stamps searched by their descriptions with models that never saw one.

    .venv/bin/python benchmarks/photos.py [--steps 1200] [--out /tmp/lexlip-photos] [--skip-emoji] [--skip-demo]

Data (`lexlip data tuxpaint`, Debian's `tuxpaint-stamps-default`): the 547 stamps outside `animals/` (set aside for
an independent check: never trained, tuned or evaluated on here) and `symbols/`, most of them photographs cut out of
their background, each with its one-line English description. Every description is searched against all 547
pictures (`all`) and, since the val split took the recipe's choices, against the 101 pictures of the test split
(`test`). Rows:
- the ImageNet word prior alone (`lexlip checkpoint imagenet-prior`: no training at all; texts as their own words);
- today's emoji recipe (trainer/recipes.py EmojiRecipe, trained on emoji only);
- the photos recipe (PhotosRecipe: the prior added to the learned image lexicon, trained on emoji and Debian's
  openclipart together, no Tux Paint picture);
- its dense twin on the same towers, data and batch for the same training-loop seconds.
A second block, on the test split only: the model `make demo` ships (PhotosDemoRecipe: the same recipe on the emoji
and Tux Paint's train split, no clipart) and its dense twin at the same loop seconds, beside the zero-shot rows'
test figures; the demo model is also scored on the emoji test split (the demo indexes both).
Figures: recall both ways (ties count against the model), image grounding@10 and its ceiling (a description has
2.8 content WordPieces on average, so a lexicon of 10 or more words cannot score above the ceiling), terms per image,
and how many image lexicons are empty. Writes benchmarks/results/photos.md and photos.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapes_common import evaluate, header, recall_table, terms, training_parser, write

from lexlip_es.grounding import is_content_token
from lexlip_es.model import create_tokenizer, get_config
from lexlip_es.settings import Settings
from trainer.data.datasets import load_pairs
from trainer.data.emoji import ensure_emoji
from trainer.data.mixture import write_mixture
from trainer.data.openclipart import ensure_openclipart
from trainer.data.tuxpaint import ensure_tuxpaint
from trainer.recipes import (
    DENSE_DIR,
    LEXLIP_DIR,
    EmojiRecipe,
    PhotosDemoRecipe,
    PhotosRecipe,
    ensure_photos_demo,
    loop_seconds,
    run_lexlip,
    train_dense_twin,
    train_recipe,
)

SPLITS = ("all", "test")


def photos_data(settings: Settings) -> tuple[Path, Path, Path]:
    """(Tux Paint JSON, the photos recipe's emoji + clipart mixture, the emoji recipe's own data)."""
    root = settings.cache_dir / "data"
    tuxpaint = ensure_tuxpaint(root / "tuxpaint", settings=settings)
    emoji_224 = ensure_emoji(root / "emoji-224", size=224, settings=settings)
    clipart = ensure_openclipart(root / "openclipart", settings=settings)
    parts = [("emoji", emoji_224), ("openclipart", clipart)]
    mixture = write_mixture(root / "photos", "photos", parts, max_per_caption=PhotosRecipe.max_per_caption)
    return tuxpaint, mixture, ensure_emoji(root / "emoji", settings=settings)


def grounding_ceiling(tuxpaint: Path, split: str) -> float:
    """The best image grounding@10 a lexicon of 10 or more content words can reach: min(10, the description's
    content WordPieces) / 10, averaged over the pictures."""
    tokenizer = create_tokenizer(get_config("photos"))
    pairs = load_pairs(tuxpaint, split)
    counts = [len({t for t in tokenizer.tokenize(p.captions[0]) if is_content_token(t)}) for p in pairs]
    return sum(min(10, n) for n in counts) / (10 * len(counts))


def scored(system: str, checkpoint: Path, tuxpaint: Path, train_s: float) -> list[dict[str, Any]]:
    rows = []
    for split in SPLITS:
        result, _ = evaluate(checkpoint, tuxpaint, "--split", split)
        rows.append({"system": f"{system} ({split})", "split": split, "train_s": train_s, **result})
    return rows


def prior_checkpoint(out: Path) -> Path:
    folder = out / "imagenet-prior"
    if not (folder / "config.json").exists():
        run_lexlip("checkpoint", "imagenet-prior", "--out", str(folder))
    return folder


def demo_block(out: Path, settings: Settings, tuxpaint: Path) -> tuple[list[dict[str, Any]], float]:
    """The demo model and its dense twin (same loop seconds) on Tux Paint's test split, the demo model also on the
    emoji's; returns the rows and the loop seconds."""
    mixture = ensure_photos_demo(settings.cache_dir / "data", settings)
    recipe = PhotosDemoRecipe()
    train_recipe(mixture, out / "demo", recipe, reuse=True)
    budget = loop_seconds(out / "demo" / LEXLIP_DIR)
    rows = []
    for system, kind in (("demo model (LexLIP)", LEXLIP_DIR), ("demo model's dense twin", DENSE_DIR)):
        if kind == DENSE_DIR:
            train_dense_twin(mixture, out / "demo", budget, recipe, reuse=True)
        result, _ = evaluate(out / "demo" / kind / "final", tuxpaint, "--split", "test")
        rows.append(
            {"system": f"{system} (test)", "split": "test", "train_s": loop_seconds(out / "demo" / kind), **result}
        )
    emoji = tuxpaint.parent.parent / "emoji-224" / "dataset_emoji.json"
    result, _ = evaluate(out / "demo" / LEXLIP_DIR / "final", emoji, "--split", "test")
    rows.append({"system": "demo model (LexLIP), emoji test split", "split": "test", "train_s": budget, **result})
    return rows, budget


def main() -> None:
    parser = training_parser(__doc__, PhotosRecipe.steps, "/tmp/lexlip-photos")
    parser.add_argument("--skip-emoji", action="store_true", help="leave out the emoji recipe's row")
    parser.add_argument("--skip-demo", action="store_true", help="leave out the demo model's block")
    args = parser.parse_args()
    settings = Settings.from_env()
    tuxpaint, mixture, emoji = photos_data(settings)
    rows = scored("ImageNet word prior alone", prior_checkpoint(args.out), tuxpaint, 0.0)
    if not args.skip_emoji:
        recipe = EmojiRecipe()
        train_recipe(emoji, args.out / "emoji", recipe, reuse=True)
        seconds = loop_seconds(args.out / "emoji" / LEXLIP_DIR)
        rows += scored("emoji recipe", args.out / "emoji" / LEXLIP_DIR / "final", tuxpaint, seconds)
    photos = PhotosRecipe(steps=args.steps)
    train_recipe(mixture, args.out / "photos", photos, reuse=True)
    budget = loop_seconds(args.out / "photos" / LEXLIP_DIR)
    rows += scored("photos recipe (LexLIP)", args.out / "photos" / LEXLIP_DIR / "final", tuxpaint, budget)
    train_dense_twin(mixture, args.out / "photos", budget, photos, reuse=True)
    twin_s = loop_seconds(args.out / "photos" / DENSE_DIR)
    rows += scored("photos recipe's dense twin", args.out / "photos" / DENSE_DIR / "final", tuxpaint, twin_s)
    ceilings = {split: grounding_ceiling(tuxpaint, split) for split in SPLITS}
    demo_rows, demo_s = ([], 0.0) if args.skip_demo else demo_block(args.out, settings, tuxpaint)
    zero_shot = [
        {**r, "system": r["system"].replace(" (test)", ", zero-shot (test)")} for r in rows if r["split"] == "test"
    ]
    lines = [
        "# photos: Tux Paint's stamps (outside animals/ and symbols/), zero-shot",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- {rows[0]['images']} pictures (all) and {rows[1]['images']} (test split), one description each, searched "
        "against the pictures of their split; ties count against the model",
        f"- photos recipe: trainer/recipes.py PhotosRecipe, {args.steps} steps of {photos.batch_size} on emoji + "
        f"openclipart ({mixture.name}); the dense twin for the same loop seconds ({budget:.0f} s)",
        f"- image grounding@10 ceiling for lexicons of 10+ words: {ceilings['all']:.3f} (all), "
        f"{ceilings['test']:.3f} (test)",
        "",
        *recall_table(rows),
        "",
        "| system | empty image lexicons | terms per image |",
        "|---|---|---|",
        *(f"| {r['system']} | {r.get('empty_images', '-')} | {terms(r.get('mean_nnz_image'))} |" for r in rows),
    ]
    if demo_rows:
        lines += [
            "",
            "## The demo model on the Tux Paint test split",
            "",
            f"- trainer/recipes.py PhotosDemoRecipe: {PhotosDemoRecipe.steps} steps of {PhotosDemoRecipe.batch_size} "
            f"on the emoji and Tux Paint's train split (Tux Paint val chose the steps); its dense twin for the same "
            f"loop seconds ({demo_s:.0f} s); the zero-shot rows above again, test split only",
            "",
            *recall_table(zero_shot + demo_rows),
        ]
    payload = {"header": header(), "ceilings": ceilings, "rows": rows, "demo_rows": demo_rows}
    write("photos", payload, lines)


if __name__ == "__main__":
    main()
