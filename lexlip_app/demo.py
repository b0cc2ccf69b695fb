"""`lexlip demo` (`make demo`): image search end to end on embedded defaults.

1. data: photographs beside emoji (`--data photos`, the default: Tux Paint's stamps outside animals/ and symbols/ from
   Debian's `tuxpaint-stamps-default`, and the emoji set at 224 px, built once into the cache), the emoji set alone
   (`--data emoji`: Fluent Emoji renders with OpenMoji's words) or the synthetic shapes set (`--data shapes`);
2. model: LEXLIP_CHECKPOINT, else that data set's recipe's checkpoint in the cache (trained once, with a progress
   bar: photos and emoji about 6 minutes on 2 cores from pretrained towers, shapes about 3 from random ones);
3. engines: `--engine opensearch` (default; `rank_features`) or `--engine elasticsearch` (`sparse_vector`):
   LEXLIP_OPENSEARCH_URL / LEXLIP_ELASTICSEARCH_URL / LEXLIP_REDIS_URL when set, else a local node and Redis started
   here;
4. ingest: every picture of the data set (photos 3,922, emoji 3,375; the page searches them all) or the 1,000
   held-out shapes through real Celery worker processes, with a progress bar;
5. recall: every held-out caption searched through the engine against the held-out images, each part of a mixture
   on its own (Tux Paint's test descriptions against its test pictures); R@1/5/10 both ways;
6. page: the search page on http://127.0.0.1:8765 (LEXLIP_DEMO_HOST / LEXLIP_DEMO_PORT) until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings

if TYPE_CHECKING:
    from ingest.producer import Tally
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.search import LexSearch
    from trainer.recipes import Recipe

INDEX = "lexlip-demo"
KS = (1, 5, 10)
RECALL_CLIENTS = 4
"""Searches in flight while the demo measures recall."""
ENGINES = ("opensearch", "elasticsearch")


@dataclass(frozen=True)
class DemoData:
    """A data set the demo runs on: where it is built, the recipe its model comes from, the page's examples."""

    name: str
    examples: tuple[str, ...]
    train_minutes: int
    """What the message before a first training says it takes on 2 CPU cores."""
    splits: tuple[str, ...] = ("test",)
    """The splits the page searches. Recall is always measured on the test split (a filter on `split` when the
    index holds more): emoji indexes every emoji, so "rocket" finds the rocket a user asks for."""

    def ensure(self, settings: Settings) -> Path:
        """The data set's Karpathy JSON in the cache, built once."""
        root = settings.cache_dir / "data"
        if self.name == "photos":
            from trainer.recipes import ensure_photos_demo

            return ensure_photos_demo(root, settings)
        if self.name == "emoji":
            from trainer.data.emoji import ensure_emoji

            return ensure_emoji(root / self.name, settings=settings)
        from trainer.data.shapes import ensure_standard_shapes

        return ensure_standard_shapes(root / self.name)

    def recipe(self) -> Recipe:
        from trainer.recipes import EmojiRecipe, PhotosDemoRecipe, ShapesRecipe

        return {"photos": PhotosDemoRecipe, "emoji": EmojiRecipe}.get(self.name, ShapesRecipe)()


DATASETS = {
    "photos": DemoData(
        "photos",
        ("tiger", "apple", "guitar", "bicycle", "a red car", "red heart", "rocket"),
        6,
        ("train", "val", "test"),
    ),
    "emoji": DemoData(
        "emoji", ("cat", "red heart", "rocket", "a smiling face with sunglasses", "pizza"), 6, ("train", "val", "test")
    ),
    "shapes": DemoData(
        "shapes",
        (
            "a small blue star at the bottom left",
            "a large red circle in the middle",
            "a green square at the top right",
            "there is a yellow triangle and a black cross",
        ),
        3,
    ),
}


