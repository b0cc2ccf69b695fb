from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest

from ingest.items import Item, ItemError, image_bytes
from lexlip_es.documents import merge_max
from lexlip_es.sparse import SparseVector


def test_items_validate_alone() -> None:
    item = Item.from_message({"id": "a", "image": "x.png", "captions": "one caption", "line": 4, "row": "ab"})
    assert item.captions == ("one caption",) and item.line == 4 and item.where == "line 4: "
    assert Item.from_message(item.to_message()) == item
    for bad, message in [
        ({"image": "x.png"}, "no usable id"),
        ({"id": "a"}, "names no image"),
        ({"id": "a", "image": "x", "captions": [1]}, "captions must be strings"),
        ({"id": "a", "image": "x", "captions": 5}, "captions must be strings"),
        ({"id": "a", "image": "x", "metadata": [1]}, "metadata must be an object"),
        ({"id": "a", "image": {"x": 1}}, "names no image"),
    ]:
        with pytest.raises(ItemError, match=message):
            Item.from_message(bad)


def test_image_bytes_limits(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"12345")
    assert image_bytes(Item("a", str(tmp_path / "a.png")), 10, _no_fetch) == b"12345"
    assert image_bytes(Item("a", image_b64=base64.b64encode(b"xyz").decode()), 10, _no_fetch) == b"xyz"
    assert image_bytes(Item("a", "https://h/x.png"), 10, lambda url: b"fetched") == b"fetched"
    with pytest.raises(ItemError, match="over the 4-byte limit"):
        image_bytes(Item("a", str(tmp_path / "a.png")), 4, _no_fetch)
    with pytest.raises(ItemError, match="no such file"):
        image_bytes(Item("a", str(tmp_path / "b.png")), 10, _no_fetch)
    with pytest.raises(ItemError, match="not valid base64"):
        image_bytes(Item("a", image_b64="***"), 10, _no_fetch)
    with pytest.raises(ItemError, match="empty"):
        image_bytes(Item("a", "https://h/x.png"), 10, lambda url: b"")


def test_workers_read_regular_files_only_and_never_follow_a_final_symlink(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"12345")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ItemError, match="is a symlink"):
        image_bytes(Item("a", str(tmp_path / "link.png"), line=3), 10, _no_fetch)
    with pytest.raises(ItemError, match=r"line 3: .*not a regular file"):
        image_bytes(Item("a", str(tmp_path / "pipe.png"), line=3), 10, _no_fetch)  # and does not block
    with pytest.raises(ItemError, match="not a regular file"):
        image_bytes(Item("a", str(tmp_path)), 10, _no_fetch)


def test_caption_lexicons_merge_by_maximum() -> None:
    a = SparseVector(np.array([1, 5]), np.array([3, 2], np.int32))
    b = SparseVector(np.array([2, 5]), np.array([7, 9], np.int32))
    merged = merge_max([a, b, SparseVector.empty()])
    assert merged.indices.tolist() == [1, 2, 5] and merged.values.tolist() == [3, 7, 9]
    assert merge_max([]).nnz == 0


def _no_fetch(url: str) -> bytes:
    raise AssertionError(f"fetched {url}")
