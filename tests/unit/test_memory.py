"""The image memory (cross-batch negatives for the text-to-image term): what it stores, when its term starts, which
side it trains, and the same term on the dense twin."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.model import create_model
from trainer.data.shapes import generate_shapes
from trainer.memory import ImageMemory, memory_cross_entropy
from trainer.objectives import DenseObjective, LossConfig, Pretrainer
from trainer.vocabulary import LexiconTargets

from .test_grounding import _grounded_batch, _grounded_pretrainer


def unit_rows(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_the_memory_keeps_each_images_latest_vector_and_hands_out_the_others() -> None:
    memory = ImageMemory()
    assert len(memory) == 0 and memory.others(torch.tensor([0])).shape[0] == 0
    memory.store(torch.tensor([0, 2]), unit_rows([1, 0], [0, 1]))
    assert len(memory) == 2 and not memory.holds(torch.tensor([1, 3]))  # image 1 never stored, 3 beyond the rows
    assert memory.holds(torch.tensor([1, 2]))
    assert torch.equal(memory.others(torch.tensor([0])), unit_rows([0, 1]))  # image 1's empty row is not handed out
    memory.store(torch.tensor([5]), unit_rows([1, 1]))  # grows to image 5
    memory.store(torch.tensor([2]), unit_rows([1, 0]))  # image 2's latest vector replaces the old one
    assert len(memory) == 3
    assert torch.allclose(memory.others(torch.tensor([0])), unit_rows([1, 0], [1, 1]))


def test_the_memory_term_waits_for_the_second_epoch_then_ranks_each_caption_among_every_image() -> None:
    memory, t = ImageMemory(), 0.1
    images, texts = unit_rows([1, 0, 0], [0, 1, 0]), unit_rows([1, 0.1, 0], [0, 1, 0.1])
    batch = images @ texts.T
    assert memory_cross_entropy(memory, batch, images, texts, torch.tensor([0, 1]), t) is None  # first epoch
    assert len(memory) == 2  # ... but the batch's images were stored
    memory.store(torch.tensor([2, 3]), unit_rows([0.9, 0.1, 0], [0, 0, 1]))
    got = memory_cross_entropy(memory, batch, images, texts, torch.tensor([0, 1]), t)
    keys = unit_rows([0.9, 0.1, 0], [0, 0, 1])  # images 2 and 3 (0 and 1 are the batch's own)
    logits = torch.cat([batch.T, texts @ keys.T], dim=1) / t
    assert got is not None and torch.isclose(got, F.cross_entropy(logits, torch.arange(2)))
    in_batch = F.cross_entropy(batch.T / t, torch.arange(2))
    assert float(got) > float(in_batch)  # image 2, close to caption 0, is now a negative it must beat


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), n_train=32, n_val=4, n_test=8, seed=5, image_size=48)


@pytest.mark.parametrize("memory_images", ["all", "words", "none"])
def test_lexlips_memory_term_trains_the_caption_side_and_the_images_only_when_asked(
    shapes: Path, memory_images: str
) -> None:
    module, encoder = _grounded_pretrainer(image_memory=1.0, memory_images=memory_images)
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    with torch.no_grad():  # every token on: a fresh model's lexicons are empty, and so would the gradient be
        encoder.model.text.cls.predictions.bias.fill_(1.0)
        encoder.model.visual_head.bias.fill_(1.0)
    first, second = torch.arange(0, 4), torch.arange(4, 8)
    with torch.no_grad():  # the first epoch fills the memory: no term yet
        assert "memory" not in module(pixels[:4], ids_[:4], mask[:4], targets=_rows(targets, first), items=first)
        module(pixels[4:], ids_[4:], mask[4:], targets=_rows(targets, second), items=second)
    assert len(module.memory) == 8 and module.memory.rows is not None
    assert module.memory.rows.shape[1] == targets.active  # the active columns only, not the sampled negatives
    out = module(pixels[:4], ids_[:4], mask[:4], targets=_rows(targets, first), items=first)
    assert set(out) >= {"memory"} and torch.isfinite(out["memory"])
    out["memory"].backward()  # the memory term's gradient alone
    model = encoder.model
    assert gradient(model.text.parameters()) > 0
    image_side = [*model.visual.parameters(), *model.visual_head.parameters()]
    assert (gradient(image_side) > 0) is (memory_images != "none")
    if memory_images == "words":  # only the columns of the batch's caption words reach the vocabulary head's bias
        bias = model.visual_head.bias.grad
        assert bias is not None
        words = targets.columns[: targets.active][targets.image_words[:4, : targets.active].amax(0) > 0]
        others = torch.ones_like(bias, dtype=torch.bool)
        others[words] = False
        assert float(bias[words].abs().sum()) > 0 and float(bias[others].abs().sum()) == 0


def test_captions_cut_to_their_own_words_rank_the_memory_with_those_words_only(shapes: Path) -> None:
    module, encoder = _grounded_pretrainer(image_memory=1.0, memory_captions="words")
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    with torch.no_grad():
        encoder.model.text.cls.predictions.bias.fill_(1.0)
        encoder.model.visual_head.bias.fill_(1.0)
        for items in (torch.arange(0, 4), torch.arange(4, 8)):
            module(pixels[items], ids_[items], mask[items], targets=_rows(targets, items), items=items)
    first = torch.arange(0, 4)
    module(pixels[:4], ids_[:4], mask[:4], targets=_rows(targets, first), items=first)["memory"].backward()
    bias = encoder.model.text.cls.predictions.bias.grad
    assert bias is not None
    own = targets.columns[targets.own_words[:4].amax(0) > 0]
    others = torch.ones_like(bias, dtype=torch.bool)
    others[own] = False
    assert float(bias[own].abs().sum()) > 0 and float(bias[others].abs().sum()) == 0  # no expansion is trained
    assert gradient(encoder.model.visual_head.parameters()) > 0  # the images still learn, every column of them


@pytest.mark.parametrize("setting", [{"memory_images": "some"}, {"memory_captions": "queries"}])
def test_an_unknown_memory_mode_is_refused(setting: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        LossConfig(negatives=16, image_memory=1.0, **setting)


def gradient(parameters: Iterable[torch.nn.Parameter]) -> float:
    return sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None)


def _rows(targets: LexiconTargets, rows: torch.Tensor) -> LexiconTargets:
    return replace(
        targets,
        image_words=targets.image_words[rows],
        image_weights=targets.image_weights[rows],
        own_words=targets.own_words[rows],
    )


def test_lexlips_memory_needs_the_active_vocabulary() -> None:
    model = LexLIPEncoder.from_config("tiny", seed=0).model
    with pytest.raises(ValueError, match="active vocabulary"):
        Pretrainer(model, LossConfig(image_memory=1.0), ["[PAD]", "[MASK]"], [0], 10)


def test_the_dense_twin_gets_the_same_memory_term() -> None:
    torch.manual_seed(0)
    model = create_model("tiny", kind="dense")
    pixels, ids_ = torch.randn(4, 3, 32, 32), torch.randint(1000, 2000, (4, 6))
    mask = torch.ones_like(ids_)
    objective = DenseObjective(model, 0.05, image_memory=1.0)
    with torch.no_grad():
        plain = objective(pixels[:2], ids_[:2], mask[:2], items=torch.tensor([0, 1]))
        objective(pixels[2:], ids_[2:], mask[2:], items=torch.tensor([2, 3]))
        second = objective(pixels[:2], ids_[:2], mask[:2], items=torch.tensor([0, 1]))
    assert "memory" not in plain and torch.isclose(plain["loss"], plain["contrastive"])
    assert "memory" in second and torch.isclose(second["loss"], second["contrastive"] + second["memory"])
    assert len(objective.memory) == 4
