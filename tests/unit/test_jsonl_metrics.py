"""The one JSON Lines reader and writer, and the one recall@K."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexlip_es.jsonl import read_jsonl, write_jsonl
from lexlip_es.metrics import MISSING, first_relevant, recall_at, recall_of_lists


@pytest.mark.parametrize("name", ["v.jsonl", "v.jsonl.gz"])
def test_jsonl_round_trip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    records = [{"id": "a", "vector": {"café": 3}}, {"id": "b", "vector": {"u.s": 1}}]
    assert write_jsonl(tmp_path / name, records) == 2
    assert [r for _, r in read_jsonl(tmp_path / name)] == records
    assert not list(tmp_path.glob("*.tmp"))
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"


def test_jsonl_skips_blank_lines_and_names_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": 2}\n{oops\n', encoding="utf-8")
    reader = read_jsonl(path)
    assert next(reader) == (1, {"a": 1})
    assert next(reader) == (4, {"b": 2})
    with pytest.raises(ValueError, match=r"bad.jsonl:5: not JSON"):
        next(reader)


def test_recall_from_ranks_and_from_ranked_lists() -> None:
    assert recall_at([0, 1, 4, 9, MISSING], ks=(1, 5, 10)) == {"R@1": 0.2, "R@5": 0.6, "R@10": 0.8}
    assert first_relevant(["x", "y", "a"], {"a", "b"}) == 2
    assert first_relevant(["x"], {"a"}) == MISSING
    assert recall_of_lists([["a", "b"], ["c", "d"], []], [{"b"}, {"c"}, {"e"}], ks=(1, 2)) == {
        "R@1": pytest.approx(1 / 3),
        "R@2": pytest.approx(2 / 3),
    }
    with pytest.raises(ValueError, match="at least one query"):
        recall_at([])
