"""What the producer and the workers ask Redis directly, beside Celery: restarts, held batches, delivery counts.

- `run_id` changes when Redis restarts; the producer then looks for batches the restart lost.
- `held_task_ids`: the task ids still queued or taken but unacknowledged (kombu's Redis transport keeps queued
  messages in a list per queue and priority, and taken ones in the `unacked` hash until the worker acknowledges).
- Each delivery of a batch increments a counter and each item a worker starts on is recorded with it, so the next
  delivery knows which item the last worker died on (`Progress`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

PROGRESS_PREFIX = "lexlip:progress:"
PROGRESS_TTL_S = 7 * 24 * 3600
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"


class RedisLike(Protocol):
    def info(self, section: str) -> dict[str, Any]: ...
    def lrange(self, name: str, start: int, end: int) -> list[bytes]: ...
    def hvals(self, name: str) -> list[bytes]: ...
    def hincrby(self, name: str, key: str, amount: int = 1) -> int: ...
    def hset(self, name: str, key: str | None = None, value: Any = None, mapping: Any = None) -> int: ...
    def hgetall(self, name: str) -> dict[bytes, bytes]: ...
    def expire(self, name: str, time: int) -> bool: ...
    def hdel(self, name: str, *keys: str) -> int: ...
    def exists(self, *names: str) -> int: ...
    def delete(self, *names: str) -> int: ...


def connect(url: str) -> RedisLike:
    import redis

    return cast(RedisLike, redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5))


def run_id(client: RedisLike) -> str:
    return str(client.info("server")["run_id"])


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def held_task_ids(client: RedisLike, queue: str) -> set[str]:
    """Task ids of the messages Redis still holds for `queue`: waiting, or taken and not yet acknowledged."""
    held: set[str] = set()
    for key in queue_keys(queue):
        for raw in client.lrange(key, 0, -1):
            held.update(_task_id(_json(raw)))
    for raw in client.hvals(UNACKED):
        entry = _json(raw)
        if isinstance(entry, list) and entry:
            held.update(_task_id(entry[0]))
    return held


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _task_id(message: Any) -> list[str]:
    if isinstance(message, dict):
        task_id = (message.get("headers") or {}).get("id")
        if isinstance(task_id, str):
            return [task_id]
    return []


@dataclass(frozen=True)
class Delivery:
    """This delivery of a batch: its number (1 = first), how often a worker died on each (stage, item) of it, and
    where the last worker stopped (`memory_killed_at`: where the memory watchdog killed it)."""

    number: int
    deaths: dict[tuple[str, int | None], int] = field(default_factory=dict)
    last_stage: str | None = None
    memory_killed_at: tuple[str, int | None] | None = None


class Progress:
    """The running record of one batch (a Redis hash keyed by its task id), kept across its deliveries: a delivery
    that finds the record of an unfinished one knows where that one's worker died. A try that ends (with a result or
    a retry) deletes it.

    The record is best effort: while Redis is unreachable (restarting), a batch goes on without it (this delivery
    counts as a first one) rather than failing, and writes are skipped for `RETRY_AFTER_S` after a failed one."""

    RETRY_AFTER_S = 5.0

    def __init__(self, client: RedisLike, task_id: str) -> None:
        self.client = client
        self.key = PROGRESS_PREFIX + task_id
        self.down_until = 0.0

    def _safely(self, write: Callable[[], Any], default: Any = None) -> Any:
        if time.monotonic() < self.down_until:
            return default
        errors: tuple[type[BaseException], ...] = (OSError, *_redis_errors())
        try:
            return write()
        except errors:
            self.down_until = time.monotonic() + self.RETRY_AFTER_S
            return default

    def start(self) -> Delivery:
        delivery: Delivery = self._safely(self._start, Delivery(1))
        return delivery

    def _start(self) -> Delivery:
        previous = {k.decode(): v.decode() for k, v in self.client.hgetall(self.key).items()}
        number = int(self.client.hincrby(self.key, "deliveries", 1))
        self.client.hdel(self.key, "memory")
        self.client.expire(self.key, PROGRESS_TTL_S)
        stage, item = previous.get("stage"), previous.get("item", "")
        if stage and number > 1:
            self.client.hincrby(self.key, f"died:{stage}:{item}", 1)
            previous[f"died:{stage}:{item}"] = str(int(previous.get(f"died:{stage}:{item}", "0")) + 1)
        deaths = {}
        for name, count in previous.items():
            if name.startswith("died:"):
                _, died_stage, died_item = name.split(":", 2)
                deaths[(died_stage, int(died_item) if died_item else None)] = int(count)
        where = (stage, int(item) if item else None) if stage else None
        return Delivery(number, deaths, stage, where if previous.get("memory") == "1" else None)

    def at(self, stage: str, item: int | None = None) -> None:
        self._safely(
            lambda: self.client.hset(self.key, mapping={"stage": stage, "item": "" if item is None else str(item)})
        )

    def memory_killed(self) -> None:
        self._safely(lambda: self.client.hset(self.key, "memory", "1"))

    def alive(self) -> bool:
        """True when the record exists (the producer asks; it handles the broker being away itself)."""
        return bool(self.client.exists(self.key))

    def finish(self) -> None:
        self._safely(lambda: self.client.delete(self.key))


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.exceptions.RedisError,)
