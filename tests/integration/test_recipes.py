"""The shapes recipe (what `lexlip demo --data shapes` trains), as a `lexlip train` subprocess, here with a few steps
on a small set: its progress (stage, step, loss, time left) reaches the terminal while it trains, and it ends in a
checkpoint the encoder and the ingest path load."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.encoders.lexlip import LexLIPEncoder
from trainer.data.shapes import generate_shapes
from trainer.recipes import ROOT

SCRIPT = """
import sys
from pathlib import Path
from trainer.recipes import ShapesRecipe, train_recipe
recipe = ShapesRecipe(steps=40, batch_size=8, extra={"log_every": 1})
seconds = train_recipe(Path(sys.argv[1]), Path(sys.argv[2]), recipe)
print(f"trained in {seconds:.1f} s")
"""


def test_the_recipe_shows_its_progress_while_it_trains_into_a_loadable_checkpoint(tmp_path: Path) -> None:
    data = generate_shapes(tmp_path / "data", 64, 8, 8, seed=1, image_size=48)
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(data), str(run)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    seen: list[tuple[bool, str]] = []  # (was the checkpoint written yet?, line)
    checkpoint = run / "sparse" / "final" / "model.safetensors"

    def read() -> None:
        assert process.stderr is not None
        buffer = b""
        while chunk := process.stderr.read1(4096):  # type: ignore[attr-defined]
            buffer += chunk
            *updates, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
            seen.extend((checkpoint.exists(), u.decode(errors="replace")) for u in updates)

    reader = threading.Thread(target=read)
    reader.start()
    out = process.stdout.read().decode()
    assert process.wait(timeout=600) == 0, "\n".join(line for _, line in seen[-20:])
    reader.join()
    progress = [(done, line) for done, line in seen if "stage 1/1 grounded LexLIP" in line and "loss=" in line]
    assert progress, "no progress line with the stage and the loss:\n" + "\n".join(line for _, line in seen[-20:])
    assert any("/40 [" in line and "<" in line for _, line in progress)  # step of steps, elapsed<time left
    assert not progress[0][0]  # it streamed while training, before the checkpoint existed
    assert "trained in" in out
    final = run / "sparse" / "final"
    encoder = LexLIPEncoder.from_pretrained(final)
    assert encoder.model_id == checkpoint_model_id(final)
    assert encoder.config.name == "shapes"
    vector = encoder.encode_texts(["a red circle"], scale=100.0)[0]
    assert vector.nnz <= 64
