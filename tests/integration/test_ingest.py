"""Celery ingestion with real Redis, a real (restartable) OpenSearch node and two real `lexlip worker` processes."""

from __future__ import annotations

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
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.process import LocalEngine
from lexlip_es.mapping import IndexOptions
from lexlip_es.settings import Settings
from trainer.data.datasets import load_pairs
from trainer.data.shapes import generate_shapes

ROOT = Path(__file__).resolve().parents[2]
N_IMAGES = 5000
MAX_IMAGE_BYTES = 2_000_000


class Cluster:
    """An OpenSearch node that can be killed and started again on the same ports and data."""

    def __init__(self, settings: Settings, base: Path) -> None:
        self.settings, self.base = settings, base
        self.engine = start_opensearch(settings, base_dir=base)
        self.ports = (self.engine.info["http_ports"], self.engine.info["transport_ports"])
        self.url = self.engine.url

    def restart(self) -> None:
        os.killpg(self.engine.pid, signal.SIGKILL)
        self.engine.stop()
        self.engine = start_opensearch(self.settings, base_dir=self.base, ports=self.ports)

    def stop(self) -> None:
        self.engine.stop()


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    node = Cluster(settings, tmp_path_factory.mktemp("ingest-opensearch"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    path = generate_shapes(tmp_path_factory.mktemp("ingest-shapes"), N_IMAGES, 0, 0, seed=7, image_size=32)
    return load_pairs(path, "train")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("ingest-ckpt") / "tiny")


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
    env = {
        **os.environ,
        "LEXLIP_REDIS_URL": redis_url,
        "LEXLIP_OPENSEARCH_URL": cluster.url,
        "LEXLIP_VISIBILITY_TIMEOUT_S": "20",
        "LEXLIP_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
    }
    pool = Workers(env, tmp_path_factory.mktemp("ingest-workers"))
    pool.start("w1")
    pool.start("w2")
    yield pool
    pool.stop()


def _manifest(path: Path, pairs: list[Any]) -> Path:
    with open(path, "w") as f:
        for p in pairs:
            f.write(json.dumps({"id": p.image_id, "image": p.image, "captions": list(p.captions[:1])}) + "\n")
    return path


def _ingest(workers: Workers, cluster: Cluster, manifest: Path, index: str, checkpoint: Path) -> Tally:
    app = create_app(Settings.from_env(workers.env))
    client = OpenSearch(cluster.url, timeout=60, max_retries=0)
    return run_ingest(app, client, manifest, index, checkpoint, options=IndexOptions(replicas=0), timeout_s=1200)


def _stored(cluster: Cluster, index: str) -> dict[str, dict[str, Any]]:
    client = OpenSearch(cluster.url, timeout=60)
    return {h["_id"]: h["_source"] for h in helpers.scan(client, index=index, query={"query": {"match_all": {}}})}


def test_5000_images_by_two_workers_equal_the_in_process_vectors(
    workers: Workers, cluster: Cluster, shapes: list[Any], checkpoint: Path, tmp_path: Path
) -> None:
    import torch

    tally = _ingest(workers, cluster, _manifest(tmp_path / "m.jsonl", shapes), "ingest-5000", checkpoint)
    assert tally.ok, list(tally.failed.items())[:3]
    assert tally.indexed == N_IMAGES and tally.total == N_IMAGES
    stored = _stored(cluster, "ingest-5000")
    assert len(stored) == N_IMAGES

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run
    try:
        encoder = LexLIPEncoder.from_pretrained(checkpoint)
        mismatches = 0
        for start in range(0, N_IMAGES, 32):  # the producer's batches
            batch = shapes[start : start + 32]
            images = encoder.encode_images([p.image for p in batch], scale=100.0, top_k=128)
            texts = encoder.encode_texts([p.captions[0] for p in batch], scale=100.0, top_k=48)
            for p, image, text in zip(batch, images, texts, strict=True):
                doc = stored[p.image_id]
                mismatches += doc["image_lexicon"] != image.to_features(encoder.vocab)
                mismatches += doc["caption_lexicon"] != text.to_features(encoder.vocab)
    finally:
        torch.set_num_threads(threads)
    assert mismatches == 0

    again = _ingest(workers, cluster, tmp_path / "m.jsonl", "ingest-5000", checkpoint)
    assert again.skipped == N_IMAGES and again.indexed == 0 and again.ok


def test_a_killed_worker_a_stopped_worker_and_a_restarted_node_lose_nothing_and_duplicate_nothing(
    workers: Workers, cluster: Cluster, shapes: list[Any], checkpoint: Path, tmp_path: Path
) -> None:
    pairs = shapes[:3000]
    manifest = _manifest(tmp_path / "fault.jsonl", pairs)
    outcome: dict[str, Any] = {}

    def produce() -> None:
        try:
            outcome["tally"] = _ingest(workers, cluster, manifest, "ingest-fault", checkpoint)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    producer = threading.Thread(target=produce)
    producer.start()
    client = OpenSearch(cluster.url, timeout=10, max_retries=0)

    def indexed() -> int:
        try:
            return int(client.count(index="ingest-fault")["count"])
        except Exception:
            return 0

    deadline = time.monotonic() + 300
    while indexed() < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert indexed() < len(pairs), "the run ended before the fault could be injected"
    workers.kill("w1")  # SIGKILL the whole worker (main process and its child) mid-batch
    workers.start("w1")
    while indexed() < 1200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 0 < indexed() < len(pairs), "the run ended before the node restart"
    cluster.restart()  # SIGKILL the OpenSearch JVM, start it again on the same data and ports
    while indexed() < 2000 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert indexed() < len(pairs), "the run ended before the graceful stop"
    workers.terminate("w2")  # SIGTERM to the worker's main process: warm shutdown finishes the running batch
    workers.start("w2")
    producer.join(timeout=900)
    assert not producer.is_alive()
    assert "error" not in outcome, outcome.get("error")
    tally = outcome["tally"]
    assert tally.ok and tally.indexed + tally.skipped >= len(pairs)
    stored = _stored(cluster, "ingest-fault")
    assert len(stored) == len(pairs) and set(stored) == {p.image_id for p in pairs}
    assert OpenSearch(cluster.url).count(index="ingest-fault")["count"] == len(pairs)


def _bad_inputs(folder: Path, good: list[Any]) -> tuple[Path, dict[str, str]]:
    from PIL import Image

    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(os.urandom(MAX_IMAGE_BYTES + 1000))
    Image.new("L", (9000, 9000)).save(folder / "bomb.png")  # 81 megapixels in a small file
    (folder / "notes.jpg").write_text("this is not an image")
    bad = {
        "corrupt": ("corrupt.png", "not a usable image"),
        "empty": ("empty.png", "empty"),
        "huge": ("huge.png", "over the 2,000,000-byte limit"),
        "bomb": ("bomb.png", "pixels"),
        "missing": ("missing.png", "no such file"),
        "text": ("notes.jpg", "not a usable image"),
        "loopback-url": ("http://127.0.0.1:9/cat.png", "127.0.0.1"),
    }
    rows = [{"id": p.image_id, "image": p.image, "captions": list(p.captions[:1])} for p in good]
    for n, (item_id, (image, _)) in enumerate(bad.items()):
        rows.insert(2 * n + 1, {"id": item_id, "image": image, "captions": ["a red circle"]})
    rows.append({"id": "no-image", "captions": ["a blue star"]})
    manifest = folder / "bad.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + "this line is not json\n")
    expected = {item_id: reason for item_id, (_, reason) in bad.items()}
    expected["no-image"] = "names no image"
    expected["bad.jsonl:29"] = "not a JSON object"
    return manifest, expected


def test_bad_inputs_go_to_the_dead_letter_store_and_the_rest_is_indexed(
    workers: Workers, cluster: Cluster, shapes: list[Any], checkpoint: Path, tmp_path: Path
) -> None:
    good = shapes[:20]
    manifest, expected = _bad_inputs(tmp_path, good)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lexlip_es.cli",
            "ingest",
            str(manifest),
            "--index",
            "ingest-bad",
            "--checkpoint",
            str(checkpoint),
            "--replicas",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=workers.env,
    )
    assert result.returncode == 1, result.stderr
    assert f"{len(good) + len(expected)} items: {len(good)} indexed, 0 already there, {len(expected)} failed" in (
        result.stdout
    )
    assert set(_stored(cluster, "ingest-bad")) == {p.image_id for p in good}
    dead = DeadLetters.from_url(workers.env["LEXLIP_REDIS_URL"], "ingest-bad").all()
    assert set(dead) == set(expected)
    for item_id, reason in expected.items():
        assert reason in dead[item_id]["reason"], (item_id, dead[item_id])
