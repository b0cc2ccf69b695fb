"""The two backbones: a timm vision transformer and a BERT-family masked LM, with their starting weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lexlip_es.model.config import TextConfig, VisionConfig, resolve_source

WEIGHTS_FILE = "model.safetensors"


def build_visual(cfg: VisionConfig, weights: str | None = None) -> Any:
    """A timm model without classifier; `forward_features` gives every position's features."""
    import timm

    model = timm.create_model(cfg.timm_name, pretrained=False, num_classes=0, img_size=cfg.image_size, **cfg.kwargs)
    source = weights or cfg.weights
    if source:
        path = resolve_source(source)
        path = path / WEIGHTS_FILE if path.is_dir() else path
        state = _load_state(path)
        missing, _ = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("head")]:
            raise ValueError(f"{path} lacks vision weights: {missing[:5]}...")
    return model


def visual_width(model: Any) -> int:
    return int(getattr(model, "num_features", getattr(model, "embed_dim", 0)))


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only safetensors weights are loaded (no pickle)")
    from safetensors.torch import load_file

    return load_file(str(path))


def _bert_config(cfg: TextConfig, vocab_size: int) -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, **cfg.bert)


def build_text_mlm(cfg: TextConfig, vocab_size: int, weights: str | None = None) -> Any:
    """`BertForMaskedLM`. With local weights of a plain BertModel (no MLM head), the head starts from the tied word
    embeddings: the decoder is the embedding matrix, the transform dense layer the identity, the bias zero."""
    from transformers import BertForMaskedLM

    model = BertForMaskedLM(_bert_config(cfg, vocab_size))
    source = weights or cfg.weights
    if source:
        path = resolve_source(source)
        path = path / WEIGHTS_FILE if path.is_dir() else path
        state = {k: v for k, v in _load_state(path).items() if not k.endswith("position_ids")}
        if not any(k.startswith("bert.") for k in state):
            state = {f"bert.{k}": v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}
        has_head = any(k.startswith("cls.") for k in state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing_body = [k for k in missing if k.startswith("bert.")]
        if missing_body or unexpected:
            raise ValueError(
                f"{path} does not fit the text config: missing {missing_body[:5]}, unexpected {unexpected[:5]}"
            )
        if not has_head:
            transform = model.cls.predictions.transform
            with torch.no_grad():
                nn.init.eye_(transform.dense.weight)
                nn.init.zeros_(transform.dense.bias)
                nn.init.ones_(transform.LayerNorm.weight)
                nn.init.zeros_(transform.LayerNorm.bias)
                nn.init.zeros_(model.cls.predictions.bias)
        model.tie_weights()
    return model


def build_text_encoder(cfg: TextConfig, vocab_size: int, weights: str | None = None) -> Any:
    """A plain `BertModel` (the dense twin's text tower), from the same weights as the MLM tower would use."""
    return build_text_mlm(cfg, vocab_size, weights).bert
