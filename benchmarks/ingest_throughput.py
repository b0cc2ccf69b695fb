"""Pictures per second through the whole Celery path with the checkpoint `make demo` ships, torch beside ONNX Runtime.

    .venv/bin/python benchmarks/ingest_throughput.py [--images 1000] [--workers 2] [--runtimes torch,onnx]
        [--checkpoint DIR]

Data: the demo's pictures (`lexlip demo`: the emoji at 224 px and Tux Paint's stamps), a seeded sample of `--images`
of them, each with all its captions (4.4 on average), as a JSONL manifest. Model: the demo's checkpoint
(PhotosDemoRecipe, trained into the cache once when missing), or `--checkpoint`. For each runtime
(`LEXLIP_WORKER_RUNTIME`), starts Redis, an OpenSearch node and `--workers` worker processes (one CPU thread each)
and runs the producer into a fresh index. The ONNX files are exported and checked before the clock starts (their
export seconds are reported apart).

Reports, per runtime: end-to-end pictures/s (producer start to the last batch indexed and refreshed), the workers'
summed seconds in each stage (decode, images, captions, bulk; `broker` is the rest of workers x wall: waiting on
Redis, task overhead, idle); a one-thread profile of one batch of 32 pictures on the torch model (decode, image
tower, image heads with the ImageNet prior, caption tower, caption vocabulary head, quantize); and how many stored
weights differ between the runtimes' documents. Writes benchmarks/results/ingest.md and ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from shapes_common import RESULTS, header, write

from ingest.app import create_app
from ingest.local import start_worker
from ingest.pipeline import STAGES
from ingest.producer import run_ingest
from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.redis import start_redis
from lexlip_es.mapping import LEXICON_FIELDS, IndexOptions
from lexlip_es.settings import Settings

PROFILE_BATCH = 32
SCREENED = "caption vocabulary head, screened (instead of the row above)"
RUNTIMES = {
    "torch-plain": {"LEXLIP_WORKER_RUNTIME": "torch", "LEXLIP_TEXT_SCREEN": "false"},
    "torch-screened": {"LEXLIP_WORKER_RUNTIME": "torch", "LEXLIP_TEXT_SCREEN": "true"},
    "onnx": {"LEXLIP_WORKER_RUNTIME": "onnx", "LEXLIP_TEXT_SCREEN": "true"},
}
"""What each benchmarked runtime sets: `torch-plain` the workers' path before 2026-12-08 (torch, the plain text
head), `torch-screened` torch with the screened head (model/screen.py), `onnx` ONNX Runtime for the pictures and
the screened head for the captions (the workers' default on a CPU with bf16 matrix units)."""


def demo_rows(settings: Settings, images: int) -> list[dict[str, Any]]:
    """A seeded sample of the demo's pictures, every split, as manifest rows with all their captions."""
    from lexlip_app.demo import manifest_rows
    from trainer.recipes import ensure_photos_demo

    data = ensure_photos_demo(settings.cache_dir / "data", settings)
    rows = manifest_rows(data, "photos", ("train", "val", "test"))
    return random.Random(0).sample(rows, min(images, len(rows)))


def demo_checkpoint(settings: Settings) -> Path:
    """The demo's checkpoint from the cache, trained there once when missing."""
    from trainer.recipes import PhotosDemoRecipe, ensure_photos_demo, train_recipe

    recipe = PhotosDemoRecipe()
    out = settings.cache_dir / "models" / recipe.key()
    if not (out / "sparse" / "final" / "model.safetensors").exists():
        train_recipe(ensure_photos_demo(settings.cache_dir / "data", settings), out, recipe)
    return out / "sparse" / "final"


def profile(checkpoint: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per picture in each step of encoding one batch on one thread with torch (best of 3)."""
    import torch

    from lexlip_es.encoders.images import fit, load_image
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.model.lexlip import vocabulary_logits
    from lexlip_es.model.screen import Screen
    from lexlip_es.sparse import SparseVector
    from lexlip_es.tokenizer import trim_padding

    torch.set_num_threads(1)
    encoder = LexLIPEncoder.from_pretrained(checkpoint, device="cpu")
    model, batch = encoder.model, rows[:PROFILE_BATCH]
    texts = [c for r in batch for c in r["captions"]]
    ids, mask = (torch.from_numpy(a) for a in trim_padding(*encoder.tokenizer(texts)))

    def best(step: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return min(times) / len(batch)

    pixels = encoder.image_tensor([fit(load_image(r["image"]), encoder.image_size) for r in batch])
    with torch.inference_mode():
        tokens = model.image_tokens(pixels)
        hidden = model.text_hidden(ids, mask)
        head, (packed, packing) = model.text.cls.predictions, model.text_hidden_packed(ids, mask)
        screen, token_rows = Screen(head), torch.div(packing.index, packing.length, rounding_mode="floor")
        raw = model.encode_image(pixels).numpy()
        steps = {
            "decode": lambda: [fit(load_image(r["image"]), encoder.image_size) for r in batch],
            "image tower": lambda: model.image_tokens(pixels),
            "image heads and prior": lambda: model.encode_image(pixels),  # minus the tower, below
            "caption tower": lambda: model.text_hidden(ids, mask),
            "caption vocabulary head": lambda: vocabulary_logits(model.text.cls.predictions, hidden),
            SCREENED: lambda: screen.pool(head.transform(packed), token_rows, packing.batch),
            "quantize": lambda: [SparseVector.from_output(row, 100.0, 200) for row in raw],
        }
        seconds = {name: best(step) for name, step in steps.items()}
    del tokens
    seconds["image heads and prior"] = max(0.0, seconds["image heads and prior"] - seconds["image tower"])
    seconds["captions per picture"] = len(texts) / len(batch)
    return seconds


def index_name(runtime: str) -> str:
    return "bench-" + "".join(c if c.isalnum() else "-" for c in runtime)


def run_runtime(
    runtime: str, checkpoint: Path, manifest: Path, urls: dict[str, str], workers_on: tuple[int, str], tmp: Path
) -> dict[str, Any]:
    """One runtime's ingest into a fresh index by `workers_on` = (how many worker processes, their device)."""
    workers, device = workers_on
    env = {**os.environ, **urls, **RUNTIMES[runtime]}
    settings = Settings.from_env(env)
    export_s = 0.0
    if RUNTIMES[runtime]["LEXLIP_WORKER_RUNTIME"] == "onnx":
        from lexlip_es.encoders.onnx_documents import ensure_onnx

        started = time.perf_counter()
        ensure_onnx(checkpoint, settings.cache_dir)
        export_s = time.perf_counter() - started
    from opensearchpy import OpenSearch

    client = OpenSearch(urls["LEXLIP_OPENSEARCH_URL"], timeout=60)
    procs = [
        start_worker(f"{index_name(runtime)}{n}", env, tmp / f"{index_name(runtime)}{n}.log", device=device)
        for n in range(workers)
    ]
    try:
        tally = run_ingest(
            create_app(settings),
            client,
            manifest,
            index_name(runtime),
            checkpoint,
            batch_size=32,
            options=IndexOptions(replicas=0),
            resume=False,
            image_root=settings.cache_dir / "data",
        )
    finally:
        for proc in procs:
            proc.stop()
    if not tally.ok:
        raise RuntimeError(f"{len(tally.failed)} items failed: {list(tally.failed.items())[:3]}")
    stages = {k: tally.stage_seconds.get(k, 0.0) for k in STAGES}
    stages["broker"] = max(0.0, workers * tally.seconds - sum(stages.values()))
    total = sum(stages.values())
    return {
        "runtime": runtime,
        "images": tally.indexed,
        "seconds": tally.seconds,
        "images_per_s": tally.indexed / tally.seconds,
        "export_s": export_s,
        "stages_s": stages,
        "shares": {k: v / total for k, v in stages.items()},
    }


def stored_weights(client: Any, index: str) -> dict[str, dict[str, dict[str, int]]]:
    """id -> {lexicon field: features} of every document in `index`."""
    from opensearchpy import helpers

    from lexlip_es.features import parse_impact_text

    docs = {}
    for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}):
        fields = {name: hit["_source"].get(name) or {} for name in LEXICON_FIELDS}
        docs[hit["_id"]] = {k: parse_impact_text(v) if isinstance(v, str) else v for k, v in fields.items()}
    return docs


