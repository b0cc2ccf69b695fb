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
    if cfg.pos_init == "sincos":
        _sincos_positions(model)
    source = weights or cfg.weights
    if source:
        path = resolve_source(source)
        path = path / WEIGHTS_FILE if path.is_dir() else path
        state = _load_state(path)
        missing, _ = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("head")]:
            raise ValueError(f"{path} lacks vision weights: {missing[:5]}...")
    return model


def _sincos_positions(model: Any) -> None:
    """Fill a ViT's patch position embeddings with 2-D sines and cosines (rows in the first half of the width,
    columns in the second), as MAE does; the class token's slot keeps its init. They stay trainable."""
    table = getattr(model, "pos_embed", None)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if table is None or grid is None:
        raise ValueError(f"pos_init 'sincos' needs a ViT with pos_embed and patch_embed.grid_size, not {type(model)}")
    rows, cols = int(grid[0]), int(grid[1])
    width = table.shape[-1]
    if width % 4:
        raise ValueError(f"pos_init 'sincos' needs a width divisible by 4, got {width}")
    quarter = width // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij"
    )
    y, x = ys.flatten()[:, None] * frequencies, xs.flatten()[:, None] * frequencies
    sines = torch.cat([torch.sin(y), torch.cos(y), torch.sin(x), torch.cos(x)], dim=1)
    with torch.no_grad():
        table[0, table.shape[1] - rows * cols :] = sines


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
