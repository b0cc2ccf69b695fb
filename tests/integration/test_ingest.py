"""Celery ingestion with real Redis, a real (restartable) OpenSearch node and two real `lexlip worker` processes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from ingest.app import create_app
from ingest.deadletter import DeadLetters
from ingest.local import start_worker
from ingest.producer import Tally, run_ingest
from lexlip_es.clients import flavor_of
from lexlip_es.connect import DEFAULT_FIELD_TYPE, engine_client
from lexlip_es.encoders.documents_runtime import document_encoder
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.process import LocalEngine
from lexlip_es.mapping import IndexOptions
from lexlip_es.settings import Settings
from tests.integration.conftest import INGEST_IMAGES as N_IMAGES

ROOT = Path(__file__).resolve().parents[2]
MAX_IMAGE_BYTES = 2_000_000


class Cluster:
    """An OpenSearch node that can be killed and started again on the same ports and data."""

    def __init__(self, settings: Settings, base: Path) -> None:
        self.settings, self.base = settings, base
        self.engine = start_opensearch(settings, base_dir=base)
        self.ports = (self.engine.info["http_ports"], self.engine.info["transport_ports"])
        self.url = self.engine.url
        self.env = {"LEXLIP_OPENSEARCH_URL": self.url}

    def start_again(self) -> LocalEngine:
        return start_opensearch(self.settings, base_dir=self.base, ports=self.ports)

    def restart(self) -> None:
        os.killpg(self.engine.pid, signal.SIGKILL)
        self.engine.stop()
        self.engine = self.start_again()

    def client(self, **options: Any) -> Any:
        return OpenSearch(self.url, **options)

    def sources(self, index: str) -> dict[str, dict[str, Any]]:
        hits = helpers.scan(self.client(timeout=60), index=index, query={"query": {"match_all": {}}})
        return {h["_id"]: h["_source"] for h in hits}

    def stop(self) -> None:
        self.engine.stop()


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    node = Cluster(settings, tmp_path_factory.mktemp("ingest-opensearch"))
    yield node
    node.stop()


class Workers:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.procs: dict[str, LocalEngine] = {}

    def start(self, name: str) -> LocalEngine:
        self.procs[name] = start_worker(name, self.env, self.workdir / f"{name}.log")
        return self.procs[name]

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].stop()

    def terminate(self, name: str, timeout_s: float = 120.0) -> None:
        engine = self.procs[name]
        os.kill(engine.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while engine.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not engine.alive(), f"worker {name} did not stop within {timeout_s:.0f} s of SIGTERM"
        engine.stop()

    def stop(self) -> None:
        for engine in self.procs.values():
            engine.stop()


@pytest.fixture(scope="module")
def workers(
    redis_url: str, cluster: Cluster, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    pool = start_workers(redis_url, cluster, tmp_path_factory.mktemp("ingest-workers"))
    yield pool
    pool.stop()


def start_workers(redis_url: str, cluster: Any, workdir: Path) -> Workers:
    """Two `lexlip worker` processes (w1, w2) writing to `cluster`'s engine (its `env`), a 20 s visibility timeout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEXLIP_OPENSEARCH_URL", "LEXLIP_ELASTICSEARCH_URL", "LEXLIP_ENGINE")
    }
    env |= {
        **cluster.env,
        "LEXLIP_REDIS_URL": redis_url,
        "LEXLIP_VISIBILITY_TIMEOUT_S": "20",
        "LEXLIP_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
    }
    pool = Workers(env, workdir)
    pool.start("w1")
    pool.start("w2")
    return pool


def _manifest(path: Path, pairs: list[Any]) -> Path:
    with open(path, "w") as f:
        for p in pairs:
            f.write(json.dumps({"id": p.image_id, "image": p.image, "captions": list(p.captions[:1])}) + "\n")
    return path


def _ingest(workers: Workers, cluster: Any, manifest: Path, index: str, checkpoint: Path, root: Path) -> Tally:
    settings = Settings.from_env(workers.env)
    client = engine_client(settings, max_retries=0)
    return run_ingest(
        create_app(settings),
        client,
        manifest,
        index,
        checkpoint,
        options=IndexOptions(replicas=0),
        field_type=DEFAULT_FIELD_TYPE[flavor_of(client)],
        timeout_s=1200,
        image_root=root,
    )


def _stored(cluster: Any, index: str) -> dict[str, dict[str, Any]]:
    return dict(cluster.sources(index))