def differing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How many stored weights differ between two runs' documents (and by how much at most)."""
    weights = changed = worst = 0
    for doc_id, sides in a.items():
        for side, features in sides.items():
            other = b.get(doc_id, {}).get(side, {})
            for token in set(features) | set(other):
                weights += 1
                gap = abs(int(features.get(token, 0)) - int(other.get(token, 0)))
                changed += gap > 0
                worst = max(worst, gap)
    return {"weights": weights, "differing": changed, "max_steps": worst, "documents": len(a)}


def table(rows: list[dict[str, Any]]) -> list[str]:
    stages = [*STAGES, "broker"]
    lines = [
        "| runtime | pictures | wall (s) | pictures/s end to end | " + " | ".join(stages) + " |",
        "|---|---|---|---|" + "---|" * len(stages),
    ]
    for r in rows:
        cells = " | ".join(f"{r['stages_s'][k]:.1f} s ({100 * r['shares'][k]:.0f}%)" for k in stages)
        lines.append(f"| {r['runtime']} | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | {cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated, of: {', '.join(RUNTIMES)}")
    parser.add_argument("--checkpoint", type=Path, help="default: the demo's checkpoint (trained once if missing)")
    parser.add_argument("--device", default="cpu", help="where the workers encode: cpu, cuda, cuda:N")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder ingest.md and .json go to")
    args = parser.parse_args()
    settings = Settings.from_env()
    checkpoint = (args.checkpoint or demo_checkpoint(settings)).resolve()
    rows = demo_rows(settings, args.images)
    steps = profile(checkpoint, rows)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lexlip-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        manifest = tmp / "manifest.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        redis, opensearch = start_redis(settings), start_opensearch(settings)
        urls = {"LEXLIP_REDIS_URL": redis.url, "LEXLIP_OPENSEARCH_URL": opensearch.url}
        try:
            from opensearchpy import OpenSearch

            client = OpenSearch(opensearch.url, timeout=60)
            for runtime in args.runtimes.split(","):
                results.append(run_runtime(runtime, checkpoint, manifest, urls, (args.workers, args.device), tmp))
            stored = {r["runtime"]: stored_weights(client, index_name(r["runtime"])) for r in results}
        finally:
            opensearch.stop()
            redis.stop()
    base, *others = stored
    parity = {name: differing(stored[base], stored[name]) for name in others}
    lines = report(args, checkpoint, steps, results, parity)
    data = {
        "header": header(),
        "settings": {**vars(args), "checkpoint": str(checkpoint), "results": str(args.results)},
        "profile": steps,
    }
    write("ingest", {**data, "rows": results, "parity": parity}, lines, args.results)


