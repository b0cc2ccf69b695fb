"""A worker process's memory ceiling: over it, the process records where it was and kills itself at once.

The kernel's OOM killer would pick some process on the machine (perhaps Redis or the search engine) once memory ran
out; the watchdog stops the one worker child that went over `LEXLIP_WORKER_MEMORY_MB` first, after marking the
batch's progress record, so that the batch's next delivery skips the item that did it (`pipeline.died_on`). Celery
replaces the child; late acks put the batch back on the queue.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Protocol

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Markable(Protocol):
    def memory_killed(self) -> None: ...


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryWatchdog:
    """A daemon thread polling the resident size every `interval_s`; `watch(record)` names the batch to mark."""

    def __init__(self, limit_bytes: int, interval_s: float = 0.05) -> None:
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self.record: Markable | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lexlip-memory-watchdog", daemon=True)

    def start(self) -> MemoryWatchdog:
        self._thread.start()
        return self

    def watch(self, record: Markable | None) -> None:
        self.record = record

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if resident_bytes() > self.limit_bytes:
                self._kill()

    def _kill(self) -> None:
        record = self.record
        if record is not None:
            with contextlib.suppress(Exception):  # the broker may be away; the kill must happen regardless
                record.memory_killed()
        os.kill(os.getpid(), signal.SIGKILL)