@dataclass(frozen=True)
class DemoOptions:
    data: str = "photos"
    """A key of DATASETS: photographs beside emoji by default, emoji alone, or the synthetic shapes."""
    workers: int = 2
    serve_seconds: float | None = None
    """None serves until interrupted; 0 skips the page (a run that only ingests and measures)."""
    batch_size: int = 32
    ingest_timeout_s: float = 1800.0
    """The ingest gives up (with an error) after this long instead of waiting forever for dead workers."""
    engine: str = "opensearch"
    """The search engine: `opensearch` (rank_features) or `elasticsearch` (sparse_vector)."""

    def __post_init__(self) -> None:
        if self.data not in DATASETS:
            raise LexlipError(f"--data must be one of {sorted(DATASETS)}, got {self.data!r}")
        if self.engine not in ENGINES:
            raise LexlipError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers < 1:
            raise LexlipError(f"the demo needs at least one Celery worker, got --workers {self.workers}")
        if self.serve_seconds is not None and self.serve_seconds < 0:
            raise LexlipError(f"--serve-seconds must be 0 or more, got {self.serve_seconds}")
        if self.batch_size < 1:
            raise LexlipError(f"batch size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Recall:
    text_to_image: dict[str, float]
    image_to_text: dict[str, float]
    queries: int
    seconds: float


def manifest_rows(data_json: Path, name: str = "shapes", splits: Sequence[str] = ("test",)) -> list[dict[str, Any]]:
    """These splits as ingest manifest rows: id (`NAME-0000042`), image path, captions, and the split as metadata;
    a mixture's rows (trainer/data/mixture.py) take their part's name (`tuxpaint-0003401`) and keep it as `dataset`."""
    from trainer.data.datasets import load_karpathy

    rows = []
    for split in splits:
        for pair in load_karpathy(data_json, split, exact_split=True):
            part = pair.meta.get("dataset")
            rows.append(
                {
                    "id": f"{part or name}-{int(pair.image_id):07d}",
                    "image": os.path.normpath(str(pair.image)),  # a mixture's `../emoji-224/images/...` made plain
                    "captions": list(pair.captions),
                    "metadata": {"split": split, **({"dataset": part} if part else {})},
                }
            )
    return rows


def held_out(data_json: Path, name: str = "shapes") -> list[dict[str, Any]]:
    """The test split as ingest manifest rows."""
    return manifest_rows(data_json, name, ("test",))


TEST_ONLY = ({"term": {"split.keyword": "test"}},)
"""The filter that keeps recall on the test split when the index holds other splits too (dynamic mapping gives a
string metadata field a `.keyword` sub-field)."""


@dataclass(frozen=True)
class RecallPart:
    """Held-out rows recall is measured on, and the filters that keep the search to their documents."""

    label: str
    """'' for a plain data set, else the mixture part's name and a space ("tuxpaint ")."""
    rows: list[dict[str, Any]]
    filters: tuple[Any, ...]


def recall_parts(rows: Sequence[dict[str, Any]]) -> list[RecallPart]:
    """The held-out rows part by part: one part for a plain data set, one per `dataset` for a mixture (Tux Paint's
    descriptions against Tux Paint's test pictures, the emoji's against the emoji's), each kept to its own documents
    by filters when the index holds more."""
    test_rows = [r for r in rows if r["metadata"]["split"] == "test"]
    names = sorted({r["metadata"].get("dataset", "") for r in test_rows})
    if names == [""]:
        return [RecallPart("", test_rows, TEST_ONLY if len(test_rows) < len(rows) else ())]
    return [
        RecallPart(
            f"{name} ",
            [r for r in test_rows if r["metadata"].get("dataset") == name],
            (*TEST_ONLY, {"term": {"dataset.keyword": name}}),
        )
        for name in names
    ]


def demo_checkpoint(settings: Settings, data: DemoData, data_json: Path, echo: Callable[[str], None]) -> Path:
    """LEXLIP_CHECKPOINT when set; else the data set's recipe's LexLIP checkpoint, trained into the cache once."""
    if settings.checkpoint:
        if not (Path(settings.checkpoint) / "config.json").exists():
            raise LexlipError(f"LEXLIP_CHECKPOINT={settings.checkpoint} is not a checkpoint folder (no config.json)")
        return Path(settings.checkpoint)
    from trainer.recipes import calibrate_recipe, train_recipe

    recipe = data.recipe()
    out = settings.cache_dir / "models" / recipe.key()
    final = out / "sparse" / "final"
    if (final / "model.safetensors").exists():
        calibrate_recipe(data_json, out, recipe)  # a checkpoint cached before query weights existed gets them once
        return final
    echo(
        f"training the grounded {data.name} recipe once into {out} (about {data.train_minutes} minutes on 2 CPU cores)"
    )
    seconds = train_recipe(data_json, out, recipe)
    echo(f"trained in {seconds:.0f} s")
    return final


def start_engines_early(
    stack: contextlib.ExitStack, settings: Settings, echo: Callable[[str], None], engine: str
) -> Future[Settings]:
    """`engines` entered on a thread, so the engines start while the data and the model are made; the future gives
    their settings. `stack` stops them, after waiting for a start still under way."""
    pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="engines"))
    future = pool.submit(stack.enter_context, engines(settings, echo, engine))
    stack.callback(lambda: future.exception())  # runs first: a start under way finishes before the engines stop
    return future


