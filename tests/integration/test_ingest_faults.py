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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch, helpers

from ingest.app import create_app
from ingest.local import start_worker
from ingest.producer import RunSettings, Tally, run_ingest
from lexlip_es.local.process import LocalEngine
from lexlip_es.local.redis import start_redis
from lexlip_es.mapping import IndexOptions
from lexlip_es.settings import Settings


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


@dataclass
class Faults:
    """What every fault test needs: the shared OpenSearch node, the shapes images, the tiny checkpoint, and the
    worker pools it started (stopped at the end)."""

    settings: Settings
    url: str
    shapes: list[Any]
    root: Path
    checkpoint: Path
    tmp: Path
    pools: list[Pool] = field(default_factory=list)

    def pool(self, redis_url: str, extra: dict[str, str]) -> Pool:
        env = {
            **os.environ,
            "LEXLIP_REDIS_URL": redis_url,
            "LEXLIP_OPENSEARCH_URL": self.url,
            "LEXLIP_VISIBILITY_TIMEOUT_S": "20",
            **extra,
        }
        self.pools.append(Pool(env, self.tmp))
        return self.pools[-1]

    def rows(self, n: int) -> list[dict[str, Any]]:
        """`n` rows over the shapes images (several ids per image when n is larger than the set)."""
        rows = []
        for i in range(n):
            pair = self.shapes[i % len(self.shapes)]
            rows.append(
                {"id": f"{pair.image_id}-{i // len(self.shapes)}", "image": pair.image, "captions": pair.captions[:1]}
            )
        return rows

    def manifest(self, name: str, rows: list[dict[str, Any]]) -> Path:
        path = self.tmp / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    def ingest(self, env: dict[str, str], manifest: Path, index: str, **run: Any) -> Tally:
        return run_ingest(
            create_app(Settings.from_env(env)),
            OpenSearch(self.url, timeout=60, max_retries=0),
            manifest,
            index,
            self.checkpoint,
            options=IndexOptions(replicas=0),
            image_root=self.root,
            run_settings=RunSettings(**{"timeout_s": 1500.0, **run}),
        )

    def stored(self, index: str) -> list[str]:
        client = OpenSearch(self.url, timeout=60)
        client.indices.refresh(index=index)
        return [h["_id"] for h in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, _source=False)]

    def count(self, index: str) -> int:
        try:
            return int(OpenSearch(self.url, timeout=5, max_retries=0).count(index=index)["count"])
        except Exception:
            return 0


