"""The shapes recipe that `make demo` trains on a fresh machine: both stages as `lexlip train` subprocesses, here with
a few steps on a small set, ending in a checkpoint the encoder and the ingest path load."""

from __future__ import annotations

from pathlib import Path

from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.encoders.lexlip import LexLIPEncoder
from trainer.data.shapes import generate_shapes
from trainer.recipes import SHAPES_TOP_K_TEXT, ShapesRecipe, train_shapes


def test_shapes_recipe_trains_both_stages_into_a_loadable_checkpoint(tmp_path: Path) -> None:
    data = generate_shapes(tmp_path / "data", 64, 8, 8, seed=1)
    recipe = ShapesRecipe(dense_steps=3, sparse_steps=2, batch_size=8)
    seconds = train_shapes(data, tmp_path / "run", recipe)
    assert set(seconds) == {"dense", "sparse"} and all(s > 0 for s in seconds.values())
    final = tmp_path / "run" / "sparse" / "final"
    encoder = LexLIPEncoder.from_pretrained(final)
    assert encoder.model_id == checkpoint_model_id(final)
    vector = encoder.encode_texts(["a red circle"], scale=100.0, top_k=SHAPES_TOP_K_TEXT)[0]
    assert 0 < len(vector.to_features(encoder.vocab)) <= SHAPES_TOP_K_TEXT
    assert (tmp_path / "run" / "dense" / "final" / "model.safetensors").exists()
