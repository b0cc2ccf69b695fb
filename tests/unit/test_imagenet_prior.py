"""The ImageNet word prior: WordNet's hypernyms, the class-to-token table, the tower's classifier, and lexicons that are
never empty for a decodable picture."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lexlip_es.model import WeightsError, create_model, create_tokenizer, get_config
from lexlip_es.model import efficientnet as effnet
from lexlip_es.model.config import LexLIPConfig, PriorConfig
from lexlip_es.model.prior import class_phrases, imagenet_names, imagenet_wnids, is_binomial, token_table
from lexlip_es.model.wordnet import WordNet, WordNetError, parse_line

timm = pytest.importorskip("timm")
TIGER, GRANNY_SMITH, ELECTRIC_GUITAR = 292, 948, 546

# Real data.noun lines (WordNet 3.0) for tiger -> big cat -> feline -> carnivore; glosses shortened.
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by
02129604 05 n 02 tiger 0 Panthera_tigris 0 003 @ 02127808 n 0000 #m 02129463 n 0000 ~ 02129837 n 0000 | large feline
02127808 05 n 02 big_cat 0 cat 0 002 @ 02120997 n 0000 ~ 02129604 n 0000 | any of several large cats
02120997 05 n 01 feline 0 002 @ 02075296 n 0000 ~ 02127808 n 0000 | lithe-bodied
02075296 05 n 01 carnivore 0 001 ~ 02120997 n 0000 | a terrestrial or aquatic flesh-eating mammal
"""


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> WordNet:
    folder = tmp_path_factory.mktemp("wordnet")
    (folder / "data.noun").write_text(DATA_NOUN, encoding="latin-1")
    return WordNet.load(folder)


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return create_tokenizer(get_config("imagenet-prior"))


def test_wordnet_reads_lemmas_and_walks_hypernyms_nearest_first(wordnet: WordNet) -> None:
    tiger = wordnet.synset("n02129604")
    assert tiger.lemmas == ("tiger", "Panthera tigris")
    assert tiger.hypernyms == ("02127808",)  # the member holonym (#m) and hyponyms (~) are not hypernyms
    walked = [(d, s.lemmas) for d, s in wordnet.ancestors("n02129604", 2)]
    assert walked == [(1, ("big cat", "cat")), (2, ("feline",))]
    assert [s.lemmas for _, s in wordnet.ancestors("n02129604", 9)][-1] == ("carnivore",)


def test_wordnet_errors_name_the_file_and_line(tmp_path: Path, wordnet: WordNet) -> None:
    with pytest.raises(WordNetError, match=r"data\.noun does not exist"):
        WordNet.load(tmp_path)
    with pytest.raises(WordNetError, match=r"x\.noun:7: not a WordNet data line"):
        parse_line("02129604 05 n zz tiger 0", "x.noun:7")
    with pytest.raises(WordNetError, match="no noun synset"):
        wordnet.synset("n99999999")


def test_tiger_class_holds_tiger_and_its_broader_words(wordnet: WordNet, tokenizer: object) -> None:
    names = imagenet_names()
    assert names[TIGER] == ["tiger", "Panthera tigris"]
    vocab = tokenizer.vocab  # type: ignore[attr-defined]
    kept = [[n for n in ns if not is_binomial(n, vocab)] or ns[:1] for ns in names]
    assert kept[TIGER] == ["tiger"]
    phrases = class_phrases(kept[TIGER : TIGER + 1], imagenet_wnids()[TIGER : TIGER + 1], wordnet, 2, 0.5)
    tokens, weights = token_table(phrases, tokenizer, 6)  # type: ignore[arg-type]
    table = {vocab.tokens[t]: float(w) for t, w in zip(tokens[0], weights[0], strict=True) if w > 0}
    assert table == {"tiger": 1.0, "big": 0.5, "cat": 0.5, "fe": 0.25, "##line": 0.25}  # "feline" is two pieces


def test_binomials_are_left_out_but_real_names_stay(tokenizer: object) -> None:
    vocab = tokenizer.vocab  # type: ignore[attr-defined]
    assert is_binomial("Panthera tigris", vocab) and is_binomial("Tinca tinca", vocab)
    for name in ("Granny Smith", "German shepherd", "European fire salamander", "Persian cat", "electric guitar"):
        assert not is_binomial(name, vocab), name


def test_token_table_keeps_the_heaviest_pieces_and_pads_with_zero_weight(tokenizer: object) -> None:
    phrases = [[("electric guitar", 1.0), ("musical instrument", 0.5), ("guitar", 0.25)], []]
    tokens, weights = token_table(phrases, tokenizer, 3)  # type: ignore[arg-type]
    vocab = tokenizer.vocab  # type: ignore[attr-defined]
    assert [vocab.tokens[t] for t in tokens[0]] == ["electric", "guitar", "musical"]
    assert weights.tolist() == [[1.0, 1.0, 0.5], [0.0, 0.0, 0.0]]
    assert tokens[1].tolist() == [0, 0, 0]


def _prior_config(**changes: object) -> LexLIPConfig:
    config = get_config("imagenet-prior")
    assert config.prior is not None
    return config.with_(prior=replace(config.prior, wordnet=None, **changes))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prior_model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return create_model(_prior_config(), cache_dir=tmp_path_factory.mktemp("cache")).eval()


