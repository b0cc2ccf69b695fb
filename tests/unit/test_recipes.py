"""The shapes recipe's settings, the cache key its checkpoints are stored under, and reuse of a finished run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trainer.loop import TrainConfig
from trainer.recipes import WALL_FILE, ShapesRecipe, finished_seconds, train_stage


def test_recipe_settings_are_the_measured_ones() -> None:
    recipe = ShapesRecipe()
    settings = recipe.settings()
    assert settings["model"] == "shapes" and settings["steps"] == 2000 and settings["batch_size"] == 128
    assert settings["threads"] == 2 and "kind" not in settings
    losses = TrainConfig(**settings).loss_config()  # every setting is one the trainer knows
    assert losses.negatives == 256 and losses.own_tokens == 1.0 and losses.image_weights == 1.0
    assert losses.contrastive and losses.contrastive_weight == 0.3
    assert not (losses.self_mlm or losses.image_mlm or losses.text_mlm or losses.momentum)


def test_the_dense_twin_gets_the_same_data_batch_and_a_time_budget() -> None:
    dense = ShapesRecipe().dense_settings(180.0)
    assert dense["kind"] == "dense" and dense["max_seconds"] == 180.0 and "losses" not in dense
    assert dense["batch_size"] == 128 and dense["model"] == "shapes"
    TrainConfig(**dense).loss_config()


def test_settings_change_the_cache_key() -> None:
    base = ShapesRecipe()
    assert base.key() == ShapesRecipe().key() and base.key().startswith("shapes-grounded-s2000-b128-")
    assert ShapesRecipe(steps=10).key() != base.key()
    tweaked = ShapesRecipe(extra={"losses": {"own_tokens": 0.5}})
    assert tweaked.key() != base.key() and tweaked.settings()["losses"]["own_tokens"] == 0.5
    assert tweaked.settings()["losses"]["negatives"] == 256  # merged, not replaced


def test_the_emoji_recipe_fine_tunes_its_pretrained_towers_gently() -> None:
    from trainer.recipes import EmojiRecipe

    recipe = EmojiRecipe()
    settings = recipe.settings()
    assert settings["model"] == "emoji" and settings["tower_lr"] < settings["lr"]
    assert recipe.key().startswith("emoji-grounded-") and recipe.key() != ShapesRecipe().key()
    assert recipe.dense_settings(60.0)["tower_lr"] == settings["tower_lr"]  # the twin: the same learning rates
    losses = TrainConfig(**settings).loss_config()
    assert losses.distill_weight == 0.5 and losses.dense_weight == 1.0  # the lexicons distil the dense term
    assert losses.image_words == 6.0 and losses.image_weights == 0.0
    assert losses.hub_words == 30.0 and recipe.steps == 430  # shared codes cost their square, over 430 steps
    assert losses.sibling_margin == 0.1 and settings["group_size"] == 2  # siblings in pairs, beaten by 0.1
    assert losses.image_memory == 1.0 and losses.memory_captions == "words"  # every image, by the captions' words
    assert "losses" not in recipe.dense_settings(60.0)  # the twin keeps its plain InfoNCE
    # query term weights are measured after training: not a training setting, so not part of the checkpoint's key
    assert EmojiRecipe.query_weights and not ShapesRecipe.query_weights
    assert "query_weights" not in json.dumps(settings)


def test_tower_lr_puts_the_towers_bodies_in_their_own_group() -> None:
    from lexlip_es.model import create_model
    from trainer.loop import is_tower, parameter_groups
    from trainer.objectives import DenseObjective

    objective = DenseObjective(create_model("tiny", kind="dense"), 0.05)
    assert len(parameter_groups(objective, 1e-3, None)) == 1
    heads, towers = parameter_groups(objective, 1e-3, 1e-5)
    assert heads["lr"] == heads["base_lr"] == 1e-3 and towers["lr"] == towers["base_lr"] == 1e-5
    names = {id(p): n for n, p in objective.named_parameters()}
    assert {names[id(p)].split(".")[1] for p in towers["params"]} == {"text", "visual"}
    assert {names[id(p)].split(".")[1] for p in heads["params"]} == {"text_proj", "visual_proj"}
    assert is_tower("model.text.bert.encoder.layer.0.output.dense.weight")
    assert not is_tower("model.text.cls.predictions.bias") and not is_tower("model.visual_head.decoder.weight")


def test_loop_seconds_read_the_last_metrics_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    from lexlip_es.errors import LexlipError
    from trainer.recipes import loop_seconds

    with pytest.raises(LexlipError, match="no finished training run"):
        loop_seconds(tmp_path)
    rows = [{"step": 8, "elapsed_s": 11.5}, {"step": 16, "elapsed_s": 23.25}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert loop_seconds(tmp_path) == 23.25


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    settings = ShapesRecipe().settings()
    run = tmp_path / "sparse"
    (run / "final").mkdir(parents=True)
    (run / "train-config.json").write_text(json.dumps({"progress": True, **settings}))
    assert finished_seconds(run, settings) is None  # no recorded wall time: not known to have finished
    (run / WALL_FILE).write_text("123.456\n")
    assert finished_seconds(run, settings) == 123.456
    # the progress flag is how it was shown, not what was trained
    (run / "train-config.json").write_text(json.dumps({"progress": False, **settings}))
    assert finished_seconds(run, settings) == 123.456
    assert finished_seconds(run, ShapesRecipe(steps=10).settings()) is None
    assert finished_seconds(run, ShapesRecipe(extra={"seed": 1}).settings()) is None
    shutil.rmtree(run / "final")
    assert finished_seconds(run, settings) is None


def test_a_reused_run_is_not_trained_again(tmp_path: Path) -> None:
    # train_stage would start `lexlip train` (and fail here: no such data) unless it reuses the finished run
    settings = ShapesRecipe().settings()
    run = tmp_path / "sparse"
    (run / "final").mkdir(parents=True)
    (run / "train-config.json").write_text(json.dumps(settings))
    (run / WALL_FILE).write_text("42\n")
    assert train_stage("finetune", tmp_path / "missing.json", run, settings, reuse=True) == 42.0
