"""The ingest workers' ONNX Runtime path: exported once per checkpoint, checked against torch, and giving the
documents torch gives (at scale 100, a weight may differ by one step only where float32 noise straddles a floor)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_model

from lexlip_es.documents import encode_documents
from lexlip_es.encoders import onnx_documents
from lexlip_es.encoders.base import checkpoint_model_id
from lexlip_es.encoders.documents_runtime import PicturesByOnnx, document_encoder
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.encoders.onnx_documents import (
    IMAGE_ONNX_FILE,
    RECORD_FILE,
    OnnxEncoder,
    OnnxExportError,
    ensure_onnx,
)
from lexlip_es.errors import LexlipError
from lexlip_es.mapping import LexiconLayout
from lexlip_es.model import create_model, create_tokenizer
from lexlip_es.model.config import get_config
from lexlip_es.model.screen import bf16_matmul_is_fast
from lexlip_es.settings import Settings
from lexlip_es.sparse import SparseVector

CAPTIONS = [
    ["a red apple", "an apple, fruit", "apple emoji"],
    ["guitar", "an electric guitar on a stand"],
    ["a tiger in the grass", "big cat", "tiger face: dark skin tone", "a striped animal"],
    [],
    ["bicycle", "a red car parked by the road, seen from the side at dusk with its lights on"],
    ["rocket"],
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's architecture (photos config: EfficientNet-Lite0 at 224 px with the ImageNet prior added to the
    learned heads, MiniLM text tower) with seeded heads, saved as a checkpoint."""
    torch.set_num_threads(2)
    config = get_config("photos")
    assert config.prior is not None
    config = config.with_(prior=replace(config.prior, wordnet=None))
    tokenizer = create_tokenizer(config)
    cache = tmp_path_factory.mktemp("cache")
    model = create_model(config, seed=0, tokenizer=tokenizer, cache_dir=cache)
    encoder = LexLIPEncoder(model, config.with_(kind="lexlip"), tokenizer, device="cpu")
    return encoder.save_pretrained(tmp_path_factory.mktemp("ckpt") / "photos")


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    sizes = [(224, 224), (300, 180), (97, 411), (64, 64), (1000, 750), (225, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _copy(checkpoint: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        (folder / name).write_bytes((checkpoint / name).read_bytes())
    return folder


def _weights(vector: SparseVector) -> dict[int, int]:
    return dict(zip(vector.indices.tolist(), vector.values.tolist(), strict=True))


def _assert_equal_but_for_floor_noise(ours: Sequence[Mapping[Any, int]], theirs: Sequence[Mapping[Any, int]]) -> None:
    """Equal, but for at most 0.1% of the weights, each off by one quantization step."""
    weights = differing = 0
    for a, b in zip(ours, theirs, strict=True):
        for token in set(a) | set(b):
            weights += 1
            gap = abs(a.get(token, 0) - b.get(token, 0))
            assert gap <= 1, (token, a.get(token), b.get(token))
            differing += gap > 0
    assert weights > 0 and differing <= 0.001 * weights


def test_onnx_documents_equal_torchs(checkpoint: Path) -> None:
    folder = ensure_onnx(checkpoint, checkpoint.parent / "cache")
    assert folder == checkpoint  # a writable checkpoint keeps its export beside it
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["model_id"] == checkpoint_model_id(checkpoint)
    assert record["max_abs_diff"]["image"] < 1e-4 and record["max_abs_diff"]["text"] < 1e-4
    assert record["pixels"] == {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    onnx, torch_encoder = OnnxEncoder(checkpoint, threads=1), LexLIPEncoder.from_pretrained(checkpoint)
    assert onnx.model_id == torch_encoder.model_id and onnx.image_size == torch_encoder.image_size == 224
    layout = LexiconLayout(onnx.model_id, top_k_image=64, top_k_text=64)
    ids = [f"doc{i}" for i in range(len(CAPTIONS))]
    seconds: dict[str, float] = {}
    ours = encode_documents(onnx, layout, ids, _pictures(), CAPTIONS, seconds=seconds)
    theirs = encode_documents(torch_encoder, layout, ids, _pictures(), CAPTIONS)
    assert set(seconds) == {"images", "captions"} and all(v > 0 for v in seconds.values())
    _assert_equal_but_for_floor_noise([d.image for d in ours], [d.image for d in theirs])
    _assert_equal_but_for_floor_noise(
        [d.captions for d in ours if d.captions], [d.captions for d in theirs if d.captions]
    )
    assert all(len(d.image) >= 3 for d in ours)  # the prior speaks for every picture
    assert [d.metadata for d in ours] == [d.metadata for d in theirs]


def test_the_export_is_made_once_per_weights_and_redone_for_new_ones(checkpoint: Path, tmp_path: Path) -> None:
    copy = _copy(checkpoint, tmp_path / "ckpt")
    ensure_onnx(copy, tmp_path / "cache")
    image_file = copy / IMAGE_ONNX_FILE
    first = image_file.stat().st_mtime_ns
    ensure_onnx(copy, tmp_path / "cache")
    assert image_file.stat().st_mtime_ns == first  # reused
    encoder = LexLIPEncoder.from_pretrained(copy)
    with torch.no_grad():
        encoder.model.visual_head.bias.add_(0.5)  # retrained in place: other weights, another model id
    save_model(encoder.model, str(copy / "model.safetensors"))
    with pytest.raises(OnnxExportError, match="holds no checked ONNX export"):
        OnnxEncoder(copy)  # the old export is not used for the new weights
    ensure_onnx(copy, tmp_path / "cache")
    assert json.loads((copy / RECORD_FILE).read_text())["model_id"] == checkpoint_model_id(copy)
    ours, theirs = (e.encode_images(_pictures(), scale=100) for e in (OnnxEncoder(copy), encoder))
    _assert_equal_but_for_floor_noise([_weights(v) for v in ours], [_weights(v) for v in theirs])


def test_a_read_only_checkpoint_is_exported_into_the_cache(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(checkpoint, tmp_path / "ro")
    monkeypatch.setattr(onnx_documents.os, "access", lambda path, mode: Path(path) != folder)  # as root sees 0o555
    exported = ensure_onnx(folder, tmp_path / "cache")
    assert exported == tmp_path / "cache" / "onnx" / checkpoint_model_id(folder)
    assert not (folder / RECORD_FILE).exists()
    assert ensure_onnx(folder, tmp_path / "cache") == exported  # found there next time
    assert OnnxEncoder(folder, onnx_dir=exported).model_id == checkpoint_model_id(checkpoint)


def test_workers_pick_their_runtime_from_the_settings(checkpoint: Path, tmp_path: Path) -> None:
    settings = Settings.from_env({}, cache_dir=tmp_path, device="cpu", torch_threads=1)
    fast = document_encoder(checkpoint, settings)
    if bf16_matmul_is_fast():  # pictures through ONNX Runtime, captions through torch's screened head
        assert type(fast) is PicturesByOnnx and type(fast.pictures) is OnnxEncoder
        assert fast.captions.screen_texts and fast.model_id == fast.captions.model_id == checkpoint_model_id(checkpoint)
    else:
        assert type(fast) is OnnxEncoder
    layout = LexiconLayout(fast.model_id)
    ours = encode_documents(fast, layout, ["a", "b"], _pictures()[:2], CAPTIONS[:2])
    theirs = encode_documents(
        LexLIPEncoder.from_pretrained(checkpoint), layout, ["a", "b"], _pictures()[:2], CAPTIONS[:2]
    )
    _assert_equal_but_for_floor_noise([d.image for d in ours], [d.image for d in theirs])
    _assert_equal_but_for_floor_noise([d.captions for d in ours], [d.captions for d in theirs])
    assert type(document_encoder(checkpoint, settings.with_(worker_runtime="torch"))) is LexLIPEncoder
    limited = document_encoder(checkpoint, settings.with_(max_pixels=1000))
    assert limited.max_pixels == 1000
    with pytest.raises(LexlipError, match="LEXLIP_WORKER_RUNTIME='fast' is not one of auto, onnx, torch"):
        document_encoder(checkpoint, settings.with_(worker_runtime="fast"))
