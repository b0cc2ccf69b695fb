"""`lexlip demo` pieces that need no services: the held-out manifest and the early port check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lexlip_es.demo import check_port, held_out
from lexlip_es.errors import LexlipError
from trainer.data.shapes import generate_shapes


def test_held_out_rows_are_the_test_split_with_paths_and_all_captions(tmp_path: Path) -> None:
    rows = held_out(generate_shapes(tmp_path, 3, 1, 2, seed=4))
    assert [r["id"] for r in rows] == ["shapes-0000004", "shapes-0000005"]
    for row in rows:
        assert Path(row["image"]).is_file() and len(row["captions"]) == 5


def test_a_taken_port_fails_before_the_long_steps() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LexlipError, match=f"127.0.0.1:{port}.*LEXLIP_DEMO_PORT"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", 0)
