from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from ingest.items import Item, ItemError, image_bytes, read_manifest
from ingest.pipeline import merge_max
from lexlip_es.sparse import SparseVector


def test_jsonl_csv_and_folder_manifests(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"x")
    (tmp_path / "img" / "notes.txt").write_text("skip me")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"id": "a", "image": "img/a.png", "captions": ["red"], "metadata": {"shop": "eu"}})
        + "\n\n{broken\n"
        + json.dumps({"url": "https://example.org/b.png"})
        + "\n"
    )
    rows = list(read_manifest(tmp_path / "m.jsonl"))
    assert rows[0]["image"] == str(tmp_path / "img" / "a.png") and rows[0]["metadata"] == {"shop": "eu"}
    assert rows[1] == {"id": "m.jsonl:3", "error": rows[1]["error"]} and "not a JSON object" in rows[1]["error"]
    assert rows[2]["id"] == rows[2]["image"] == "https://example.org/b.png"

    (tmp_path / "m.csv").write_text("id,image,captions,shop\na,img/a.png,red circle|blue star,eu\n")
    (row,) = read_manifest(tmp_path / "m.csv")
    assert row == {
        "id": "a",
        "image": str(tmp_path / "img" / "a.png"),
        "captions": ["red circle", "blue star"],
        "metadata": {"shop": "eu"},
    }
    assert [r["id"] for r in read_manifest(tmp_path / "img")] == ["a.png"]


def test_items_validate_alone() -> None:
    item = Item.from_message({"id": "a", "image": "x.png", "captions": "one caption"})
    assert item.captions == ("one caption",)
    assert Item.from_message(item.to_message()) == item
    for bad, message in [
        ({"image": "x.png"}, "no usable id"),
        ({"id": "a"}, "names no image"),
        ({"id": "a", "image": "x", "captions": [1]}, "captions must be strings"),
        ({"id": "a", "image": "x", "metadata": [1]}, "metadata must be an object"),
    ]:
        with pytest.raises(ItemError, match=message):
            Item.from_message(bad)


def test_image_bytes_limits(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"12345")
    assert image_bytes(Item("a", str(tmp_path / "a.png")), 10, None) == b"12345"
    assert image_bytes(Item("a", image_b64=base64.b64encode(b"xyz").decode()), 10, None) == b"xyz"
    assert image_bytes(Item("a", "https://h/x.png"), 10, lambda url: b"fetched") == b"fetched"
    with pytest.raises(ItemError, match="over the 4-byte limit"):
        image_bytes(Item("a", str(tmp_path / "a.png")), 4, None)
    with pytest.raises(ItemError, match="no such file"):
        image_bytes(Item("a", str(tmp_path / "b.png")), 10, None)
    with pytest.raises(ItemError, match="not valid base64"):
        image_bytes(Item("a", image_b64="***"), 10, None)
    with pytest.raises(ItemError, match="empty"):
        image_bytes(Item("a", "https://h/x.png"), 10, lambda url: b"")


def test_caption_lexicons_merge_by_maximum() -> None:
    a = SparseVector(np.array([1, 5]), np.array([3, 2], np.int32))
    b = SparseVector(np.array([2, 5]), np.array([7, 9], np.int32))
    merged = merge_max([a, b, SparseVector.empty()])
    assert merged.indices.tolist() == [1, 2, 5] and merged.values.tolist() == [3, 7, 9]
    assert merge_max([]).nnz == 0
