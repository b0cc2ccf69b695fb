"""LexLIP models (torch). `create_model(name_or_path)` builds a registered size, a JSON config or a checkpoint's config.

Importing this package imports torch; `lexlip_es` itself does not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lexlip_es.model.config import LexLIPConfig, get_config, list_models, resolve_source
from lexlip_es.model.dense import DenseTwinModel
from lexlip_es.model.lexlip import LexLIPModel, sparse_pool
from lexlip_es.tokenizer import TextTokenizer

__all__ = [
    "DenseTwinModel",
    "LexLIPConfig",
    "LexLIPModel",
    "create_model",
    "create_tokenizer",
    "get_config",
    "list_models",
    "sparse_pool",
]


def create_tokenizer(config: LexLIPConfig, relative_to: Path | None = None) -> TextTokenizer:
    return TextTokenizer(resolve_source(config.tokenizer, relative_to), config.text.max_length)


def create_model(
    name_or_path: str | Path | LexLIPConfig,
    *,
    kind: str | None = None,
    seed: int | None = 0,
    text_weights: str | None = None,
    vision_weights: str | None = None,
    tokenizer: TextTokenizer | None = None,
) -> nn.Module:
    """Build a LexLIP model (or its dense twin with kind="dense") with seeded random init where no weights are given."""
    config = name_or_path if isinstance(name_or_path, LexLIPConfig) else get_config(name_or_path)
    if kind is not None:
        config = config.with_(kind=kind)
    tokenizer = tokenizer or create_tokenizer(config)
    if seed is not None:
        torch.manual_seed(seed)
    if config.kind == "dense":
        return DenseTwinModel(config, len(tokenizer.vocab), text_weights, vision_weights)
    return LexLIPModel(config, len(tokenizer.vocab), tokenizer.vocab.special_ids(), text_weights, vision_weights)
