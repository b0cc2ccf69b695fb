"""The same 10,000 documents and 1,000 queries through OpenSearch, Elasticsearch, Anserini and the exact scorer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lexlip_es.parity import ParityReport, run_parity, write_vectors, zipf_vectors
from lexlip_es.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _lexlip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lexlip_app.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


@pytest.fixture(scope="module")
def report(settings: Settings, opensearch_url: str, elasticsearch_url: str) -> ParityReport:
    documents = zipf_vectors(10_000, (20, 200), seed=0)
    queries = zipf_vectors(1_000, (5, 40), big_fraction=0.0, seed=1, prefix="q")
    engines = settings.with_(opensearch_url=opensearch_url, elasticsearch_url=elasticsearch_url)
    return run_parity(documents, queries, engines, k=10)


def test_the_corpus_exercises_big_weights_and_odd_tokens(report: ParityReport) -> None:
    assert report.documents == 10_000 and report.queries == 1_000
    assert 0 < report.weights_above_511 < report.weights / 100


@pytest.mark.parametrize("engine", ["opensearch", "opensearch-impact", "elasticsearch", "anserini"])
def test_every_engine_agrees_with_the_exact_scorer(report: ParityReport, engine: str) -> None:
    (result,) = [e for e in report.engines if e.engine == engine]
    assert result.queries == 1_000
    assert result.unexplained == 0, result.mismatches[:5]
    if engine in ("anserini", "opensearch-impact"):  # integer impacts: exact everywhere, big weights included
        assert result.identical_scores == 1_000 and not result.mismatches
    else:  # Lucene's 9-bit weights: only queries whose top 10 touch a weight above 511 may differ
        assert result.identical_scores >= 1_000 - result.queries_matching_big_weights
        assert result.queries_matching_big_weights > 0
        assert all(m.explained_by_9bit for m in result.mismatches)


def test_parity_cli_writes_a_report(tmp_path: Path, opensearch_url: str, elasticsearch_url: str) -> None:
    write_vectors(tmp_path / "corpus.jsonl", zipf_vectors(500, (20, 200), big_fraction=0.01, seed=5))
    write_vectors(tmp_path / "queries.jsonl", zipf_vectors(50, (5, 40), big_fraction=0.0, seed=6, prefix="q"))
    env = {**os.environ, "LEXLIP_OPENSEARCH_URL": opensearch_url, "LEXLIP_ELASTICSEARCH_URL": elasticsearch_url}
    result = _lexlip(
        "parity",
        "--corpus",
        str(tmp_path / "corpus.jsonl"),
        "--queries",
        str(tmp_path / "queries.jsonl"),
        "--report",
        str(tmp_path / "parity.md"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "parity.json").read_text())
    assert [e["engine"] for e in data["engines"]] == ["opensearch", "opensearch-impact", "elasticsearch", "anserini"]
    assert all(e["unexplained"] == 0 for e in data["engines"])
    assert "| opensearch | 50 |" in (tmp_path / "parity.md").read_text()


def test_parity_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "vector": {"x": 1}}\nnot json\n')
    result = _lexlip("parity", "--corpus", str(tmp_path / "bad.jsonl"), "--queries", str(tmp_path / "bad.jsonl"))
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "bad.jsonl:2" in result.stderr
