"""Ingestion under faults, each against its own real Redis and real `lexlip worker` processes (a shared OpenSearch
node): a poison image that kills its worker, Redis SIGKILLed and restarted mid-run (with the append-only file the
README recommends, and without), and a 20,000-item soak with a worker SIGKILLed every 60 s. Figures go to
`<cache>/logs/ingest-faults.json` for the notes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from ingest.app import create_app
from ingest.local import start_worker
from ingest.producer import RunSettings, Tally, run_ingest
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.local.process import LocalEngine
from lexlip_es.local.redis import start_redis
from lexlip_es.mapping import IndexOptions
from lexlip_es.settings import Settings
from trainer.data.datasets import load_pairs
from trainer.data.shapes import generate_shapes

N_IMAGES = 5000


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-shapes")
    generate_shapes(root, N_IMAGES, 0, 0, seed=3, image_size=32)
    return root


@pytest.fixture(scope="module")
def shapes(shapes_root: Path) -> list[Any]:
    return load_pairs(next(shapes_root.glob("*.json")), "train")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path_factory.mktemp("fault-ckpt") / "tiny")


def _figures(settings: Settings, name: str, figures: dict[str, Any]) -> None:
    path = settings.cache_dir / "logs" / "ingest-faults.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**current, name: figures}, indent=2))


class Pool:
    """`lexlip worker` processes on one Redis, started, killed and restarted by name."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.procs: dict[str, LocalEngine] = {}

    def start(self, name: str) -> None:
        self.procs[name] = start_worker(name, self.env, self.workdir / f"{name}-{time.time():.0f}.log", timeout_s=180)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].stop()

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs.values())

    def resident_mb(self) -> float:
        """Resident memory of every worker process (main and children), in MiB, summed per worker, max over them."""
        worst = 0
        for engine in self.procs.values():
            pids = [engine.pid, *_children(engine.pid)]
            worst = max(worst, sum(_rss(p) for p in pids))
        return worst / 2**20

    def stop(self) -> None:
        for engine in self.procs.values():
            engine.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@pytest.fixture
def pool_factory(
    opensearch_url: str, settings: Settings, tmp_path: Path
) -> Iterator[Callable[[str, dict[str, str]], Pool]]:
    pools: list[Pool] = []

    def make(redis_url: str, extra: dict[str, str]) -> Pool:
        env = {
            **os.environ,
            "LEXLIP_REDIS_URL": redis_url,
            "LEXLIP_OPENSEARCH_URL": opensearch_url,
            "LEXLIP_VISIBILITY_TIMEOUT_S": "20",
            **extra,
        }
        pool = Pool(env, tmp_path)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def _manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(shapes: list[Any], n: int) -> list[dict[str, Any]]:
    """`n` rows over the shapes images (several ids per image when n is larger than the set)."""
    return [
        {
            "id": f"{shapes[i % len(shapes)].image_id}-{i // len(shapes)}",
            "image": shapes[i % len(shapes)].image,
            "captions": list(shapes[i % len(shapes)].captions[:1]),
        }
        for i in range(n)
    ]


def _ingest(
    env: dict[str, str], url: str, manifest: Path, index: str, checkpoint: Path, root: Path, **run: Any
) -> Tally:
    app = create_app(Settings.from_env(env))
    return run_ingest(
        app,
        OpenSearch(url, timeout=60, max_retries=0),
        manifest,
        index,
        checkpoint,
        options=IndexOptions(replicas=0),
        image_root=root,
        run_settings=RunSettings(**{"timeout_s": 1500.0, **run}),
    )


def _stored_ids(url: str, index: str) -> list[str]:
    client = OpenSearch(url, timeout=60)
    client.indices.refresh(index=index)
    return [h["_id"] for h in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, _source=False)]


