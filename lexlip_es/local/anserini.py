"""Anserini, the reference backend: impact indexing and impact search over local paths, through its fatjar.

Impact scoring is exactly sum(q_int * d_int): Anserini stores integer weights as term frequencies, with none of
Lucene FeatureField's 9-bit truncation. Searching goes through our `java/LexlipAnseriniSearch.java`, which calls
`SimpleImpactSearcher` on a local index; Anserini's `SearchCollection` is avoided because it may reach the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lexlip_es.errors import EngineError
from lexlip_es.features import impact_features
from lexlip_es.local.java import JavaRuntime, compile_launcher, find_java
from lexlip_es.local.maven import fetch_artifact
from lexlip_es.settings import Settings

MIN_JAVA = 21
SEARCH_LAUNCHER = "LexlipAnseriniSearch.java"

Hit = tuple[str, float]


class Anserini:
    """Impact indexing and search with one Anserini fatjar; every call is one JVM run."""

    def __init__(self, settings: Settings, heap_mb: int | None = None) -> None:
        self.settings = settings
        self.heap_mb = heap_mb or settings.engine_heap_mb
        self.runtime: JavaRuntime = find_java(settings, MIN_JAVA)
        coords = f"io.anserini:anserini:{settings.anserini_version}:jar:fatjar"
        self.fatjar: Path = fetch_artifact(settings, coords)
        self._classes: Path | None = None

    def _java(self, classpath: Sequence[Path], main: str, args: Sequence[str], what: str) -> None:
        cmd = [
            str(self.runtime.java),
            f"-Xmx{self.heap_mb}m",
            "-cp",
            os.pathsep.join(map(str, classpath)),
            main,
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise EngineError(f"Anserini {what} failed (exit {result.returncode}):\n{tail}")

    def index(self, documents: Iterable[tuple[str, Mapping[str, int]]], index_dir: Path, threads: int = 1) -> int:
        """Build an impact index of `(doc_id, {token: int weight})` pairs at `index_dir`; return the document count."""
        index_dir = Path(index_dir)
        with tempfile.TemporaryDirectory(prefix="lexlip-anserini-") as tmp:
            count = 0
            with open(Path(tmp) / "docs.jsonl", "w", encoding="utf-8") as f:
                for doc_id, vector in documents:
                    record = {
                        "id": str(doc_id),
                        "contents": "",
                        "vector": impact_features(vector, f"document {doc_id}"),
                    }
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    count += 1
            self._java(
                [self.fatjar],
                "io.anserini.index.IndexCollection",
                [
                    "-collection",
                    "JsonVectorCollection",
                    "-input",
                    tmp,
                    "-index",
                    str(index_dir),
                    "-impact",
                    "-pretokenized",
                    "-threads",
                    str(threads),
                ],
                "indexing",
            )
        return count

    def search(
        self,
        index_dir: Path,
        queries: Sequence[tuple[str, Mapping[str, int]]],
        k: int = 10,
        seconds: dict[str, float] | None = None,
    ) -> dict[str, list[Hit]]:
        """Impact search: for each `(query_id, {token: int weight})`, the top-`k` `(doc_id, score)` pairs.

        `seconds`, when given, receives each query's search time inside the JVM (no start-up, no index opening)."""
        if self._classes is None:
            self._classes = compile_launcher(self.settings, SEARCH_LAUNCHER)
        with tempfile.TemporaryDirectory(prefix="lexlip-anserini-") as tmp:
            q_path, out_path = Path(tmp) / "queries.tsv", Path(tmp) / "hits.tsv"
            ids: dict[str, str] = {}
            with open(q_path, "w", encoding="utf-8") as f:
                for n, (qid, vector) in enumerate(queries):
                    terms = " ".join(f"{t} {w}" for t, w in impact_features(vector, f"query {qid}").items())
                    ids[str(n)] = str(qid)
                    f.write(f"{n}\t{terms}\n")
            self._java(
                [self._classes, self.fatjar],
                Path(SEARCH_LAUNCHER).stem,
                [str(index_dir), str(k), str(q_path), str(out_path)],
                "search",
            )
            results: dict[str, list[Hit]] = {qid: [] for qid in ids.values()}
            with open(out_path, encoding="utf-8") as f:
                for line in f:
                    row, doc_id, score = line.rstrip("\n").split("\t")
                    results[ids[row]].append((doc_id, float(score)))
            if seconds is not None:
                with open(f"{out_path}.times", encoding="utf-8") as f:
                    for line in f:
                        row, nanos = line.rstrip("\n").split("\t")
                        seconds[ids[row]] = int(nanos) / 1e9
        return results