def test_classifier_is_the_weights_files_and_gives_the_original_models_probabilities(
    prior_model: torch.nn.Module,
) -> None:
    original = effnet.read_original(effnet.original_file("efficientnet:lite0"))
    assert torch.equal(prior_model.prior.classifier.weight, original["_fc.weight"])  # type: ignore[union-attr]
    assert torch.equal(prior_model.prior.classifier.bias, original["_fc.bias"])  # type: ignore[union-attr]
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    state = effnet.load_state("efficientnet:lite0", timm.create_model("tf_efficientnet_lite0", num_classes=0))
    classifier = {"classifier.weight": original["_fc.weight"], "classifier.bias": original["_fc.bias"]}
    reference.load_state_dict({**state, **classifier})
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = prior_model.prior.probabilities(prior_model.image_tokens(pixels).mean(dim=1))  # type: ignore[union-attr]
        theirs = torch.softmax(reference(pixels), dim=-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_a_classifier_of_another_width_is_refused() -> None:
    with pytest.raises(WeightsError, match="does not fit a tower of width 1408"):
        effnet.load_classifier("efficientnet:lite0", 1408)


def test_prior_needs_an_efficientnet_source(tmp_path: Path) -> None:
    config = _prior_config()
    config = config.with_(vision=replace(config.vision, weights=None))
    bare = create_model(config, cache_dir=tmp_path)  # a checkpoint's bare model: its buffers load from the file
    assert float(bare.prior.weights.abs().sum()) == 0.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="learned: false"):
        PriorConfig(learned=False, text_own=0.0)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_no_decodable_picture_gets_an_empty_lexicon(prior_model: torch.nn.Module) -> None:
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    config = _prior_config()
    encoder = LexLIPEncoder(prior_model, config, create_tokenizer(config))
    rng = np.random.default_rng(0)
    pictures = [
        _png(Image.new("RGB", (1, 1), (255, 255, 255))),
        _png(Image.new("RGBA", (64, 32), (0, 0, 0, 0))),  # fully transparent
        _png(Image.new("L", (300, 200), 0)),
        _png(Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))),
    ]
    for vector in encoder.encode_images(pictures, scale=100):
        assert len(vector.indices) >= 5 and int(vector.values.min()) >= 1
    [query] = encoder.encode_queries(["A tiger in the grass."], scale=100)
    assert sorted(encoder.vocab.tokens[i] for i in query.indices) == ["grass", "tiger"]


def test_training_adds_the_fixed_prior_and_trains_every_head_but_the_classifier(tmp_path: Path) -> None:
    from trainer.objectives import LossConfig, Pretrainer
    from trainer.vocabulary import ActiveVocabulary

    config = _prior_config(learned=True).with_(name="photos-test")
    config = config.with_(vision=replace(config.vision, image_size=64))
    tokenizer = create_tokenizer(config)
    model = create_model(config, tokenizer=tokenizer, cache_dir=tmp_path).train()
    captions = [("a red apple",), ("an electric guitar",), ("a tiger",), ("a bicycle",)]
    active = ActiveVocabulary(captions, tokenizer, 8, words_only=True)
    ids, mask = tokenizer([c[0] for c in captions])
    targets = active.targets(np.arange(4), ids, mask, torch.Generator().manual_seed(0))
    losses = LossConfig(contrastive=True, image_words=1.0, caption_words=1.0, hub_words=1.0, negatives=8)
    objective = Pretrainer(model, losses, list(tokenizer.vocab.tokens), tokenizer.vocab.special_ids(), 10)
    seen: list[torch.Tensor] = []
    original = objective._contrastive_terms

    def spy(p_image, p_text, *rest):  # type: ignore[no-untyped-def]
        seen.append(p_image.detach())
        return original(p_image, p_text, *rest)

    objective._contrastive_terms = spy  # type: ignore[method-assign]
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = objective(pixels, torch.from_numpy(ids), torch.from_numpy(mask), targets=targets)
    out["loss"].backward()
    with torch.no_grad():
        prior = model.image_prior(model.image_tokens(pixels))[:, targets.columns]
    assert bool((seen[0] >= prior - 1e-6).all()) and float(prior.sum()) > 0  # the prior is under every lexicon
    assert model.prior is not None and model.prior.classifier.weight.grad is None
    trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None and p.grad.any()]
    assert any(n.startswith("visual_head") for n in trained) and any(n.startswith("text.bert") for n in trained)


def test_lexlip_checkpoint_writes_a_prior_only_checkpoint_that_loads_without_wordnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from lexlip_app.cli import main
    from lexlip_es.encoders.loading import load_encoder

    monkeypatch.setenv("LEXLIP_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "prior.json"
    config.write_text(json.dumps(_prior_config().to_dict()))
    assert main(["checkpoint", str(config), "--out", str(tmp_path / "ck")]) == 0
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    saved["prior"]["wordnet"] = "/nowhere"  # loading never reads WordNet: the table is in the weights file
    (tmp_path / "ck" / "config.json").write_text(json.dumps(saved))
    encoder = load_encoder(tmp_path / "ck", kind="torch")
    assert float(encoder.model.prior.weights.sum()) > 0  # the table came from the checkpoint, not from WordNet
    [image] = encoder.encode_images([_png(Image.new("RGB", (40, 40), (200, 30, 30)))], scale=100)
    [query] = encoder.encode_queries(["a red apple"], scale=100)
    assert len(image.indices) >= 5
    assert sorted(encoder.vocab.tokens[i] for i in query.indices) == ["apple", "red"]