def prepare_workers(checkpoint: Path, settings: Settings, echo: Callable[[str], None]) -> None:
    """Export and check the model for ONNX Runtime once, before the workers start (they would each do it)."""
    from lexlip_es.encoders.documents_runtime import wants_onnx
    from lexlip_es.encoders.onnx_documents import ensure_onnx
    from lexlip_es.encoders.torch_common import choose_device

    if wants_onnx(settings, str(choose_device(settings.device))):
        started = time.monotonic()
        folder = ensure_onnx(checkpoint, settings.cache_dir)
        echo(f"workers encode with ONNX Runtime ({folder}, ready in {time.monotonic() - started:.0f} s)")


@contextlib.contextmanager
def engines(settings: Settings, echo: Callable[[str], None], engine: str = "opensearch") -> Iterator[Settings]:
    """The settings with `engine`'s URL (chosen by LEXLIP_ENGINE for every client and worker) and a Redis URL: the
    given ones, or local services started here."""
    started: list[Any] = []
    try:
        url = settings.elasticsearch_url if engine == "elasticsearch" else settings.opensearch_url
        if not url:
            from lexlip_es.local.elasticsearch import start_elasticsearch
            from lexlip_es.local.opensearch import start_opensearch

            echo(f"starting a local {NAMES[engine]} node ...")
            node = start_elasticsearch(settings) if engine == "elasticsearch" else start_opensearch(settings)
            started.append(node)
            url = node.url
        settings = settings.with_(engine=engine, **{f"{engine}_url": url})
        if not settings.redis_url:
            from lexlip_es.local.redis import start_redis

            redis = start_redis(settings)
            started.append(redis)
            settings = settings.with_(redis_url=redis.url)
        echo(f"{NAMES[engine]} {url}, Redis {settings.redis_url}")
        yield settings
    finally:
        for service in reversed(started):
            service.stop()


