"""One batch through the pipeline with a real (tiny, random) encoder and the real opensearch-py client over a
scripted connection: every item ends indexed, failed with its line, or handed back for a retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ingest.broker import Delivery, Progress
from ingest.pipeline import MAX_DEATHS, died_on, process_batch
from lexlip_es.bulk import BulkWriter
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.mapping import LexiconLayout
from tests.unit.test_bulk import _client

LAYOUT = LexiconLayout("tiny-unsaved")


@pytest.fixture(scope="module")
def encoder() -> LexLIPEncoder:
    return LexLIPEncoder.from_config("tiny", seed=0)


def _png(path: Path, size: tuple[int, int], mode: str = "RGB") -> str:
    Image.new(mode, size, 128).save(path)
    return str(path)


def _messages(tmp_path: Path) -> list[dict[str, Any]]:
    (tmp_path / "notes.png").write_text("not an image")
    return [
        {"id": "good", "line": 1, "image": _png(tmp_path / "g.png", (40, 30)), "captions": ["a grey square"]},
        {"id": "flat", "line": 2, "image": _png(tmp_path / "f.png", (50_000, 1), "L"), "captions": ["a line"]},
        {"id": "text", "line": 3, "image": str(tmp_path / "notes.png"), "captions": ["x"]},
        {"id": "ints", "line": 4, "image": str(tmp_path / "g.png"), "captions": 5},
        {"id": "surrogate", "line": 5, "image": str(tmp_path / "g.png"), "captions": ["bad \ud800 caption"]},
        {"id": "grey16", "line": 6, "image": _png(tmp_path / "i16.png", (20, 20), "I;16"), "captions": []},
    ]


def _run(encoder: LexLIPEncoder, messages: list[dict[str, Any]], client: Any, **kwargs: Any) -> Any:
    writer = BulkWriter(client, "images", LAYOUT, sleep=lambda s: None, retry_rounds=0)
    return process_batch(messages, encoder, LAYOUT, writer, _no_fetch, 10_000_000, **kwargs)


def test_each_bad_item_fails_alone_with_its_line(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    client, connection = _client()
    result = _run(encoder, _messages(tmp_path), client)
    assert sorted(result.indexed) == ["flat", "good", "grey16"]
    assert result.failed["text"].startswith("line 3: item 'text': not a usable image")
    assert result.failed["ints"] == "line 4: item 'ints': captions must be strings"
    assert result.failed["surrogate"].startswith("line 5: cannot encode it: ")
    assert set(result.failed) == {"text", "ints", "surrogate"}
    assert not result.unwritten and not result.unprocessed
    assert connection.bodies and '"lexlip_row"' not in connection.bodies[0]  # no fingerprint: none was given


def test_documents_the_engine_cannot_take_now_come_back_encoded_with_their_lines(
    encoder: LexLIPEncoder, tmp_path: Path
) -> None:
    def busy_for_good(headers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"index": {"_id": h["index"]["_id"], "status": 429 if h["index"]["_id"] == "good" else 201}}
            for h in headers
        ]

    client, _ = _client(*[busy_for_good] * 8)
    result = _run(encoder, _messages(tmp_path)[:2], client)
    assert result.indexed == ["flat"]
    assert [d["id"] for d in result.unwritten] == ["good"] and result.unwritten[0]["line"] == 1
    assert result.unwritten[0]["captions"] and result.unwritten[0]["metadata"]["captions"] == ["a grey square"]
    again_client, connection = _client()
    retried = _run(encoder, [], again_client, documents=result.unwritten)
    assert retried.indexed == ["good"] and '"_id":"good"' in connection.bodies[0].replace(" ", "")


def test_items_past_the_deadline_are_handed_back_untouched(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    client, _ = _client()
    messages = _messages(tmp_path)[:2]
    result = _run(encoder, messages, client, deadline=0.0)
    assert result.unprocessed == messages and not result.indexed and not result.failed


def test_the_item_a_worker_died_on_is_given_up_on_the_next_delivery(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    client, _ = _client()
    messages = _messages(tmp_path)[:2]
    memory = Delivery(2, {("load", 1): 1}, "load", ("load", 1))
    result = _run(encoder, messages, client, delivery=memory)
    assert result.indexed == ["good"]
    assert result.failed == {"flat": "line 2: the worker went over its memory limit on it (LEXLIP_WORKER_MEMORY_MB)"}
    once = Delivery(2, {("load", 1): 1}, "load")
    assert died_on(once, "load", 1) is None  # an unexplained death: tried again
    twice = Delivery(3, {("load", 1): MAX_DEATHS}, "load")
    assert died_on(twice, "load", 1) == f"the worker died {MAX_DEATHS} times while on it"
    assert died_on(twice, "load", 0) is None


class DictRedis:
    """Just enough of a Redis client (hashes, expiry ignored) for the progress record's logic."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        return dict(self.hashes.get(name, {}))

    def hincrby(self, name: str, key: str, amount: int = 1) -> int:
        h = self.hashes.setdefault(name, {})
        h[key.encode()] = str(int(h.get(key.encode(), b"0")) + amount).encode()
        return int(h[key.encode()])

    def hset(self, name: str, key: str | None = None, value: Any = None, mapping: Any = None) -> int:
        h = self.hashes.setdefault(name, {})
        for k, v in {**(mapping or {}), **({key: value} if key else {})}.items():
            h[k.encode()] = str(v).encode()
        return 1

    def hdel(self, name: str, *keys: str) -> int:
        return sum(self.hashes.get(name, {}).pop(k.encode(), None) is not None for k in keys)

    def expire(self, name: str, time: int) -> bool:
        return True

    def exists(self, *names: str) -> int:
        return sum(n in self.hashes for n in names)

    def delete(self, *names: str) -> int:
        return sum(self.hashes.pop(n, None) is not None for n in names)


def test_the_progress_record_counts_deliveries_and_deaths_per_item() -> None:
    redis = DictRedis()
    first = Progress(redis, "t1")  # type: ignore[arg-type]
    assert first.start() == Delivery(1)
    first.at("load", 0)
    first.at("load", 3)  # the worker dies here
    second = Progress(redis, "t1").start()  # type: ignore[arg-type]
    assert second == Delivery(2, {("load", 3): 1}, "load", None)
    Progress(redis, "t1").at("load", 3)  # type: ignore[arg-type]
    Progress(redis, "t1").memory_killed()  # type: ignore[arg-type]
    third = Progress(redis, "t1").start()  # type: ignore[arg-type]
    assert third == Delivery(3, {("load", 3): 2}, "load", ("load", 3))
    Progress(redis, "t1").at("encode")  # type: ignore[arg-type]
    fourth = Progress(redis, "t1").start()  # type: ignore[arg-type]
    assert fourth.memory_killed_at is None and fourth.deaths[("encode", None)] == 1
    Progress(redis, "t1").finish()  # type: ignore[arg-type]
    assert not Progress(redis, "t1").alive()  # type: ignore[arg-type]


def _no_fetch(url: str) -> bytes:
    raise AssertionError(f"fetched {url}")
