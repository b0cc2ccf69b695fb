"""The two backbones: a timm vision model (a ViT with optional 2-D sine positions, or a CNN whose feature-map cells
are the positions) and a BERT-family masked LM, with their starting weights.

Weights come from local sources only (config.resolve_source): `package:NAME`, `efficientnet:liteN` (converted by
model/efficientnet.py), a safetensors file, or a folder in the layout the model hubs publish: transformers'
(config.json + model.safetensors or a sharded model.safetensors.index.json) for the text tower, timm's save_for_hf
(config.json + model.safetensors) for the vision tower. A folder's config.json is checked against the model config
and every tensor against the model before anything is loaded; what does not fit is refused with a WeightsError that
names the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lexlip_es.model import efficientnet
from lexlip_es.model.config import CONFIG_FILE, TextConfig, VisionConfig, WeightsError, read_json, resolve_source

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
DEFAULT_NAME = "the model config"
# The BertConfig fields that change the architecture or its arithmetic; a text folder must agree on each it gives.
BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_act",
    "layer_norm_eps",
    "position_embedding_type",
)
# What a BertConfig without the field means (transformers 5 dropped relative position embeddings from BERT).
_BERT_IMPLIED = {"position_embedding_type": "absolute"}
# timm model_args that say nothing about the weights' shapes or arithmetic.
_TIMM_FREE_ARGS = ("num_classes", "global_pool", "drop_rate", "drop_path_rate", "proj_drop_rate", "attn_drop_rate")


def build_visual(
    cfg: VisionConfig, weights: str | None = None, cache_dir: Path | None = None, name: str = DEFAULT_NAME
) -> Any:
    """A timm model without classifier; `forward_features` gives every position's features (B x N x C tokens for
    a ViT, B x C x H x W for a CNN). `cache_dir` holds converted weights (efficientnet: sources)."""
    import timm

    kwargs: dict[str, Any] = dict(cfg.kwargs)
    if _fixed_input_size(cfg.timm_name):
        kwargs["img_size"] = cfg.image_size
    model = timm.create_model(cfg.timm_name, pretrained=False, num_classes=0, **kwargs)
    if cfg.pos_init == "sincos":
        _sincos_positions(model)
    source = weights or cfg.weights
    if not source:
        return model
    if efficientnet.is_source(source):
        model.load_state_dict(efficientnet.load_state(source, model, cache_dir), strict=True)
        return model
    path = resolve_source(source)
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            check_timm_folder(path / CONFIG_FILE, cfg, model, name)
        state, file = load_folder_state(path)
    else:
        state, file = _load_state(path), path
    model.load_state_dict(_fit_vision_state(state, model, file, name), strict=False)
    return model


def _fixed_input_size(timm_name: str) -> bool:
    """Whether the architecture is built for one input size (a ViT: its position table) and takes `img_size`."""
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(timm_name)
    return bool(getattr(pretrained, "fixed_input_size", True))


def _classifier_names(model: Any) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ("head", "classifier", "fc")
    return (names,) if isinstance(names, str) else tuple(names)


def _fit_vision_state(state: Mapping[str, torch.Tensor], model: Any, file: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of `state` the tower uses, after checking that every one of its tensors is there, of its shape,
    and that nothing else is (a classifier head the tower leaves out is dropped)."""
    expected = model.state_dict()
    classifiers = _classifier_names(model)
    kept = {
        k: v for k, v in state.items() if k in expected or not any(k == c or k.startswith(c + ".") for c in classifiers)
    }
    missing = [k for k in expected if k not in kept]
    extra = [k for k in kept if k not in expected]
    if missing or extra:
        raise WeightsError(
            f"{file} does not fit the vision tower of {name} ({model.pretrained_cfg.get('architecture')}): "
            f"{len(missing)} tensors missing {missing[:5]}, {len(extra)} unexpected {extra[:5]}"
        )
    _check_shapes(kept, expected, file, f"the vision tower of {name}")
    return kept


