"""`benchmarks/table2.py` end to end on a small corpus: the one command that reproduces the shape of the paper's Table 2
runs every system (its own OpenSearch and Elasticsearch nodes, Anserini, Faiss) and writes its table, JSON and plot.

The checkpoints are fresh seeded `tiny` models, so recall means nothing here; what must hold is agreement: the exact
integer systems (Anserini, the OpenSearch impact field) return the exact scorer's top 10 id for id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.encoders.dense import DenseEncoder
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
N, QUERIES = 1500, 40


def test_table2_runs_every_system_and_the_exact_ones_agree(tmp_path: Path, settings: Settings) -> None:
    lexlip = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "lexlip")
    dense = DenseEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "dense")
    key = f"{checkpoint_model_id(lexlip)}-{checkpoint_model_id(dense)}-n{N}-q{QUERIES}"
    cached = settings.cache_dir / "table2" / key
    shutil.rmtree(cached, ignore_errors=True)  # encode for real, not from an earlier run's cache
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "table2.py"),
        *("--n", str(N), "--queries", str(QUERIES), "--fast", "8:100", "--sparsify", "16", "--wide-dims", "128"),
        *("--heap-mb", "512", "--lexlip", str(lexlip), "--dense", str(dense)),
        *("--out", str(tmp_path / "work"), "--results", str(tmp_path / "results")),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]

    stem = tmp_path / "results" / f"table2-{N}"
    report = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["system"]: r for r in report["rows"]}
    assert set(rows) == {
        "LexLIP exact scorer (scipy)",
        "dense flat (Faiss)",
        "dense HNSW (Faiss)",
        "dense flat (Faiss), 128-d random vectors: speed only",
        "LexLIP Anserini impact",
        "LexLIP OpenSearch exact",
        "LexLIP OpenSearch fast 8:100",
        "LexLIP OpenSearch impact field, exact",
        "LexLIP OpenSearch impact field, fast 16:1000",
        "BM25 over captions (OpenSearch)",
        "LexLIP OpenSearch, documents top-16",
        "dense twin, Elasticsearch HNSW kNN",
        "dense twin, Elasticsearch flat (exact) kNN",
        "LexLIP Elasticsearch sparse_vector, exact",
    }
    for name in ("LexLIP Anserini impact", "LexLIP OpenSearch impact field, exact"):
        assert rows[name]["overlap@10"] == 1.0, name  # exact integer scores, ties by id: the exact top 10 itself
    for name in ("LexLIP OpenSearch exact", "LexLIP Elasticsearch sparse_vector, exact"):
        assert rows[name]["tied@10"] >= 0.95, name  # both fields keep 9 bits of each weight
    # Elasticsearch's flat kNN scores every vector: the Faiss flat scan's top 10 (float ties aside)
    assert rows["dense twin, Elasticsearch flat (exact) kNN"]["overlap@10"] >= 0.95
    encoders = report["header"]["query encoding p50 ms, one query at a time, one thread"]
    assert set(encoders) == {"LexLIP torch", "LexLIP ONNX", "dense torch"} and min(encoders.values()) > 0
    for name, row in rows.items():
        expected = "none" if name.startswith("BM25") else "-" if "speed only" in name else None
        expected = expected or ("LexLIP ONNX" if name.startswith("LexLIP") else "dense torch")
        assert row["encoder"] == expected, name
        if expected not in ("none", "-"):
            assert row["p50_ms_with_encoding"] > row["p50_ms"], name
    for name, row in rows.items():
        assert row["qps"] > 0 and row["p50_ms"] <= row["p99_ms"], name
        passes = row["qps_passes"]  # ascending; the row reports the median pass (the exact scorer runs one)
        assert len(passes) == (1 if name.startswith("LexLIP exact scorer") else 3), name
        assert passes == sorted(passes) and round(row["qps"], 1) == passes[len(passes) // 2], name
        if row.get("R@10") is not None:
            assert 0 <= row["R@1"] <= row["R@5"] <= row["R@10"] <= 1, name
    assert rows["LexLIP OpenSearch impact field, exact"]["index_bytes"] < rows["LexLIP OpenSearch exact"]["index_bytes"]
    assert report["header"]["lexicon shape"]["terms per image"] > 0

    table = stem.with_suffix(".md").read_text()
    assert f"# Table 2 on this machine: {N:,} images, {QUERIES} text queries" in table
    assert all(f"| {name} |" in table for name in rows)
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
