"""Manifests as numbered rows: whatever bytes they hold, every row comes out, readable or with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.manifest import ManifestError, Row, read_manifest


def test_jsonl_rows_carry_their_line_numbers_and_bad_lines_their_reasons(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "image": "a.png"}).encode()
    lines = [
        b"\xef\xbb\xbf" + good,  # a byte-order mark on line 1
        b"",
        b"{broken",
        b'{"id": "caf\xe9"}',  # Latin-1, not UTF-8
        b"[1, 2]",
        b'{"id": "' + b"x" * 300 + b'"}',
        good,
    ]
    (tmp_path / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows = list(read_manifest(tmp_path / "m.jsonl", max_row_bytes=200))
    assert [r.line for r in rows] == [1, 3, 4, 5, 6, 7]
    assert rows[0] == Row(1, {"id": "a", "image": "a.png"})
    assert "line 3 is not a JSON object" in str(rows[1].error)
    assert rows[2].error == "line 4 is not valid UTF-8 (byte 0xe9 at column 12)"
    assert rows[3].error == "line 5 is not a JSON object (a list)"
    assert rows[4].error == "line 6 is longer than the 200-byte limit for a row"
    assert rows[5] == Row(7, {"id": "a", "image": "a.png"})


def test_csv_rows_with_a_bom_long_fields_and_bad_bytes(tmp_path: Path) -> None:
    long_field = "y" * 500
    text = (
        b"\xef\xbb\xbfid,image,captions,shop\n"
        b"a,a.png,red circle|blue star,eu\n"
        b'b,b.png,"two\nlines",eu\n'
        b"c,c.png,caf\xe9,eu\n" + f"d,d.png,{long_field},eu\n".encode() + b"e,e.png,only three\n"
        b"f,f.png,fine,eu\n"
    )
    (tmp_path / "m.csv").write_bytes(text)
    rows = list(read_manifest(tmp_path / "m.csv", max_row_bytes=200))
    assert rows[0] == Row(
        2, {"id": "a", "image": "a.png", "captions": ["red circle", "blue star"], "metadata": {"shop": "eu"}}
    )
    assert rows[1].line == 3 and rows[1].data is not None and rows[1].data["captions"] == ["two\nlines"]
    assert rows[2] == Row(5, error="line 5 is not valid UTF-8")
    assert rows[3].line == 6 and "not a usable CSV record" in str(rows[3].error)
    assert rows[4] == Row(7, error="line 7 has 3 fields; the header has 4")
    assert rows[5].line == 8 and rows[5].data is not None and rows[5].data["id"] == "f"


def test_a_csv_without_an_image_column_is_refused_whole(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,picture\na,a.png\n")
    with pytest.raises(ManifestError, match="no `image` or `url` column"):
        list(read_manifest(tmp_path / "m.csv"))


def test_folders_are_walked_in_order_without_following_symlinked_folders(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (root / "b.png").write_bytes(b"x")
    (root / "sub" / "a.JPG").write_bytes(b"x")
    (root / "notes.txt").write_text("skip")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    rows = list(read_manifest(root))
    assert [(r.line, r.data) for r in rows] == [
        (1, {"id": "b.png", "image": "b.png"}),
        (2, {"id": "sub/a.JPG", "image": "sub/a.JPG"}),
    ]


def test_unknown_formats_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match=r"manifests are \.jsonl, \.csv"):
        list(read_manifest(tmp_path / "m.txt"))
    with pytest.raises(ManifestError, match="no such manifest"):
        list(read_manifest(tmp_path / "none.jsonl"))