def test_5000_images_by_two_workers_equal_the_in_process_vectors(
    workers: Workers, cluster: Cluster, shapes: list[Any], shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """The workers' documents equal what the same encoder writes in process (ONNX Runtime pictures on a CPU), and the
    torch encoder's up to float32 noise at a floor: at most one step, on at most 0.1% of the weights."""
    import torch

    manifest = _manifest(tmp_path / "m.jsonl", shapes)
    tally = _ingest(workers, cluster, manifest, "ingest-5000", checkpoint, shapes_root)
    assert tally.ok, list(tally.failed.items())[:3]
    assert tally.indexed == N_IMAGES and tally.total == N_IMAGES
    stored = _stored(cluster, "ingest-5000")
    assert len(stored) == N_IMAGES

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run
    try:
        settings = Settings.from_env({}, cache_dir=tmp_path / "cache", device="cpu", torch_threads=1)
        same, plain_torch = document_encoder(checkpoint, settings), LexLIPEncoder.from_pretrained(checkpoint)
        mismatches, weights, off_by_one = 0, 0, 0
        for start in range(0, N_IMAGES, 32):  # the producer's batches
            batch = shapes[start : start + 32]
            images = same.encode_images([p.image for p in batch], scale=100.0, top_k=128)
            texts = same.encode_texts([p.captions[0] for p in batch], scale=100.0, top_k=48)
            full_images = plain_torch.encode_images([p.image for p in batch], scale=100.0)
            full_texts = plain_torch.encode_texts([p.captions[0] for p in batch], scale=100.0)
            for i, p in enumerate(batch):
                doc = stored[p.image_id]
                for field, ours, full in (
                    ("image_lexicon", images[i], full_images[i]),
                    ("caption_lexicon", texts[i], full_texts[i]),
                ):
                    mismatches += doc[field] != ours.to_features(same.vocab)
                    # torch's whole vector: each stored weight within one step, and nothing torch holds outside the
                    # stored top-K above its lightest weight + 1 (a one-step change can swap the last places)
                    theirs = full.to_features(plain_torch.vocab)
                    for token, weight in doc[field].items():
                        gap = abs(weight - theirs.get(token, 0))
                        assert gap <= 1, (p.image_id, field, token, weight, theirs.get(token))
                        weights, off_by_one = weights + 1, off_by_one + gap
                    lightest = min(doc[field].values())
                    assert all(w <= lightest + 1 for t, w in theirs.items() if t not in doc[field])
    finally:
        torch.set_num_threads(threads)
    assert mismatches == 0
    assert weights > 0 and off_by_one <= 0.001 * weights

    again = _ingest(workers, cluster, manifest, "ingest-5000", checkpoint, shapes_root)
    assert again.skipped == N_IMAGES and again.indexed == 0 and again.ok


def test_a_killed_worker_a_stopped_worker_and_a_restarted_node_lose_nothing_and_duplicate_nothing(
    workers: Workers, cluster: Cluster, shapes: list[Any], shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    faults_lose_nothing(workers, cluster, shapes[:3000], "ingest-fault", checkpoint, shapes_root, tmp_path)


def faults_lose_nothing(
    workers: Workers, cluster: Any, pairs: list[Any], index: str, checkpoint: Path, root: Path, tmp_path: Path
) -> Tally:
    """Ingest `pairs` while a worker is SIGKILLed, the engine node SIGKILLed and started again, and a worker stopped
    with SIGTERM; then every item is in the index exactly once. Returns the run's tally."""
    manifest = _manifest(tmp_path / "fault.jsonl", pairs)
    outcome: dict[str, Any] = {}

    def produce() -> None:
        try:
            outcome["tally"] = _ingest(workers, cluster, manifest, index, checkpoint, root)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    producer = threading.Thread(target=produce)
    producer.start()
    client = cluster.client(timeout=10, max_retries=0)

    def indexed() -> int:
        try:
            return int(client.count(index=index)["count"])
        except Exception:
            return 0

    deadline = time.monotonic() + 300
    while indexed() < len(pairs) // 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert indexed() < len(pairs), "the run ended before the fault could be injected"
    workers.kill("w1")  # SIGKILL the whole worker (main process and its child) mid-batch
    workers.start("w1")
    while indexed() < len(pairs) * 2 // 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 0 < indexed() < len(pairs), "the run ended before the node restart"
    cluster.restart()  # SIGKILL the engine's JVM, start it again on the same data and ports
    while indexed() < len(pairs) * 2 // 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert indexed() < len(pairs), "the run ended before the graceful stop"
    workers.terminate("w2")  # SIGTERM to the worker's main process: warm shutdown finishes the running batch
    workers.start("w2")
    producer.join(timeout=900)
    assert not producer.is_alive()
    assert "error" not in outcome, outcome.get("error")
    tally: Tally = outcome["tally"]
    assert tally.ok and tally.indexed + tally.skipped >= len(pairs)
    stored = _stored(cluster, index)
    assert len(stored) == len(pairs) and set(stored) == {p.image_id for p in pairs}
    cluster.client(timeout=60).indices.refresh(index=index)
    assert cluster.client(timeout=60).count(index=index)["count"] == len(pairs)
    return tally


def _hostile_files(root: Path, outside: Path) -> dict[str, str]:
    """Files for the hostile rows: inside the image root (`root/hostile`), and one outside it."""
    from PIL import Image

    folder = root / "hostile"
    folder.mkdir(exist_ok=True)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(os.urandom(MAX_IMAGE_BYTES + 1000))
    Image.new("L", (9000, 9000)).save(folder / "bomb.png")  # 81 megapixels in a small file
    (folder / "notes.jpg").write_text("this is not an image")
    Image.new("RGB", (16, 16)).save(folder / "vector.eps", "EPS")
    Image.new("L", (50_000, 1), 90).save(folder / "flat.png")  # fine: cropped before it is resized
    Image.new("RGBA", (24, 24), (255, 0, 0, 0)).save(folder / "clear.png")  # fine: laid over the background
    if not (folder / "fifo.png").exists():
        os.mkfifo(folder / "fifo.png")
    (outside / "secret.png").write_bytes((folder / "flat.png").read_bytes())
    for name, target in (("to-secret.png", outside / "secret.png"), ("to-passwd.png", Path("/etc/passwd"))):
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(target)
    return {name: f"hostile/{name}" for name in os.listdir(folder)}


def _hostile_rows(files: dict[str, str], images: list[str], copy: int) -> list[tuple[dict[str, Any] | bytes, str]]:
    """Every class of hostile row once (ids unique per `copy`), with good images where a row needs one. The
    expectation is the words its dead-letter reason must hold, or "" for a row that must be indexed."""
    c = f"#{copy}"
    return [
        ({"id": "captions-int" + c, "image": images[0], "captions": 5}, "captions must be a string or a list"),
        ({"id": "surrogate" + c, "image": images[1], "captions": ["a \ud800 star"]}, "not valid Unicode"),
        ({"id": "no-image" + c, "captions": ["a blue star"]}, "names no image"),
        ({"captions": ["no id, no image"]}, "names no image"),
        ({"id": "dup" + c, "image": images[2], "captions": ["first"]}, ""),
        ({"id": "dup" + c, "image": images[3], "captions": ["second"]}, f"duplicate id 'dup{c}'"),
        ({"id": "meta-image" + c, "image": images[4], "metadata": {"image": {"x": 1}}}, "field 'image' is reserved"),
        ({"id": "meta-captions" + c, "image": images[5], "metadata": {"captions": 1}}, "'captions' is reserved"),
        ({"id": "meta-ok" + c, "image": images[6], "metadata": {"shop": "eu"}}, ""),
        ({"id": "meta-engine" + c, "image": images[7], "metadata": {"n": [1, "x"]}}, "the engine refused it"),
        (
            {"id": "inline-big" + c, "image_b64": base64.b64encode(os.urandom(800_000)).decode()},
            "1,048,576-byte limit for a row",
        ),
        (b'{"id": "latin1-caf\xe9", "image": "x.png"}', "not valid UTF-8"),
        (b"{this is not json", "not a JSON object"),
        (b"[1, 2, 3]", "not a JSON object (a list)"),
        ({"id": "etc" + c, "image": "/etc/hostname"}, "outside the image root"),
        ({"id": "dotdot" + c, "image": "../../../../etc/hostname"}, "outside the image root"),
        ({"id": "proc" + c, "image": "/proc/self/environ"}, "outside the image root"),
        ({"id": "link-out" + c, "image": files["to-secret.png"]}, "outside the image root"),
        ({"id": "link-passwd" + c, "image": files["to-passwd.png"]}, "outside the image root"),
        ({"id": "fifo" + c, "image": files["fifo.png"]}, "not a regular file"),
        ({"id": "folder" + c, "image": "hostile"}, "not a regular file"),
        ({"id": "corrupt" + c, "image": files["corrupt.png"]}, "not a usable image"),
        ({"id": "empty" + c, "image": files["empty.png"]}, "empty (0 bytes)"),
        ({"id": "huge" + c, "image": files["huge.png"]}, "over the 2,000,000-byte limit"),
        ({"id": "bomb" + c, "image": files["bomb.png"]}, "pixels"),
        ({"id": "text" + c, "image": files["notes.jpg"]}, "not a usable image"),
        ({"id": "eps" + c, "image": files["vector.eps"]}, "not a recognised image format"),
        ({"id": "flat" + c, "image": files["flat.png"], "captions": ["a grey line"]}, ""),
        ({"id": "clear" + c, "image": files["clear.png"], "captions": ["nothing"]}, ""),
        ({"id": "file-url" + c, "image": "file:///etc/passwd"}, "only http and https"),
        ({"id": "loopback-url" + c, "image": "http://127.0.0.1:9/cat.png"}, "127.0.0.1"),
        ({"id": "x" * 600, "image": images[8]}, "over the 512-byte limit"),
        ({"id": "ctrl\u0007id" + c, "image": images[9]}, "control characters"),
        ({"id": 12345 + copy, "image": images[10], "captions": ["an integer id"]}, ""),
        ({"image": images[11], "captions": ["no id: the path is the id"]}, ""),
    ]


def test_a_3000_row_manifest_with_every_hostile_class_accounts_for_every_row(
    workers: Workers, cluster: Cluster, shapes: list[Any], shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    files = _hostile_files(shapes_root, tmp_path)
    good = shapes[:2800]
    spare = [p.image for p in shapes[4000:]]  # images for the special rows, 12 per copy
    rows: list[tuple[dict[str, Any] | bytes, str]] = []
    specials: list[tuple[dict[str, Any] | bytes, str]] = []
    for n, pair in enumerate(good):
        rows.append(({"id": pair.image_id, "image": pair.image, "captions": list(pair.captions[:1])}, ""))
        if n % 9 == 0:  # every special row about 9 times, spread over the run
            if not specials:
                copy = n // 9 // 35
                specials = _hostile_rows(files, spare[12 * copy : 12 * copy + 12], copy)
            rows.append(specials.pop(0))
    manifest = tmp_path / "hostile.jsonl"
    with open(manifest, "wb") as f:
        f.write(b"\xef\xbb\xbf")  # a byte-order mark before line 1
        for row, _ in rows:
            f.write(row if isinstance(row, bytes) else json.dumps(row).encode())
            f.write(b"\n")
    assert len(rows) >= 3000
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lexlip_app.cli",
            "ingest",
            str(manifest),
            "--index",
            "ingest-hostile",
            "--checkpoint",
            str(checkpoint),
            "--image-root",
            str(shapes_root),
            "--replicas",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**workers.env, "LEXLIP_ALLOW_PRIVATE_URLS": "false"},
        timeout=1200,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    bad_lines = {n: expect for n, (_, expect) in enumerate(rows, 1) if expect}
    good_ids = _expected_ids(rows)
    assert len(good_ids) + len(bad_lines) == len(rows)
    mapping = OpenSearch(cluster.url).indices.get_mapping(index="ingest-hostile")["ingest-hostile"]["mappings"]
    assert mapping["properties"]["image"]["type"] == "keyword"  # mapped up front: no row can make it an object
    stored = _stored(cluster, "ingest-hostile")
    assert set(stored) == good_ids, (sorted(set(stored) - good_ids)[:5], sorted(good_ids - set(stored))[:5])
    summary = f"{len(rows)} rows: {len(good_ids)} indexed, 0 already there, {len(bad_lines)} failed"
    assert summary in result.stdout, result.stdout[-3000:]
    assert OpenSearch(cluster.url).count(index="ingest-hostile")["count"] == len(good_ids)  # once each
    dead = DeadLetters.from_url(workers.env["LEXLIP_REDIS_URL"], "ingest-hostile").all()
    by_line = {entry["line"]: entry for entry in dead.values()}
    assert set(by_line) == set(bad_lines)
    for line, expect in bad_lines.items():
        reason = by_line[line]["reason"]
        assert reason.startswith(f"line {line}") and expect in reason, (line, reason)

    again = subprocess.run(
        [
            *[sys.executable, "-m", "lexlip_app.cli", "ingest", str(manifest), "--index", "ingest-hostile"],
            *["--checkpoint", str(checkpoint), "--image-root", str(shapes_root), "--quiet"],
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=workers.env,
        timeout=1200,
    )
    assert f"{len(rows)} rows: 0 indexed, {len(good_ids)} already there, {len(bad_lines)} failed" in again.stdout


def _expected_ids(rows: list[tuple[dict[str, Any] | bytes, str]]) -> set[str]:
    ids = set()
    for row, expect in rows:
        if not expect and isinstance(row, dict):
            ids.add(str(row["id"]) if "id" in row else str(row["image"]))
    return ids


def test_the_dead_letter_store_is_bounded_and_keyed_by_row(redis_url: str) -> None:
    from ingest.deadletter import MAX_REASON_CHARS, DeadLetter, row_key

    store = DeadLetters.from_url(redis_url, "bounded-test", max_entries=5)
    store.redis.delete(store.key, store.order)
    for line in range(1, 9):
        store.add([DeadLetter(row_key("/data/m.jsonl", line), f"line {line}: bad" + "!" * 5000, f"id-{line}", line)])
        time.sleep(0.01)
    entries = store.all()
    assert sorted(e["line"] for e in entries.values()) == [4, 5, 6, 7, 8]  # the newest five
    assert all(len(e["reason"]) == MAX_REASON_CHARS for e in entries.values())
    store.clear([row_key("/data/m.jsonl", 8)])
    assert len(store) == 4 and row_key("/data/m.jsonl", 8) not in store.all()