@pytest.fixture
def faults(
    settings: Settings, opensearch_url: str, shapes: list[Any], shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> Iterator[Faults]:
    bundle = Faults(settings, opensearch_url, shapes, shapes_root, checkpoint, tmp_path)
    yield bundle
    for pool in bundle.pools:
        pool.stop()


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


def test_a_poison_image_that_kills_its_worker_is_dead_lettered_after_two_deliveries(faults: Faults) -> None:
    from PIL import Image

    # 64 megapixels (the pixel limit) in a 260 KB file: decoding and flattening it takes over 1 GiB at once, more
    # than the workers' 1,800 MiB ceiling leaves above a child's ~1,000 MiB at rest (torch for the captions, ONNX
    # Runtime for the pictures; a torch-only child rests at ~900)
    Image.new("RGBA", (8000, 8000), (10, 20, 30, 255)).save(faults.root / "poison.png")
    redis = start_redis(faults.settings, base_dir=faults.tmp / "redis")
    try:
        pool = faults.pool(redis.url, {"LEXLIP_WORKER_MEMORY_MB": "1800", "LEXLIP_VISIBILITY_TIMEOUT_S": "120"})
        pool.start("p1")
        pool.start("p2")
        rows = faults.rows(300)
        rows.insert(150, {"id": "poison", "image": str(faults.root / "poison.png"), "captions": ["nothing"]})
        manifest = faults.manifest("poison.jsonl", rows)
        started = time.monotonic()
        tally = faults.ingest(pool.env, manifest, "faults-poison")
        seconds = time.monotonic() - started
        assert tally.indexed == 300 and tally.skipped == 0
        assert list(tally.failed) == [151]
        assert "line 151: the worker went over its memory limit on it" in tally.failed[151]
        assert tally.redelivered == 1 and tally.max_deliveries == 2
        assert len(faults.stored("faults-poison")) == 300
        assert pool.alive()  # the main processes; their children were replaced
        app = create_app(Settings.from_env(pool.env))
        replies = {host for reply in app.control.ping(timeout=2.0) for host in reply}
        assert {h.split("@")[0] for h in replies} >= {"p1", "p2"}
        _figures(faults.settings, "poison", {"rows": len(rows), "seconds": round(seconds, 1), "deliveries": 2})
    finally:
        redis.stop()


@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no-persistence"])
def test_redis_killed_and_restarted_mid_run_loses_nothing_silently(persistent: bool, faults: Faults) -> None:
    base = faults.tmp / "redis"
    redis = start_redis(faults.settings, base_dir=base, persistent=persistent)
    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    index = f"faults-redis-{'aof' if persistent else 'none'}"
    try:
        pool = faults.pool(redis.url, {})
        pool.start("r1")
        pool.start("r2")
        rows = faults.rows(2000)
        manifest = faults.manifest("redis.jsonl", rows)
        run = {"broker_wait_s": 90.0, "lost_after_s": 15.0}
        thread, outcome = _in_background(lambda: faults.ingest(pool.env, manifest, index, **run))
        deadline = time.monotonic() + 600
        while faults.count(index) < 400 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.2)
        assert thread.is_alive() and faults.count(index) < len(rows), "the run ended before the fault"
        os.killpg(redis.pid, signal.SIGKILL)
        redis.stop()
        time.sleep(3.0)
        redis = start_redis(faults.settings, base_dir=base, port=port, persistent=persistent)
        thread.join(timeout=900)
        assert not thread.is_alive(), "the producer did not end on its own"
        assert "error" not in outcome, outcome.get("error")
        tally: Tally = outcome["tally"]
        assert tally.total == len(rows) and tally.indexed + tally.skipped + len(tally.failed) == len(rows)
        for line, reason in tally.failed.items():
            assert reason.startswith(f"line {line}: ") and ("lost" in reason or "not sent" in reason), reason
        stored = faults.stored(index)
        assert len(stored) >= tally.indexed and set(stored) <= {r["id"] for r in rows}

        again = faults.ingest(pool.env, manifest, index)
        assert again.ok and again.indexed + again.skipped == len(rows)
        assert sorted(faults.stored(index)) == sorted(r["id"] for r in rows)
        assert pool.alive()
        _figures(
            faults.settings,
            f"redis-restart-{'aof' if persistent else 'none'}",
            {"rows": len(rows), "indexed": tally.indexed, "lost": len(tally.failed), "rerun_indexed": again.indexed},
        )
    finally:
        redis.stop()


def test_soak_20000_items_two_workers_one_sigkilled_every_60_s(faults: Faults) -> None:
    redis = start_redis(faults.settings, base_dir=faults.tmp / "redis")
    try:
        memory_mb = 3000
        pool = faults.pool(redis.url, {"LEXLIP_WORKER_MEMORY_MB": str(memory_mb)})
        pool.start("s1")
        pool.start("s2")
        rows = faults.rows(20_000)
        manifest = faults.manifest("soak.jsonl", rows)
        started = time.monotonic()
        thread, outcome = _in_background(lambda: faults.ingest(pool.env, manifest, "faults-soak"))
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
        stored = faults.stored("faults-soak")
        assert len(stored) == len(set(stored)) == len(rows)  # 0 lost, 0 duplicated
        assert OpenSearch(faults.url).count(index="faults-soak")["count"] == len(rows)
        assert worst_mb < 2 * memory_mb  # a main process (~100 MiB) and one child held under its ceiling
        _figures(
            faults.settings,
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
