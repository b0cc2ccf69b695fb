"""The vision config's `pool`: the vocabulary head reads every position ("cells", the paper's max-pool) or their
mean (one global position, as the dense twin pools); and its `proj`: a linear map or an MLP to the head's width."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lexlip_es.model import create_model, get_config


def test_mean_pool_reads_one_position_the_mean_of_the_cells() -> None:
    config = get_config("tiny")
    cells = create_model(config, seed=0)
    mean = create_model(config.with_(vision=replace(config.vision, pool="mean")), seed=0)
    size = config.vision.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        every, pooled = cells.image_hidden(pixels), mean.image_hidden(pixels)
        lexicon = mean.encode_image(pixels)
    assert every.shape[1] > 1 and pooled.shape == (2, 1, every.shape[2])
    assert torch.allclose(pooled[:, 0], every.mean(dim=1), atol=1e-5)
    assert lexicon.shape == (2, mean.vocab_mask.numel())


def test_an_mlp_projection_reads_the_pooled_position_and_trains() -> None:
    config = get_config("tiny")
    model = create_model(config.with_(vision=replace(config.vision, pool="mean", proj="mlp")), seed=0)
    assert isinstance(model.visual_proj, torch.nn.Sequential)
    size = config.vision.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    hidden = model.image_hidden(pixels)
    assert hidden.shape == (2, 1, model.text.config.hidden_size)
    hidden.sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.visual_proj.parameters())


@pytest.mark.parametrize(("field", "value"), [("pool", "max"), ("proj", "conv")])
def test_unknown_pool_or_projection_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        replace(get_config("tiny").vision, **{field: value})