def _in_background(run: Callable[[], Tally]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["tally"] = run()
        except Exception as exc:  # reported by the test's assertion
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _count(url: str, index: str) -> int:
    try:
        return int(OpenSearch(url, timeout=5, max_retries=0).count(index=index)["count"])
    except Exception:
        return 0


def test_a_poison_image_that_kills_its_worker_is_dead_lettered_after_two_deliveries(
    pool_factory: Callable[[str, dict[str, str]], Pool],
    settings: Settings,
    opensearch_url: str,
    shapes: list[Any],
    shapes_root: Path,
    checkpoint: Path,
    tmp_path: Path,
) -> None:
    from PIL import Image

    # 64 megapixels (the pixel limit) in a 260 KB file: decoding and flattening it takes over 1 GiB at once, more
    # than the workers' 1,500 MiB ceiling leaves above a child's ~900 MiB at rest
    Image.new("RGBA", (8000, 8000), (10, 20, 30, 255)).save(shapes_root / "poison.png")
    redis = start_redis(settings, base_dir=tmp_path / "redis")
    try:
        pool = pool_factory(redis.url, {"LEXLIP_WORKER_MEMORY_MB": "1500", "LEXLIP_VISIBILITY_TIMEOUT_S": "120"})
        pool.start("p1")
        pool.start("p2")
        rows = _rows(shapes, 300)
        rows.insert(150, {"id": "poison", "image": str(shapes_root / "poison.png"), "captions": ["nothing"]})
        manifest = _manifest(tmp_path / "poison.jsonl", rows)
        started = time.monotonic()
        tally = _ingest(pool.env, opensearch_url, manifest, "faults-poison", checkpoint, shapes_root)
        seconds = time.monotonic() - started
        assert tally.indexed == 300 and tally.skipped == 0
        assert list(tally.failed) == [151]
        assert "line 151: the worker went over its memory limit on it" in tally.failed[151]
        assert tally.redelivered == 1 and tally.max_deliveries == 2
        assert len(_stored_ids(opensearch_url, "faults-poison")) == 300
        assert pool.alive()  # the main processes; their children were replaced
        app = create_app(Settings.from_env(pool.env))
        replies = {host for reply in app.control.ping(timeout=2.0) for host in reply}
        assert {h.split("@")[0] for h in replies} >= {"p1", "p2"}
        _figures(settings, "poison", {"rows": len(rows), "seconds": round(seconds, 1), "deliveries": 2})
    finally:
        redis.stop()


@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no-persistence"])
def test_redis_killed_and_restarted_mid_run_loses_nothing_silently(
    persistent: bool,
    pool_factory: Callable[[str, dict[str, str]], Pool],
    settings: Settings,
    opensearch_url: str,
    shapes: list[Any],
    shapes_root: Path,
    checkpoint: Path,
    tmp_path: Path,
) -> None:
    base = tmp_path / "redis"
    redis = start_redis(settings, base_dir=base, persistent=persistent)
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    index = f"faults-redis-{'aof' if persistent else 'none'}"
    try:
        pool = pool_factory(redis.url, {})
        pool.start("r1")
        pool.start("r2")
        rows = _rows(shapes, 2000)
        manifest = _manifest(tmp_path / "redis.jsonl", rows)
        run = {"broker_wait_s": 90.0, "lost_after_s": 15.0}
        thread, outcome = _in_background(
            lambda: _ingest(pool.env, opensearch_url, manifest, index, checkpoint, shapes_root, **run)
        )
        deadline = time.monotonic() + 600
        while _count(opensearch_url, index) < 400 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.2)
        assert thread.is_alive() and _count(opensearch_url, index) < len(rows), "the run ended before the fault"
        os.killpg(redis.pid, signal.SIGKILL)
        redis.stop()
        time.sleep(3.0)
        redis = start_redis(settings, base_dir=base, port=port, persistent=persistent)
        thread.join(timeout=900)
        assert not thread.is_alive(), "the producer did not end on its own"
        assert "error" not in outcome, outcome.get("error")
        tally: Tally = outcome["tally"]
        assert tally.total == len(rows) and tally.indexed + tally.skipped + len(tally.failed) == len(rows)
        for line, reason in tally.failed.items():
            assert reason.startswith(f"line {line}: ") and ("lost" in reason or "not sent" in reason), reason
        stored = _stored_ids(opensearch_url, index)
        assert len(stored) >= tally.indexed and set(stored) <= {r["id"] for r in rows}

        again = _ingest(pool.env, opensearch_url, manifest, index, checkpoint, shapes_root)
        assert again.ok and again.indexed + again.skipped == len(rows)
        assert sorted(_stored_ids(opensearch_url, index)) == sorted(r["id"] for r in rows)
        assert pool.alive()
        _figures(
            settings,
            f"redis-restart-{'aof' if persistent else 'none'}",
            {"rows": len(rows), "indexed": tally.indexed, "lost": len(tally.failed), "rerun_indexed": again.indexed},
        )
    finally:
        redis.stop()


def test_soak_20000_items_two_workers_one_sigkilled_every_60_s(
    pool_factory: Callable[[str, dict[str, str]], Pool],
    settings: Settings,
    opensearch_url: str,
    shapes: list[Any],
    shapes_root: Path,
    checkpoint: Path,
    tmp_path: Path,
) -> None:
    redis = start_redis(settings, base_dir=tmp_path / "redis")
    try:
        memory_mb = 3000
        pool = pool_factory(redis.url, {"LEXLIP_WORKER_MEMORY_MB": str(memory_mb)})
        pool.start("s1")
        pool.start("s2")
        rows = _rows(shapes, 20_000)
        manifest = _manifest(tmp_path / "soak.jsonl", rows)
        started = time.monotonic()
        thread, outcome = _in_background(
            lambda: _ingest(pool.env, opensearch_url, manifest, "faults-soak", checkpoint, shapes_root)
        )
        kills, worst_mb, next_kill = 0, 0.0, time.monotonic() + 60
        while thread.is_alive():
            worst_mb = max(worst_mb, pool.resident_mb())
            if time.monotonic() >= next_kill:
                name = "s1" if kills % 2 == 0 else "s2"
                pool.kill(name)
                pool.start(name)
                kills += 1
                next_kill = time.monotonic() + 60
            time.sleep(1.0)
        seconds = time.monotonic() - started
        assert "error" not in outcome, outcome.get("error")
        tally: Tally = outcome["tally"]
        assert kills >= 2, "the run ended before two kills: the soak did not soak"
        assert tally.ok and tally.indexed == len(rows), list(tally.failed.items())[:3]
        stored = _stored_ids(opensearch_url, "faults-soak")
        assert len(stored) == len(set(stored)) == len(rows)  # 0 lost, 0 duplicated
        assert OpenSearch(opensearch_url).count(index="faults-soak")["count"] == len(rows)
        assert worst_mb < 2 * memory_mb  # a main process (~100 MiB) and one child held under its ceiling
        _figures(
            settings,
            "soak",
            {
                "rows": len(rows),
                "seconds": round(seconds, 1),
                "kills": kills,
                "redelivered_batches": tally.redelivered,
                "max_worker_rss_mb": round(worst_mb),
                "images_per_s": round(len(rows) / seconds, 1),
            },
        )
    finally:
        redis.stop()
