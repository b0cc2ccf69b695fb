"""LexLIP models (torch). `create_model(name_or_path)` builds a registered size, a JSON config or a checkpoint's config.

Importing this package imports torch; `lexlip_es` itself does not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lexlip_es.grounding import is_content_token
from lexlip_es.model import efficientnet
from lexlip_es.model.config import LexLIPConfig, WeightsError, get_config, list_models, resolve_source
from lexlip_es.model.dense import DenseTwinModel
from lexlip_es.model.lexlip import LexLIPModel, sparse_pool
from lexlip_es.model.prior import ImageNetPrior, build_table
from lexlip_es.tokenizer import TextTokenizer

__all__ = [
    "DenseTwinModel",
    "LexLIPConfig",
    "LexLIPModel",
    "WeightsError",
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
    text_weights: str | Path | None = None,
    vision_weights: str | Path | None = None,
    tokenizer: TextTokenizer | None = None,
    cache_dir: Path | None = None,
) -> nn.Module:
    """Build a LexLIP model (or its dense twin with kind="dense") with seeded random init where no weights are given.

    `text_weights` / `vision_weights` override the config's sources (LexLIPConfig.with_weights: a transformers folder
    also gives the tokenizer, a timm folder the image mean and std); the model's `config` records them. `cache_dir`
    (Settings.cache_dir) keeps converted weights, e.g. `efficientnet:lite0` as safetensors; without it they are
    converted in memory.
    """
    config = get_config(name_or_path)
    if kind is not None:
        config = config.with_(kind=kind)
    if text_weights is not None or vision_weights is not None:
        config = config.with_weights(text_weights, vision_weights, cache_dir=cache_dir)
    if tokenizer is None:
        tokenizer = create_tokenizer(config)
    elif text_weights is not None and tokenizer.vocab.tokens != create_tokenizer(config).vocab.tokens:
        raise WeightsError(
            f"the tokenizer given ({tokenizer.directory}) is not the one of the text weights ({config.tokenizer}): "
            "build it from the config that with_weights returns"
        )
    if seed is not None:
        torch.manual_seed(seed)
    if config.kind == "dense":
        return DenseTwinModel(config, len(tokenizer.vocab), cache_dir=cache_dir)
    vocab = tokenizer.vocab
    content = [i for i, token in enumerate(vocab.tokens) if is_content_token(token)]
    model = LexLIPModel(config, len(vocab), vocab.special_ids(), content, cache_dir=cache_dir)
    if model.prior is not None and config.vision.weights:  # else (a checkpoint's bare model) its buffers load
        load_prior(model.prior, config, tokenizer, cache_dir)
    return model


def load_prior(prior: ImageNetPrior, config: LexLIPConfig, tokenizer: TextTokenizer, cache_dir: Path | None) -> None:
    """The prior's classifier from the vision tower's weights file and its class-to-token table from the names."""
    source = str(config.vision.weights)
    if not efficientnet.is_source(source):
        raise WeightsError(f"the ImageNet prior reads the classifier of an `efficientnet:` tower, not {source!r}")
    prior.set_classifier(efficientnet.load_classifier(source, prior.classifier.in_features), source)
    assert config.prior is not None
    prior.set_table(*build_table(config.prior, tokenizer, cache_dir))
