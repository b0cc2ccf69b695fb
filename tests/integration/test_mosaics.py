"""`benchmarks/mosaics.py` end to end on a small corpus: emoji mosaic lexicons through Anserini and a real OpenSearch
node (`rank_features` and `impact` fields, exact and fast mode) beside a flat scan, written to its table and JSON.

The checkpoint is a fresh seeded `tiny` model over the real emoji data, so recall means little here; what must hold is
that the exact integer systems return the exact (scipy) top 10 id for id, and that every row is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
N, QUERIES = 3000, 30


def test_mosaics_runs_every_system_and_the_exact_ones_agree(tmp_path: Path, settings: Settings) -> None:
    lexlip = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "lexlip")
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "mosaics.py"),
        *("--n", str(N), "--queries", str(QUERIES), "--fast", "8:100,4:100:0.5:6", "--doc-top-k", "8"),
        *("--wide-dims", "64", "--heap-mb", "512"),
        *("--lexlip", str(lexlip), "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results")),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]

    stem = tmp_path / "results" / f"mosaics-{N}"
    report = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["system"]: r for r in report["rows"]}
    assert set(rows) == {
        "dense flat (Faiss), 64-d random vectors: speed only",
        "LexLIP Anserini impact",
        "LexLIP OpenSearch exact",
        "LexLIP OpenSearch fast 8:100",
        "LexLIP OpenSearch fast 4:100, rescore by the 6 heaviest",  # no shares in a tiny checkpoint: head by weight
        "LexLIP OpenSearch impact field, exact",
        "LexLIP OpenSearch impact field, fast 8:100",  # the first --fast mode runs on the impact field too
        "LexLIP OpenSearch documents cut to 8 terms, exact",
        "LexLIP OpenSearch documents cut to 8 terms, fast 8:100",
    }
    for name in ("LexLIP Anserini impact", "LexLIP OpenSearch impact field, exact"):
        assert rows[name]["overlap@10"] == 1.0, name  # exact integer scores, ties by id: the exact top 10 itself
    assert rows["LexLIP OpenSearch exact"]["overlap@10"] >= 0.95  # rank_features keeps 9 bits of each weight
    for name, row in rows.items():
        assert row["qps"] > 0 and len(row["qps_passes"]) == 3, name
        if "speed only" not in name:
            assert 0 <= row["R@1"] <= row["R@10"] <= 1 and row["index_bytes"] > 0, name
    cut = rows["LexLIP OpenSearch documents cut to 8 terms, exact"]
    assert cut["index_bytes"] < rows["LexLIP OpenSearch exact"]["index_bytes"]  # fewer postings stored
    shape = report["header"]["lexicon shape"]
    assert shape["distinct terms in the corpus"] > 21 and shape["terms per query"] > 0

    table = stem.with_suffix(".md").read_text()
    assert f"# Emoji mosaics: {N:,} documents, {QUERIES} text queries" in table
    assert all(f"| {name} |" in table for name in rows)
