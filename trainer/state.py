"""Exact-resume training state without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

TENSORS = "training_state.safetensors"
META = "training_state.json"


def save_state(
    directory: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, value in module.state_dict().items():
        tensors[f"module.{name}"] = value.detach().cpu().contiguous()
    opt: dict[str, Any] = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    # tied weights share storage; safetensors wants each tensor on its own
    tensors = {k: v.clone() for k, v in tensors.items()}
    save_file(tensors, str(directory / TENSORS))
    np_state: Any = np.random.get_state()
    full_meta = {
        **meta,
        "param_groups": opt["param_groups"],
        "python_random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_random": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    (directory / META).write_text(json.dumps(full_meta))


def load_state(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors = load_file(str(directory / TENSORS))
    meta: dict[str, Any] = json.loads((directory / META).read_text())
    module_state = {k.removeprefix("module."): v for k, v in tensors.items() if k.startswith("module.")}
    module.load_state_dict(module_state, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    version, internal, gauss = meta["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy_random"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return meta
