"""The training-time speed-ups that must not change what is learned or saved: a frozen CNN stem run once, batches
cut to their longest caption, and the starting bias of tokens no training caption uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from lexlip_es.model import create_tokenizer, get_config
from lexlip_es.model.lexlip import LexLIPModel
from lexlip_es.tokenizer import trim_padding
from trainer.frozen import FrozenStem, cached_stem_features, stem_features
from trainer.loop import parameter_groups
from trainer.vocabulary import ActiveVocabulary


@pytest.fixture()
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()


def test_the_frozen_stem_then_the_rest_equals_the_whole_tower(cnn: torch.nn.Module) -> None:
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        whole = cnn.forward_features(pixels)
    names = list(cnn.state_dict())
    stem = FrozenStem(cnn, 3)
    features = stem.features(pixels)
    assert features.dtype == torch.float16 and features.shape == (3, 40, 8, 8)  # blocks[2] ends at stride 8
    stem.swap_out()
    with torch.no_grad():
        rest = cnn.forward_features(features.float())
    assert torch.allclose(rest, whole, atol=2e-2, rtol=1e-2)  # float16 stem output, float32 rest
    assert not any(n.startswith(("conv_stem.", "blocks.0.", "blocks.2.")) for n in cnn.state_dict())
    with stem.whole():  # checkpoints see the whole tower, names and all
        assert list(cnn.state_dict()) == names
    assert "blocks.3.0.conv_pw.weight" in cnn.state_dict() and "blocks.2.0.conv_pw.weight" not in cnn.state_dict()
    stem.swap_in()
    assert list(cnn.state_dict()) == names


def test_frozen_modules_get_no_gradient_and_leave_the_optimiser(cnn: torch.nn.Module) -> None:
    stem = FrozenStem(cnn, 2)
    cnn.train()
    features = stem.features(torch.randn(4, 3, 64, 64))
    assert all(m.training for m in stem.modules.values())  # features() ran them in eval mode, then restored
    stem.swap_out()
    cnn.forward_features(features.float()).sum().backward()
    stem.swap_in()
    for name, p in cnn.named_parameters():
        frozen = name.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1."))
        assert p.requires_grad is not frozen and (p.grad is None) is frozen, name
    trained = {id(p) for g in parameter_groups(cnn, 1e-3, None) for p in g["params"]}
    assert id(cnn.conv_stem.weight) not in trained and id(cnn.conv_head.weight) in trained


def test_the_stem_needs_a_cnn_and_a_block_count_it_has(cnn: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match=r"0\.\.7"):
        FrozenStem(cnn, 8)
    with pytest.raises(ValueError, match="EfficientNet family"):
        FrozenStem(torch.nn.Linear(2, 2), 1)
    stem = FrozenStem(cnn, 1)
    stem.swap_out()
    with pytest.raises(RuntimeError, match="swapped out"):
        stem.features(torch.randn(1, 3, 32, 32))


def test_stem_features_normalise_uint8_banks_in_slices(cnn: torch.nn.Module) -> None:
    bank = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    stem = FrozenStem(cnn, 0)
    seen: list[int] = []

    def normalize(px: np.ndarray) -> np.ndarray:
        seen.append(len(px))
        return np.ascontiguousarray(np.moveaxis(px.astype(np.float32) / 255.0, -1, 1))

    out = stem_features(stem, bank, normalize)
    assert out.shape[0] == 5 and seen == [5]
    direct = stem.features(torch.from_numpy(normalize(bank)))
    assert torch.equal(out, direct)


def test_trimming_the_padding_changes_no_caption_lexicon() -> None:
    config = get_config("tiny")
    tokenizer = create_tokenizer(config)
    torch.manual_seed(0)
    model = LexLIPModel(config, len(tokenizer.vocab), tokenizer.vocab.special_ids()).eval()
    ids, mask = tokenizer(["a red circle", "a small blue star at the top left"])
    short_ids, short_mask = trim_padding(ids, mask)
    assert short_ids.shape[1] == int(mask.sum(axis=1).max()) < ids.shape[1]
    with torch.no_grad():
        full = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
        short = model.encode_text(torch.from_numpy(short_ids), torch.from_numpy(short_mask))
    assert torch.allclose(full, short, atol=1e-5)


def test_inactive_tokens_start_at_their_own_bias() -> None:
    config = get_config("tiny")
    tokenizer = create_tokenizer(config)
    model = LexLIPModel(config, len(tokenizer.vocab), tokenizer.vocab.special_ids())
    active = ActiveVocabulary([("a red circle",)], tokenizer, negatives=0)
    heads = (model.text.cls.predictions, model.visual_head)
    before = [h.bias.detach().clone() for h in heads]
    active.set_inactive_bias(heads, -10.0)
    special = tokenizer.vocab.special_ids()
    for head, old in zip(heads, before, strict=True):
        assert torch.equal(head.bias[active.inactive], torch.full((len(active.inactive),), -10.0))
        assert torch.equal(head.bias[torch.from_numpy(active.active)], old[torch.from_numpy(active.active)])
        assert torch.equal(head.bias[special], old[special])


def test_the_whole_tower_frozen_leaves_nothing_of_it_to_train(cnn: torch.nn.Module) -> None:
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = cnn.forward_features(pixels)
    stem = FrozenStem(cnn, "all")
    features = stem.features(pixels)
    assert features.shape == whole.shape  # the final feature map: conv_head and bn2 ran once too
    stem.swap_out()
    with torch.no_grad():
        assert torch.allclose(cnn.forward_features(features.float()), whole, atol=2e-2, rtol=1e-2)
    stem.swap_in()
    assert not any(p.requires_grad for p in cnn.parameters())
    with pytest.raises(ValueError, match="'all'"):
        FrozenStem(cnn, "most")


def test_whole_tower_features_are_pooled_and_kept_for_the_next_run(cnn: torch.nn.Module, tmp_path: Path) -> None:
    bank = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)

    def normalize(px: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(px.astype(np.float32) / 127.5 - 1.0, -1, 1))

    stem = FrozenStem(cnn, "all")
    full = stem_features(stem, bank, normalize)
    pooled = cached_stem_features(stem, bank, normalize, tmp_path, pooled=True)
    assert pooled.shape == (3, full.shape[1], 1, 1)
    assert torch.allclose(pooled.float().flatten(1), full.float().mean(dim=(2, 3)), atol=1e-2)
    [kept] = list(tmp_path.glob("frozen-*.safetensors"))
    assert torch.equal(cached_stem_features(stem, bank, normalize, tmp_path, pooled=True), pooled)
    assert list(tmp_path.glob("frozen-*.safetensors")) == [kept]  # read back, not written again
    cached_stem_features(stem, bank[:2], normalize, tmp_path, pooled=True)  # other images: another key
    assert len(list(tmp_path.glob("frozen-*.safetensors"))) == 2
    with pytest.raises(ValueError, match="whole frozen tower"):
        stem_features(FrozenStem(cnn, 2), bank, normalize, pooled=True)