def report(
    args: argparse.Namespace,
    checkpoint: Path,
    steps: dict[str, float],
    results: list[dict[str, Any]],
    parity: dict[str, dict[str, Any]],
) -> list[str]:
    per_picture = {k: v for k, v in steps.items() if k != "captions per picture"}
    total = sum(v for k, v in per_picture.items() if k != SCREENED)
    lines = [
        f"# Celery ingestion: {args.images} of the demo's pictures with all their captions, "
        f"{args.workers} worker processes (1 CPU thread each) on {args.device}",
        "",
        *(f"- {k}: {v}" for k, v in header().items()),
        f"- checkpoint: {checkpoint_model_id(checkpoint)} ({checkpoint}), "
        f"{steps['captions per picture']:.1f} captions a picture; batch 32; OpenSearch 1 node, 512 MB heap; "
        "Redis broker; workers, OpenSearch, Redis and the producer share the 2 cores",
        "",
        *table(results),
        "",
        "Stage seconds are summed over the workers' batches; `broker` is the rest of workers x wall (Redis, task "
        "overhead, waiting). ONNX export and check before the run: "
        + ", ".join(f"{r['export_s']:.1f} s" for r in results if r["runtime"] == "onnx"),
        "",
    ]
    base = results[0]
    for r in results[1:]:
        same = parity[r["runtime"]]
        lines.append(
            f"- {r['runtime']}: {r['images_per_s'] / base['images_per_s']:.2f}x `{base['runtime']}` end to end; "
            f"stored weights against it: {same['differing']} of {same['weights']} differ (by at most "
            f"{same['max_steps']} quantization step) over {same['documents']} documents"
        )
    lines += [
        "",
        f"One batch of {PROFILE_BATCH} pictures on one thread, torch, milliseconds per picture (shares of the plain "
        "path):",
        "",
        "| step | ms per picture | share |",
        "|---|---|---|",
        *(f"| {k} | {1000 * v:.1f} | {100 * v / total:.0f}% |" for k, v in per_picture.items()),
    ]
    return lines


if __name__ == "__main__":
    main()