def _check_shapes(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], file: Path, what: str
) -> None:
    wrong = [  # in the model's order: the first ones named say the most
        f"{k} {tuple(state[k].shape)}, needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise WeightsError(f"{file} does not fit {what}: {len(wrong)} tensors of another shape: {'; '.join(wrong[:5])}")


def _as_size(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def check_timm_folder(file: Path, cfg: VisionConfig, model: Any, name: str = DEFAULT_NAME) -> None:
    """A timm folder's config.json (architecture, num_features, pretrained_cfg.input_size, model_args) against the
    vision config the tower was built from."""
    data = read_json(file)
    problems: list[str] = []
    arch = str(data.get("architecture") or "").split(".")[0]
    if arch and arch != cfg.timm_name:
        problems.append(f"architecture {arch} in {file}, {name} needs {cfg.timm_name}")
    width = int(getattr(model, "num_features", 0))
    if data.get("num_features") is not None and data["num_features"] != width:
        problems.append(f"num_features {data['num_features']} in {file}, {name} needs {width}")
    pretrained = data.get("pretrained_cfg") or {}
    fixed = bool(pretrained.get("fixed_input_size", _fixed_input_size(cfg.timm_name)))
    input_size = pretrained.get("input_size")
    if fixed and input_size and _as_size(input_size[1:]) != _as_size(cfg.image_size):
        problems.append(
            f"input_size {list(input_size)} in {file}, {name} needs [3, {cfg.image_size}, {cfg.image_size}]"
        )
    model_args = data.get("model_args")
    if isinstance(model_args, dict):
        for key, value in model_args.items():
            if key in _TIMM_FREE_ARGS:
                continue
            if key == "img_size":
                if fixed and _as_size(value) != _as_size(cfg.image_size):
                    problems.append(f"img_size {_plain(value)} in {file}, {name} needs {cfg.image_size}")
                continue
            want = cfg.kwargs.get(key, 3 if key == "in_chans" else None)
            if want is None:
                problems.append(f"{key} {_plain(value)} in {file}, {name} keeps timm's default for {cfg.timm_name}")
            elif _plain(value) != _plain(want):
                problems.append(f"{key} {_plain(value)} in {file}, {name} needs {_plain(want)}")
        for key, want in cfg.kwargs.items():
            if key not in model_args and key not in _TIMM_FREE_ARGS:
                problems.append(f"{key} is timm's default in {file}, {name} needs {_plain(want)}")
    if problems:
        raise WeightsError("; ".join(problems))


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
        raise WeightsError(f"{path}: only safetensors weights are loaded (no pickle)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_folder_state(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of a model hub folder: model.safetensors, or every shard a model.safetensors.index.json names."""
    if (folder / WEIGHTS_FILE).is_file():
        return _load_state(folder / WEIGHTS_FILE), folder / WEIGHTS_FILE
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise WeightsError(f"{index} has no weight_map")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = (folder / str(shard)).resolve()
            if shard_path.parent != folder.resolve():
                raise WeightsError(f"{index} names a shard outside its folder: {shard!r}")
            state.update(_load_state(shard_path))
        return state, index
    found = sorted(p.name for p in folder.iterdir())
    raise WeightsError(
        f"{folder} has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX} (found {found[:10]}); only safetensors weights are "
        "loaded: re-save pickled weights with save_pretrained(..., safe_serialization=True) or timm's save_for_hf"
    )


def _bert_config(cfg: TextConfig, vocab_size: int) -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, **cfg.bert)


def check_bert_folder(file: Path, bert: Any, name: str = DEFAULT_NAME) -> None:
    """A transformers folder's config.json (model_type bert; sizes, layers, heads, vocabulary, activation) against the
    BertConfig the text tower is built from."""
    data = read_json(file)
    problems: list[str] = []
    if data.get("model_type", "bert") != "bert":
        problems.append(f"model_type {data['model_type']} in {file}, {name} needs bert")
    for key in BERT_FIELDS:
        if key not in data:
            continue
        want = getattr(bert, key, _BERT_IMPLIED.get(key))
        if data[key] != want:
            suffix = " (the tokenizer's size)" if key == "vocab_size" else ""
            problems.append(f"{key} {data[key]} in {file}, {name} needs {want}{suffix}")
    if problems:
        raise WeightsError("; ".join(problems))


def _bert_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A BERT checkpoint in BertForMaskedLM's names: `bert.` prefix, LayerNorm gamma/beta as weight/bias; the
    pooler, the next-sentence head and position-id buffers dropped (the towers use neither)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith("position_ids"):
            continue
        if key.endswith("LayerNorm.gamma"):
            key = key.removesuffix("gamma") + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key.removesuffix("beta") + "bias"
        renamed[key] = tensor
    if not any(k.startswith("bert.") for k in renamed):
        renamed = {(k if k.startswith("cls.") else f"bert.{k}"): v for k, v in renamed.items()}
    return {k: v for k, v in renamed.items() if not k.startswith(("bert.pooler.", "cls.seq_relationship."))}


def build_text_mlm(cfg: TextConfig, vocab_size: int, weights: str | None = None, name: str = DEFAULT_NAME) -> Any:
    """`BertForMaskedLM`. With local weights of a plain BertModel (no MLM head), the head starts from the tied word
    embeddings: the decoder is the embedding matrix, the transform dense layer the identity, the bias zero."""
    from transformers import BertForMaskedLM

    bert = _bert_config(cfg, vocab_size)
    model = BertForMaskedLM(bert)
    source = weights or cfg.weights
    if source:
        path = resolve_source(source)
        if path.is_dir():
            if (path / CONFIG_FILE).is_file():
                check_bert_folder(path / CONFIG_FILE, bert, name)
            raw, file = load_folder_state(path)
        else:
            raw, file = _load_state(path), path
        state = _bert_state(raw)
        has_head = any(k.startswith("cls.predictions.transform.") for k in state)
        _check_shapes(state, model.state_dict(), file, f"the text tower of {name}")
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing_body = [k for k in missing if k.startswith("bert.")]
        if missing_body or unexpected:
            raise WeightsError(
                f"{file} does not fit the text tower of {name}: missing {missing_body[:5]}, unexpected {unexpected[:5]}"
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


def build_text_encoder(cfg: TextConfig, vocab_size: int, weights: str | None = None, name: str = DEFAULT_NAME) -> Any:
    """A plain `BertModel` (the dense twin's text tower), from the same weights as the MLM tower would use."""
    return build_text_mlm(cfg, vocab_size, weights, name).bert
