"""`lexlip train --recipe`: a measured recipe on pictures of one's own, end to end in real processes (no engine
needed): the data checked and split, the recipe and its dense twin trained, a report on the test split; bad data
stopped with one line naming the record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.data.datasets import load_karpathy
from trainer.data.shapes import generate_shapes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """300 generated pictures with their captions, as manifest rows without splits."""
    data = generate_shapes(tmp_path_factory.mktemp("shapes"), 300, 0, 0, seed=5)
    return [{"image": str(p.image), "captions": list(p.captions)} for p in load_karpathy(data, "train")]


def lexlip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lexlip_app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)


def write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_recipe_trains_on_a_manifest_without_splits_and_reports_beside_its_twin(
    pictures: list[dict[str, object]], tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "mine.jsonl", pictures)
    out = tmp_path / "run"
    result = lexlip("train", "--recipe", "shapes", "--data", str(manifest), "--out", str(out), "--steps", "20",
                    "--with-twin")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no splits in the data: split by picture with seed 0: 240 train, 30 val, 30 test" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| LexLIP (shapes recipe) |") and rows[2].startswith("| dense twin (same loop seconds) |")
    lexlip_cells = rows[1].split("|")[2:-1]
    assert len(lexlip_cells) == 10 and all(float(c) >= 0.0 for c in lexlip_cells)
    assert rows[2].split("|")[8].strip() == "-"  # the twin has no lexicon to ground
    assert "test split: 30 pictures" in result.stdout
    assert (out / "sparse" / "final" / "model.safetensors").exists() and (out / "dense" / "final").is_dir()
    splits = {r["split"] for r in json.loads((out / "data" / "dataset.json").read_text())["images"]}
    assert splits == {"train", "val", "test"}
    assert "stage 1/1 grounded LexLIP (shapes)" in result.stderr  # the progress bar


def test_a_folder_with_a_captions_file_is_read(pictures: list[dict[str, object]], tmp_path: Path) -> None:
    from trainer.data.own import read_records

    folder = tmp_path / "folder"
    folder.mkdir()
    lines = []
    for i, row in enumerate(pictures[:5]):
        name = f"p{i}.png"
        (folder / name).write_bytes(Path(str(row["image"])).read_bytes())
        lines += [f"{name}\t{caption}" for caption in row["captions"]]  # type: ignore[attr-defined]
    (folder / "captions.txt").write_text("\n".join(lines) + "\n")
    records = read_records(folder)
    assert [r.image.name for r in records] == [f"p{i}.png" for i in range(5)]
    assert list(records[0].captions) == list(pictures[0]["captions"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no captions", "mine.jsonl line 3: no captions"),
        ("unreadable", "mine.jsonl line 2: not a readable picture"),
        ("no test split", "the data's test split has no pictures"),
        ("folder without captions", "a folder of pictures needs captions.txt"),
    ],
)
def test_bad_data_stops_with_one_line_naming_the_record(
    pictures: list[dict[str, object]], tmp_path: Path, case: str, message: str
) -> None:
    rows = [dict(r) for r in pictures[:10]]
    data: Path = tmp_path / "mine.jsonl"
    if case == "no captions":
        rows[2]["captions"] = []
    elif case == "unreadable":
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        rows[1]["image"] = str(broken)
    elif case == "no test split":
        for i, row in enumerate(rows):
            row["split"] = "train" if i < 8 else "val"
    if case == "folder without captions":
        data = tmp_path / "pictures"
        data.mkdir()
    else:
        write_manifest(data, rows)
    result = lexlip("train", "--recipe", "shapes", "--data", str(data), "--out", str(tmp_path / "run"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "sparse").exists()
