"""`lexlip demo` pieces that need no services: the held-out manifest and the early port check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lexlip_app.demo import DemoOptions, check_port, held_out
from lexlip_es.errors import LexlipError
from trainer.data.shapes import generate_shapes


def test_held_out_rows_are_the_test_split_with_paths_and_all_captions(tmp_path: Path) -> None:
    rows = held_out(generate_shapes(tmp_path, 3, 1, 2, seed=4))
    assert [r["id"] for r in rows] == ["shapes-0000004", "shapes-0000005"]
    for row in rows:
        assert Path(row["image"]).is_file() and len(row["captions"]) == 5


def test_manifest_rows_carry_their_split_so_recall_can_keep_to_the_test_split(tmp_path: Path) -> None:
    from lexlip_app.demo import TEST_ONLY, manifest_rows

    data = generate_shapes(tmp_path, 3, 1, 2, seed=4)
    rows = manifest_rows(data, "shapes", ("train", "val", "test"))
    assert [r["metadata"]["split"] for r in rows] == ["train"] * 3 + ["val"] + ["test"] * 2
    assert [r for r in rows if r["metadata"]["split"] == "test"] == held_out(data)
    assert TEST_ONLY == ({"term": {"split.keyword": "test"}},)


def test_a_mixture_s_rows_are_named_by_their_part_and_recall_runs_part_by_part(tmp_path: Path) -> None:
    from lexlip_app.demo import TEST_ONLY, RecallPart, manifest_rows, recall_parts
    from trainer.data.mixture import write_mixture

    parts = [(name, generate_shapes(tmp_path / name, 2, 1, n, seed=n)) for name, n in (("small", 1), ("large", 2))]
    rows = manifest_rows(write_mixture(tmp_path / "mix", "mix", parts), "mix", ("train", "val", "test"))
    test_ids = ["small-0000003", "large-0000007", "large-0000008"]
    assert [r["id"] for r in rows if r["metadata"]["split"] == "test"] == test_ids
    assert all(".." not in r["image"] and Path(r["image"]).is_file() for r in rows)
    measured = recall_parts(rows)
    assert [(part.label, [r["id"] for r in part.rows]) for part in measured] == [
        ("large ", ["large-0000007", "large-0000008"]),
        ("small ", ["small-0000003"]),
    ]
    assert measured[0].filters == (*TEST_ONLY, {"term": {"dataset.keyword": "large"}})
    plain = manifest_rows(parts[0][1], "small", ("train", "val", "test"))
    assert recall_parts(plain) == [RecallPart("", [r for r in plain if r["metadata"]["split"] == "test"], TEST_ONLY)]
    # an index of the test split alone needs no filter
    assert recall_parts(plain[-1:]) == [RecallPart("", plain[-1:], ())]


def test_a_taken_port_fails_before_the_long_steps() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LexlipError, match=f"127.0.0.1:{port}.*LEXLIP_DEMO_PORT"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", 0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"workers": 0}, "at least one Celery worker"),
        ({"serve_seconds": -1}, "--serve-seconds must be 0 or more"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"data": "coco"}, "--data must be one of"),
    ],
)
def test_demo_options_are_checked_before_anything_starts(options: dict[str, float], message: str) -> None:
    with pytest.raises(LexlipError, match=message):
        DemoOptions(**options)  # type: ignore[arg-type]


def test_each_demo_data_set_has_its_own_recipe_and_example_queries() -> None:
    from lexlip_app.demo import DATASETS

    assert DemoOptions().data == "photos"  # photographs by default
    assert DATASETS["emoji"].splits == ("train", "val", "test") and DATASETS["shapes"].splits == ("test",)
    recipes = {name: data.recipe() for name, data in DATASETS.items()}
    assert recipes["emoji"].model == "emoji" and recipes["shapes"].model == "shapes"
    assert recipes["photos"].model == "photos" and type(recipes["photos"]).max_per_caption is None
    assert len({recipe.key() for recipe in recipes.values()}) == 3
    assert {"tiger", "apple", "guitar", "bicycle"} <= set(DATASETS["photos"].examples)
    assert all(data.examples for data in DATASETS.values())


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(LexlipError, match="between 0 and 65535"):
        check_port("127.0.0.1", 70000)
