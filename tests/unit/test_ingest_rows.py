"""The producer's row checks: each hostile row fails alone, with a reason naming its line."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from ingest.manifest import Row
from ingest.rows import CheckedRow, RowChecker, RowLimits


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "data"
    base.mkdir()
    (base / "a.png").write_bytes(b"png bytes")
    (base / "b.png").write_bytes(b"other bytes")
    (base / "empty.png").write_bytes(b"")
    (tmp_path / "secret.png").write_bytes(b"outside")
    (base / "link-out.png").symlink_to(tmp_path / "secret.png")
    (base / "link-in.png").symlink_to(base / "a.png")
    os.mkfifo(base / "fifo.png")
    return base


def _check(checker: RowChecker, data: dict[str, Any], line: int = 1) -> CheckedRow:
    return checker.check(Row(line, data))


def test_a_good_row_becomes_a_message_with_its_line_and_fingerprint(root: Path) -> None:
    checker = RowChecker(root)
    row = _check(checker, {"id": "a", "image": "a.png", "captions": " red circle ", "metadata": {"shop": "eu"}}, 7)
    assert row.ok and row.reason is None
    assert row.message is not None
    assert row.message == {
        "id": "a",
        "line": 7,
        "image": str(root / "a.png"),
        "captions": ["red circle"],
        "metadata": {"shop": "eu"},
        "row": row.message["row"],
    }
    assert len(row.message["row"]) == 24 and row.size > 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"id": "x", "image": "a.png", "captions": 5}, "captions must be a string or a list of strings, not int 5"),
        ({"id": "x", "image": "a.png", "captions": ["ok", "\ud800"]}, "caption 2 is not valid Unicode"),
        ({"id": "x", "image": "a.png", "captions": ["c" * 2001]}, "caption 1 is 2,001 characters"),
        ({"id": "x", "image": "a.png", "captions": ["c"] * 65}, "65 captions, over the limit of 64"),
        ({"id": "x", "image": "a.png", "metadata": {"image": {"a": 1}}}, "metadata field 'image' is reserved"),
        ({"id": "x", "image": "a.png", "metadata": {"captions": "x"}}, "metadata field 'captions' is reserved"),
        ({"id": "x", "image": "a.png", "metadata": {"lexlip_model": "x"}}, "'lexlip_model' is reserved"),
        ({"id": "x", "image": "a.png", "metadata": {"_id": "x"}}, "'_id' is reserved"),
        ({"id": "x", "image": "a.png", "metadata": [1]}, "metadata must be an object"),
        ({"id": True, "image": "a.png"}, "the id must be a string or an integer, not bool"),
        ({"id": ["x"], "image": "a.png"}, "the id must be a string or an integer, not list"),
        ({"id": "a\nb", "image": "a.png"}, "holds control characters"),
        ({"id": "\ud800", "image": "a.png"}, "not valid Unicode"),
        ({"id": "x" * 513, "image": "a.png"}, "over the 512-byte limit"),
        ({"image_b64": "aGVsbG8="}, "the row has no id"),
        ({"id": "x"}, "names no image"),
        ({"id": "x", "image": "a.png", "url": "https://h/a.png"}, "more than one image (image, url)"),
        ({"id": "x", "image": 5}, "image must be a string, not int"),
        ({"id": "x", "image": "missing.png"}, "no such file missing.png"),
        ({"id": "x", "image": "empty.png"}, "empty.png is empty (0 bytes)"),
        ({"id": "x", "image": "fifo.png"}, "fifo.png is not a regular file"),
        ({"id": "x", "image": "."}, ". is not a regular file"),
        ({"id": "x", "image": "../secret.png"}, "../secret.png lies outside the image root"),
        ({"id": "x", "image": "/etc/hostname"}, "/etc/hostname lies outside the image root"),
        ({"id": "x", "image": "link-out.png"}, "link-out.png lies outside the image root"),
        ({"id": "x", "image": "file:///etc/passwd"}, "only http and https URLs are fetched"),
        ({"id": "x", "image_b64": "***"}, "image_b64 is not valid base64"),
    ],
)
def test_hostile_rows_fail_alone_with_their_line(root: Path, data: dict[str, Any], reason: str) -> None:
    row = _check(RowChecker(root), data, 12)
    assert not row.ok and row.message is None
    assert row.reason is not None and row.reason.startswith("line 12: ")
    assert reason in row.reason


def test_symlinks_inside_the_root_and_integer_ids_pass(root: Path) -> None:
    row = _check(RowChecker(root), {"id": 17, "image": "link-in.png"})
    assert row.ok and row.id == "17" and row.message is not None and row.message["image"] == str(root / "a.png")


def test_the_first_row_with_an_id_wins_and_later_ones_fail_as_duplicates(root: Path) -> None:
    checker = RowChecker(root)
    assert not _check(checker, {"id": "a", "image": "missing.png"}, 1).ok  # a failed row claims nothing
    assert _check(checker, {"id": "a", "image": "a.png"}, 2).ok
    again = _check(checker, {"id": "a", "image": "b.png"}, 3)
    assert again.reason == "line 3: duplicate id 'a' (first on line 2; the first wins)"
    no_id = [_check(checker, {"image": "b.png"}, n) for n in (4, 5)]  # ids default to the image as written
    assert no_id[0].ok and no_id[0].id == "b.png"
    assert no_id[1].reason == "line 5: duplicate id 'b.png' (first on line 4; the first wins)"


def test_sizes_are_checked_before_anything_reaches_the_broker(root: Path) -> None:
    limits = RowLimits(max_row_bytes=400, max_image_bytes=8)
    checker = RowChecker(root, limits)
    assert "is 9 bytes, over the 8-byte limit" in str(_check(checker, {"id": "x", "image": "a.png"}).reason)
    inline = base64.b64encode(b"z" * 30).decode()
    assert "image_b64 holds about 30 bytes, over the 8-byte limit" in str(
        _check(checker, {"id": "y", "image_b64": inline}).reason
    )
    big = _check(RowChecker(root, RowLimits(max_row_bytes=400)), {"id": "z", "image": "a.png", "captions": ["w" * 500]})
    assert "over the 400-byte limit for a message" in str(big.reason)


def test_the_fingerprint_follows_the_content_not_the_line(root: Path) -> None:
    def fp(data: dict[str, Any], line: int = 1) -> str:
        row = _check(RowChecker(root), data, line)
        assert row.message is not None
        return str(row.message["row"])

    base = fp({"id": "a", "image": "a.png", "captions": ["red"]})
    assert fp({"id": "a", "image": "a.png", "captions": ["red"]}, line=9) == base
    assert fp({"id": "a", "image": "a.png", "captions": ["blue"]}) != base
    assert fp({"id": "a", "image": "b.png", "captions": ["red"]}) != base
    (root / "a.png").write_bytes(b"changed bytes, longer")
    assert fp({"id": "a", "image": "a.png", "captions": ["red"]}) != base


def test_an_unreadable_row_keeps_its_reason_and_an_id_prefix_applies(root: Path) -> None:
    checker = RowChecker(root, id_prefix="shop1/")
    assert checker.check(Row(4, error="line 4 is not valid UTF-8")).reason == "line 4 is not valid UTF-8"
    assert _check(checker, {"id": "a", "image": "a.png"}).id == "shop1/a"
