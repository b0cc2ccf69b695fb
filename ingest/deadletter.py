"""The dead-letter store: items that could not be ingested, with their reasons, in a Redis hash per index.

Keyed by item id, so running a manifest again replaces an entry instead of adding one, and an item that later
succeeds is removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "lexlip:dead-letters:"


class DeadLetters:
    def __init__(self, redis_client: Any, index: str) -> None:
        self.redis = redis_client
        self.key = PREFIX + index

    @classmethod
    def from_url(cls, url: str, index: str) -> DeadLetters:
        import redis

        return cls(redis.Redis.from_url(url), index)

    def add(self, failures: Mapping[str, str], sources: Mapping[str, str] | None = None) -> None:
        if not failures:
            return
        now = time.time()
        entries = {
            item_id: json.dumps({"id": item_id, "reason": reason, "source": (sources or {}).get(item_id), "at": now})
            for item_id, reason in failures.items()
        }
        self.redis.hset(self.key, mapping=entries)

    def clear(self, item_ids: Iterable[str]) -> None:
        ids = list(item_ids)
        for start in range(0, len(ids), 1000):
            self.redis.hdel(self.key, *ids[start : start + 1000])

    def all(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self.key).items()}