NAMES = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch"}


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment of the demo's workers: this run's engine and its URL, Redis, the cache."""
    env = {**os.environ, "LEXLIP_ENGINE": settings.engine, "LEXLIP_REDIS_URL": str(settings.redis_url)}
    env["LEXLIP_CACHE_DIR"] = str(settings.cache_dir)
    for name, url in (("OPENSEARCH", settings.opensearch_url), ("ELASTICSEARCH", settings.elasticsearch_url)):
        if url:
            env[f"LEXLIP_{name}_URL"] = url
    return env


def ingest(
    settings: Settings,
    rows: Sequence[dict[str, Any]],
    checkpoint: Path,
    options: DemoOptions,
    workdir: Path,
    echo: Callable[[str], None] = print,
) -> Tally:
    """The rows through `options.workers` Celery worker processes into INDEX (created fresh), with a progress bar."""
    from tqdm import tqdm

    from ingest.app import create_app
    from ingest.local import start_worker
    from ingest.producer import run_ingest
    from lexlip_es.connect import DEFAULT_FIELD_TYPE, engine_client, engine_target
    from lexlip_es.jsonl import write_jsonl
    from lexlip_es.mapping import IndexOptions

    manifest = workdir / "held-out.jsonl"
    write_jsonl(manifest, rows)
    flavor, url = engine_target(settings)
    client = engine_client(settings)
    if client.indices.exists(index=INDEX):
        echo(f"replacing the index {INDEX!r} left by an earlier demo on {url}")
        client.indices.delete(index=INDEX)
    env = engine_env(settings)
    prepare_workers(checkpoint, Settings.from_env(env), echo)
    workers = [
        start_worker(f"demo{i}", env, workdir / f"worker{i}.log", threads=max(1, (os.cpu_count() or 2) // 2))
        for i in range(options.workers)
    ]
    try:
        bar = tqdm(total=len(rows), unit="img", desc="ingest", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)

        def progress(tally: Any) -> None:
            if tally.done > bar.n:
                bar.set_postfix(indexed=tally.indexed, failed=len(tally.failed), refresh=False)
                bar.update(tally.done - bar.n)

        tally = run_ingest(
            create_app(settings),
            client,
            manifest,
            INDEX,
            checkpoint,
            batch_size=options.batch_size,
            options=IndexOptions(replicas=0),
            field_type=DEFAULT_FIELD_TYPE[flavor],
            timeout_s=options.ingest_timeout_s,
            on_progress=progress,
            image_root=os.path.commonpath([os.path.dirname(str(r["image"])) for r in rows]),
        )
        bar.close()
        return tally
    finally:
        for worker in workers:
            worker.stop()


def recall(
    search: LexSearch, rows: Sequence[dict[str, Any]], encoder: LexLIPEncoder, filters: Sequence[Any] = ()
) -> Recall:
    """R@1/5/10 through the engine: every held-out caption against the image lexicons (relevant: its image), and
    every image's stored lexicon against the caption lexicons (relevant: the image's own captions); `filters`
    keep both to the held-out documents when the index holds others."""
    from lexlip_es.clients import mget_request
    from lexlip_es.features import stored_lexicon
    from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD
    from lexlip_es.metrics import first_relevant, recall_at

    started = time.monotonic()
    layout = search.layout()
    captions = [(r["id"], c) for r in rows for c in r["captions"]]
    vectors = encoder.encode_queries([c for _, c in captions], scale=layout.scale, top_k=layout.top_k_text)
    depth = max(KS)

    def caption_rank(pair: tuple[tuple[str, str], Any]) -> int:
        (image_id, _), vector = pair
        features = vector.to_features(encoder.vocab, escape=False)
        # a caption whose lexicon is empty (no word the model knows, e.g. "#") finds nothing: a miss, not an error
        found = [h.id for h in search.search_vector(features, depth, filters=filters)] if features else []
        return first_relevant(found, {image_id})

    def image_rank(doc: dict[str, Any]) -> int:
        lexicon = stored_lexicon((doc.get("_source") or {}).get(IMAGE_FIELD))
        hits = search.search_vector(lexicon, depth, field=CAPTION_FIELD, filters=filters) if lexicon else []
        return first_relevant([h.id for h in hits], {doc["_id"]})

    sources = search.client.mget(**mget_request(search.client, search.index, [r["id"] for r in rows]))["docs"]
    # a few searches in flight keep the engine's cores busy while each answer travels; order is kept by map
    with ThreadPoolExecutor(RECALL_CLIENTS) as pool:
        t2i = list(pool.map(caption_rank, zip(captions, vectors, strict=True)))
        i2t = list(pool.map(image_rank, sources))
    return Recall(recall_at(t2i, KS), recall_at(i2t, KS), len(captions), time.monotonic() - started)


def check_port(host: str, port: int) -> None:
    """Fail before the long steps when the page's port is taken."""
    import socket

    if not 0 <= port <= 65535:
        raise LexlipError(f"LEXLIP_DEMO_PORT must be between 0 and 65535, got {port}")
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LexlipError(
                f"cannot serve the page on {host}:{port} ({exc.strerror}): set LEXLIP_DEMO_PORT (0 picks a free port)"
            ) from exc


