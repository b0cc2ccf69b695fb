"""`output_norm`: a model trained on cosines hands out lexicons of one L2 norm, so dot products rank as training did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.model import get_config


def test_lexicons_leave_the_model_at_the_configured_norm() -> None:
    config = get_config("tiny")
    raw = LexLIPEncoder.from_config(config, seed=0)
    with torch.no_grad():  # wake some tokens so the vectors are not empty
        raw.model.text.cls.predictions.bias.fill_(0.5)
        raw.model.visual_head.bias.fill_(0.5)
    scaled = LexLIPEncoder.from_config(config.with_(output_norm=3.0), seed=0)
    scaled.model.load_state_dict(raw.model.state_dict())
    texts = ["a red circle", "a small blue star at the top left"]
    images = [Image.new("RGB", (32, 32), (0, 0, 0)), Image.new("RGB", (32, 32), (200, 40, 40))]
    pairs = (
        (raw.encode_texts(texts), scaled.encode_texts(texts)),
        (raw.encode_images(images), scaled.encode_images(images)),
    )
    for a, b in pairs:
        for before, after in zip(a, b, strict=True):
            assert before.nnz > 0 and np.array_equal(before.indices, after.indices)
            assert np.linalg.norm(after.values) == pytest.approx(3.0, rel=1e-4)
            assert np.allclose(after.values, before.values * 3.0 / np.linalg.norm(before.values), rtol=1e-4)


def test_output_norm_must_be_positive() -> None:
    with pytest.raises(ValueError, match="output_norm must be positive"):
        get_config("tiny").with_(output_norm=0.0)
