"""The shapes recipe's settings and the cache key its checkpoints are stored under."""

from __future__ import annotations

from trainer.recipes import SHAPES_TOP_K_IMAGE, SHAPES_TOP_K_TEXT, ShapesRecipe


def test_recipe_settings_are_the_measured_ones() -> None:
    recipe = ShapesRecipe()
    assert recipe.dense_settings()["steps"] == 4500 and recipe.dense_settings()["kind"] == "dense"
    sparse = recipe.sparse_settings()
    assert sparse["steps"] == 1700 and "kind" not in sparse
    assert sparse["losses"] == {"train_top_k_text": SHAPES_TOP_K_TEXT, "train_top_k_image": SHAPES_TOP_K_IMAGE}
    assert recipe.key() == "shapes-d4500-s1700-b64-lr0.001"
    assert ShapesRecipe(dense_steps=10).key() != recipe.key()


def test_extra_settings_change_the_cache_key() -> None:
    base = ShapesRecipe()
    tweaked = ShapesRecipe(extra={"warmup": 0.1})
    assert tweaked.key().startswith(base.key() + "-x") and tweaked.key() != base.key()
    assert tweaked.key() == ShapesRecipe(extra={"warmup": 0.1}).key()
    assert ShapesRecipe(extra={"warmup": 0.2}).key() != tweaked.key()
