"""The screened text vocabulary head (model/screen.py) gives `sparse_pool`'s numbers: every column float32 keeps
positive is kept, however close to zero, and the kept ones are float32's own."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.model.lexlip import sparse_pool
from lexlip_es.model.screen import Screen


class Head(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.decoder = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.decoder.weight.data = weight
        self.bias = nn.Parameter(bias)


def test_columns_just_above_zero_survive_the_screen() -> None:
    generator = torch.Generator().manual_seed(0)
    tokens, hidden, vocab = 40, 64, 3000
    features = torch.randn(tokens, hidden, generator=generator) * 3
    weight = torch.randn(vocab, hidden, generator=generator)
    bias = torch.full((vocab,), -30.0)
    # 200 columns whose best token's exact logit is a hair above zero, 200 a hair below: bfloat16 cannot tell them
    # apart, the float32 recomputation must.
    picked = torch.arange(0, 400)
    best = (features @ weight[picked].T).amax(dim=0)
    bias[picked] = -best + torch.where(picked < 200, 1e-4, -1e-4)
    head = Head(weight, bias)
    rows = torch.arange(tokens) // 10  # four texts of ten tokens
    with torch.no_grad():
        screened = Screen(head).pool(features, rows, 4)
        logits = (features @ weight.T + bias).reshape(4, 10, vocab)
        plain = sparse_pool(logits, None, torch.ones(vocab))
    assert torch.count_nonzero(plain[:, :200].amax(dim=0)) == 200 and plain[:, 200:400].max() == 0
    torch.testing.assert_close(screened, plain, atol=1e-6, rtol=1e-5)
    assert torch.equal(screened > 0, plain > 0)


def test_a_changed_head_gets_a_new_screen() -> None:
    head = Head(torch.randn(50, 8), torch.zeros(50))
    screen = Screen(head)
    assert screen.fresh(head)
    with torch.no_grad():
        head.decoder.weight.add_(1.0)
    assert not screen.fresh(head) and not screen.fresh(Head(torch.randn(50, 8), torch.zeros(50)))


def test_screened_encoder_gives_the_plain_encoders_lexicons() -> None:
    torch.set_num_threads(2)
    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    texts = ["a large red circle at the top left", "two small blue stars", "a photo of a dog", "x", "red " * 20]
    encoder.screen_texts = False
    plain = np.stack(list(encoder._text_outputs(texts)))
    encoder.screen_texts = True
    screened = np.stack(list(encoder._text_outputs(texts)))
    assert np.array_equal(plain > 0, screened > 0)
    np.testing.assert_allclose(screened, plain, atol=1e-6, rtol=1e-5)
