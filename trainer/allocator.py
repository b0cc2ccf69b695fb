"""Training on CPU spends most of its time returning and re-faulting the huge vocabulary-sized buffers of the LM
heads (glibc gives every allocation above 32 MB back to the kernel). jemalloc told never to decay keeps them:
measured 31 against 11 images/s for a tiny phase-1 step on 2 cores. `lexlip train` re-executes itself
under jemalloc when Debian's libjemalloc2 is there; LEXLIP_NO_JEMALLOC=1 turns this off."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def jemalloc_path() -> str | None:
    return next((p for p in CANDIDATES if Path(p).exists()), None)


def reexec_with_jemalloc(argv: Sequence[str]) -> None:
    """Replace this process with the same command under jemalloc, once; returns when that is not possible."""
    if os.environ.get("LEXLIP_NO_JEMALLOC") == "1" or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    library = jemalloc_path()
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(filter(None, [library, env.get("LD_PRELOAD")]))
    env.setdefault("MALLOC_CONF", MALLOC_CONF)
    os.execve(sys.executable, [sys.executable, *argv], env)