def run_demo(settings: Settings, options: DemoOptions | None = None, echo: Callable[[str], None] = print) -> int:
    from lexlip_app.web.app import create_app, page_hosts, serve
    from lexlip_es.connect import engine_client, engine_target
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.fast import fast_mode_for
    from lexlip_es.search import LexSearch

    options = options or DemoOptions()
    data = DATASETS[options.data]
    if options.serve_seconds != 0:
        check_port(settings.demo_host, settings.demo_port)
    clock = time.monotonic()
    data_json = data.ensure(settings)
    rows = manifest_rows(data_json, data.name, data.splits)
    parts = recall_parts(rows)
    echo(
        f"data: {len(rows)} {data.name} images ({sum(len(p.rows) for p in parts)} held out) in {data_json.parent} "
        f"({time.monotonic() - clock:.0f} s)"
    )
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lexlip-demo-") as work:
        live = start_engines_early(stack, settings, echo, options.engine)  # they start while the model trains
        checkpoint = demo_checkpoint(settings, data, data_json, echo)
        echo(f"model: {checkpoint}")
        tally = ingest(live.result(), rows, checkpoint, options, Path(work), echo)
        echo(tally.summary())
        if not tally.ok:
            for _, reason in sorted(tally.failed.items())[:5]:
                echo(f"  failed {reason}")
        client = engine_client(live.result(), timeout=30)
        encoder = LexLIPEncoder.from_pretrained(checkpoint)
        exact = LexSearch(client, INDEX, text_encoder=encoder, max_query_chars=settings.max_query_chars)

        def print_recall() -> None:
            for part in parts:
                measured = recall(exact, part.rows, encoder, part.filters)
                echo(
                    f"recall through {NAMES[options.engine]} on {len(part.rows)} held-out {part.label}images / "
                    f"{measured.queries} captions ({measured.seconds:.0f} s; ties broken by id):"
                )
                for name, figures in (
                    ("text -> image", measured.text_to_image),
                    ("image -> text", measured.image_to_text),
                ):
                    echo(f"  {name}: " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))

        if options.serve_seconds == 0:
            print_recall()
            return 0 if tally.ok else 1
        from lexlip_es.local.ports import free_port

        port = settings.demo_port or free_port()
        # the page searches in fast mode where the checkpoint has shares: the rare-term head (lexlip_es/fast.py)
        search = LexSearch(
            client, INDEX, text_encoder=encoder, max_query_chars=settings.max_query_chars, fast=fast_mode_for(encoder)
        )
        app = create_app(
            search,
            os.path.commonpath([data_json.parent, *(os.path.dirname(r["image"]) for r in rows)]),
            examples=data.examples,
            image_encoder=encoder,
            max_image_bytes=settings.max_image_bytes,
            allowed_hosts=page_hosts(settings),
        )
        server = serve(app, settings.demo_host, port)
        if options.serve_seconds is not None:
            timer = threading.Timer(options.serve_seconds, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            timer.start()
        echo(f"\nopen http://{settings.demo_host}:{port}/  (Ctrl-C stops the page, the workers and the engines)")
        _, url = engine_target(live.result())
        echo(
            f"the same hits in a terminal: LEXLIP_{options.engine.upper()}_URL={url} "
            f'lexlip search "{data.examples[0]}" --index {INDEX} --checkpoint {checkpoint}'
        )
        threading.Thread(target=print_recall, name="recall", daemon=True).start()  # the page is up meanwhile
        server.run()
    return 0 if tally.ok else 1
