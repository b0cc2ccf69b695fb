"""The dense twin: the same backbones, [CLS] features projected to `dense_dim` and L2-normalised ("Dense (ours)")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lexlip_es.model.config import LexLIPConfig
from lexlip_es.model.packed import packed_bert
from lexlip_es.model.towers import build_text_encoder, build_visual, visual_width


class DenseTwinModel(nn.Module):
    def __init__(
        self,
        config: LexLIPConfig,
        vocab_size: int,
        text_weights: str | None = None,
        vision_weights: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.text: Any = build_text_encoder(config.text, vocab_size, text_weights, name=config.name)
        self.visual: Any = build_visual(config.vision, vision_weights, cache_dir, name=config.name)
        self.text_proj = nn.Linear(self.text.config.hidden_size, config.dense_dim)
        self.visual_proj = nn.Linear(visual_width(self.visual), config.dense_dim)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, packed: bool = False) -> torch.Tensor:
        """The [CLS] token's features, projected and L2-normalised; `packed`: the encoder runs over the real tokens
        only (model/packed.py, training's padding-free path: the same numbers)."""
        if packed:
            tokens, packing = packed_bert(self.text, input_ids, attention_mask)
            hidden = packing.pad(tokens)[:, 0]
        else:
            hidden = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
        return F.normalize(self.text_proj(hidden), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """A ViT's [CLS] token; a CNN's feature map (B x C x H x W) averaged over its cells."""
        features = self.visual.forward_features(pixel_values)
        pooled = features.mean(dim=(2, 3)) if features.ndim == 4 else features[:, 0]
        return F.normalize(self.visual_proj(pooled), dim=-1)
