"""LexLIP: both towers end in LM heads over the text vocabulary; sparse vectors are max-pooled log-saturated logits."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lexlip_es.model.config import LexLIPConfig
from lexlip_es.model.towers import build_text_mlm, build_visual, visual_width


def sparse_pool(logits: torch.Tensor, mask: torch.Tensor | None, vocab_mask: torch.Tensor) -> torch.Tensor:
    """p = log(1 + max over positions of relu(logits)); masked positions (padding) never win the max;
    ids where `vocab_mask` is 0 (special tokens) are zeroed. logits: B x L x V, mask: B x L, result: B x V."""
    activated = torch.relu(logits)
    if mask is not None:
        activated = activated * mask.unsqueeze(-1).to(activated.dtype)
    return torch.log1p(activated.amax(dim=1)) * vocab_mask.to(activated.dtype)


class LexLIPModel(nn.Module):
    def __init__(
        self,
        config: LexLIPConfig,
        vocab_size: int,
        special_ids: Sequence[int],
        text_weights: str | None = None,
        vision_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.text: Any = build_text_mlm(config.text, vocab_size, text_weights)
        self.visual: Any = build_visual(config.vision, vision_weights)
        hidden = self.text.config.hidden_size
        width = visual_width(self.visual)
        self.visual_proj: Any = nn.Identity() if width == hidden else nn.Linear(width, hidden)
        # The visual LM head starts as a copy of the text MLM head (its own parameters, not tied).
        self.visual_head: Any = copy.deepcopy(self.text.cls.predictions)
        self.visual_head.decoder.weight = nn.Parameter(self.text.cls.predictions.decoder.weight.detach().clone())
        vocab_mask = torch.ones(vocab_size)
        vocab_mask[list(special_ids)] = 0.0
        self.vocab_mask: torch.Tensor
        self.register_buffer("vocab_mask", vocab_mask, persistent=False)

    def text_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids=input_ids, attention_mask=attention_mask).logits  # type: ignore[no-any-return]

    def image_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.visual.forward_features(pixel_values)  # B x positions x width
        return self.visual_head(self.visual_proj(tokens))  # type: ignore[no-any-return]

    def sparse_from_logits(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return sparse_pool(logits, mask, self.vocab_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return sparse_pool(self.text_logits(input_ids, attention_mask), attention_mask, self.vocab_mask)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return sparse_pool(self.image_logits(pixel_values), None, self.vocab_mask)
