"""The dead-letter store: rows that could not be ingested, with their reasons, in a Redis hash per index.

Keyed by row (`<manifest path>:<line>`), so running a manifest again replaces an entry instead of adding one, a row
that later succeeds is removed, and two rows of one id (a duplicate) keep separate entries. The store is bounded:
beyond `max_entries` the oldest entries are dropped (a sorted set beside the hash orders them by time), and keys and
reasons are cut to a fixed length.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

PREFIX = "lexlip:dead-letters:"
MAX_KEY_CHARS = 600
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class DeadLetter:
    row: str
    """`<manifest path>:<line>`: the key."""
    reason: str
    id: str | None = None
    line: int | None = None
    source: str | None = None


def row_key(manifest: str, line: int) -> str:
    return f"{manifest}:{line}"


class DeadLetters:
    def __init__(self, redis_client: Any, index: str, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.redis = redis_client
        self.key = PREFIX + index
        self.order = self.key + ":order"
        self.max_entries = max_entries

    @classmethod
    def from_url(cls, url: str, index: str, max_entries: int = 100_000) -> DeadLetters:
        import redis

        return cls(redis.Redis.from_url(url), index, max_entries)

    def add(self, letters: Iterable[DeadLetter]) -> None:
        now = time.time()
        entries = {}
        for letter in letters:
            key = letter.row[:MAX_KEY_CHARS]
            entry = {**asdict(letter), "row": key, "reason": letter.reason[:MAX_REASON_CHARS], "at": now}
            entries[key] = json.dumps(entry, ensure_ascii=False)
        if not entries:
            return
        pipe = self.redis.pipeline()
        pipe.hset(self.key, mapping=entries)
        pipe.zadd(self.order, {key: now for key in entries})
        pipe.zcard(self.order)
        size = pipe.execute()[-1]
        if size > self.max_entries:
            oldest = [k for k, _ in self.redis.zpopmin(self.order, size - self.max_entries)]
            if oldest:
                self.redis.hdel(self.key, *oldest)

    def clear(self, rows: Iterable[str]) -> None:
        ids = [r[:MAX_KEY_CHARS] for r in rows]
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            pipe = self.redis.pipeline()
            pipe.hdel(self.key, *chunk)
            pipe.zrem(self.order, *chunk)
            pipe.execute()

    def all(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self.key).items()}

    def __len__(self) -> int:
        return int(self.redis.hlen(self.key))
