"""Grounded lexicons: grounding@k on hand-made vectors, the active vocabulary and its targets, the grounded objective,
and proof that nothing of the training-time restriction reaches the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_model

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.grounding import STOP_WORDS, grounding_at_k, grounding_of, heaviest_content, is_content_token
from lexlip_es.model import create_model, create_tokenizer, get_config
from lexlip_es.sparse import SparseVector, Vocabulary
from trainer.data.shapes import generate_shapes
from trainer.loop import TrainConfig, train
from trainer.objectives import LossConfig, Pretrainer, hub_penalty
from trainer.vocabulary import ActiveVocabulary, bm25_weights

VOCAB = Vocabulary(["[PAD]", "[CLS]", "red", "circle", "the", "a", "##s", "blue", "star", "tyson", ",", "top"])
GROUNDED = {
    "negatives": 16,
    "self_mlm": False,
    "image_mlm": False,
    "text_mlm": False,
    "image_words": 1.0,
    "image_weights": 1.0,
    "caption_words": 1.0,
    "own_tokens": 1.0,
}


def vec(weights: dict[str, int]) -> SparseVector:
    return SparseVector.from_pairs([(VOCAB.ids[t], w) for t, w in weights.items()])


def ids(*tokens: str) -> set[int]:
    return {VOCAB.ids[t] for t in tokens}


def test_content_tokens_leave_out_special_stop_words_and_one_character_pieces() -> None:
    assert [t for t in VOCAB.tokens if is_content_token(t)] == ["red", "circle", "blue", "star", "tyson", "top"]
    assert "the" in STOP_WORDS and "there" in STOP_WORDS and not is_content_token("[unused3]")


def test_grounding_at_k_on_hand_made_vectors() -> None:
    # heaviest content tokens: tyson 90, red 80, circle 70 ("the" 99 and "##s" 95 are not content)
    v = vec({"the": 99, "##s": 95, "tyson": 90, "red": 80, "circle": 70, "blue": 5})
    assert heaviest_content(v, VOCAB, 3) == [VOCAB.ids["tyson"], VOCAB.ids["red"], VOCAB.ids["circle"]]
    assert grounding_of(v, ids("red", "circle", "the"), VOCAB, k=3) == pytest.approx(2 / 3)
    assert grounding_of(v, ids("red", "circle", "the"), VOCAB, k=1) == 0.0  # tyson first
    assert grounding_of(v, ids("red", "circle", "blue"), VOCAB, k=10) == pytest.approx(3 / 4)  # 4 content tokens
    assert grounding_of(vec({"the": 50, ",": 40}), ids("the"), VOCAB) == 0.0  # nothing a person reads
    assert grounding_of(SparseVector.empty(), ids("red"), VOCAB) == 0.0
    mean = grounding_at_k([vec({"red": 3}), vec({"tyson": 3})], [ids("red"), ids("red")], VOCAB)
    assert mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="references"):
        grounding_at_k([vec({"red": 3})], [], VOCAB)


def test_ties_go_to_the_lower_id() -> None:
    v = vec({"star": 10, "red": 10})
    assert heaviest_content(v, VOCAB, 1) == [VOCAB.ids["red"]]


def test_bm25_weights_match_the_formula() -> None:
    counts = np.array([[2.0, 0.0], [1.0, 1.0]])
    w = bm25_weights(counts, k1=1.2, b=0.75, scale=1.0)
    idf0, idf1 = np.log1p((2 - 2 + 0.5) / 2.5), np.log1p((2 - 1 + 0.5) / 1.5)
    assert w[0, 0] == pytest.approx(idf0 * 2 * 2.2 / (2 + 1.2))  # both documents are of mean length
    assert w[1, 1] == pytest.approx(idf1 * 1 * 2.2 / (1 + 1.2)) and w[0, 1] == 0.0


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return create_tokenizer(get_config("tiny"))


def test_active_vocabulary_holds_the_caption_tokens_and_samples_other_negatives(tokenizer) -> None:  # type: ignore[no-untyped-def]
    captions = [("a red circle", "red circle, red"), ("a blue star at the top",)]
    active = ActiveVocabulary(captions, tokenizer, negatives=5)
    tokens = {tokenizer.vocab.tokens[t] for t in active.active}
    assert tokens == {"a", "red", "circle", ",", "blue", "star", "at", "the", "top"}
    ids_, mask = tokenizer(["red circle", "a blue star at the top"])
    targets = active.targets(np.array([0, 1]), ids_, mask, torch.Generator().manual_seed(0))
    columns = targets.columns.tolist()
    assert len(columns) == len(active) + 5 and len(set(columns)) == len(columns)
    assert not set(columns[len(active) :]) & set(active.active.tolist())  # negatives are other tokens
    assert not set(columns) & set(tokenizer.vocab.special_ids())
    name = {c: tokenizer.vocab.tokens[t] for c, t in enumerate(columns)}
    image0 = {name[c] for c in np.flatnonzero(targets.image_words[0].numpy())}
    assert image0 == {"red", "circle"}  # content words of every caption of image 0
    own1 = {name[c] for c in np.flatnonzero(targets.own_words[1].numpy())}
    assert own1 == {"a", "blue", "star", "at", "the", "top"}  # the caption's own tokens, stop words included
    weights = dict(zip([name[c] for c in range(len(columns))], targets.image_weights[0].tolist(), strict=True))
    assert weights["red"] > weights["circle"] > 0  # red occurs 3 times in image 0's captions, circle twice
    other = active.targets(np.array([0, 1]), ids_, mask, torch.Generator().manual_seed(1))
    assert other.columns[len(active) :].tolist() != columns[len(active) :]  # fresh negatives each step


def _grounded_pretrainer(total_steps: int = 10, **losses: object) -> tuple[Pretrainer, LexLIPEncoder]:
    encoder = LexLIPEncoder.from_config("shapes", seed=0)
    vocab = encoder.vocab
    module = Pretrainer(
        encoder.model, LossConfig(**{**GROUNDED, **losses}), list(vocab.tokens), vocab.special_ids(), total_steps
    )
    return module, encoder


def _grounded_batch(encoder: LexLIPEncoder, shapes: Path, active: ActiveVocabulary | None = None):  # type: ignore[no-untyped-def]
    from trainer.data.datasets import load_pairs

    pairs = load_pairs(shapes, "train")[:8]
    active = active or ActiveVocabulary([p.captions for p in pairs], encoder.tokenizer, 16)
    pixels = encoder.image_tensor([p.image for p in pairs])
    ids_, mask = encoder.tokenizer([p.captions[0] for p in pairs])
    targets = active.targets(np.arange(8), ids_, mask, torch.Generator().manual_seed(0))
    return pixels, torch.from_numpy(ids_), torch.from_numpy(mask), targets


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), n_train=32, n_val=4, n_test=8, seed=5, image_size=48)


def test_the_caption_side_is_cut_to_its_own_tokens_while_restricted(shapes: Path) -> None:
    module, encoder = _grounded_pretrainer(total_steps=10, own_tokens=0.5)
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    with torch.no_grad():
        encoder.model.text.cls.predictions.bias.fill_(1.0)  # every token on, so the cut is what removes them
    seen: list[torch.Tensor] = []
    original = module._contrastive_terms

    def spy(p_image, p_text, *rest):  # type: ignore[no-untyped-def]
        seen.append(p_text.detach())
        return original(p_image, p_text, *rest)

    module._contrastive_terms = spy  # type: ignore[method-assign]
    module(pixels, ids_, mask, targets=targets)  # step 0 < 0.5 * 10: restricted
    module.step.fill_(5)
    module(pixels, ids_, mask, targets=targets)  # step 5: released
    restricted, released = seen
    assert ((restricted > 0) <= (targets.own_words > 0)).all()
    assert ((released > 0) & (targets.own_words == 0)).any()


def test_every_parameter_the_grounded_losses_reach_gets_a_gradient(shapes: Path) -> None:
    module, encoder = _grounded_pretrainer()
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    out = module(pixels, ids_, mask, targets=targets)
    assert {"image_words", "image_weights", "caption_words", "contrastive"} <= set(out)
    out["loss"].backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    decoder_grad = encoder.model.visual_head.decoder.weight.grad
    scored = torch.zeros(decoder_grad.shape[0], dtype=torch.bool)
    scored[targets.columns] = True
    assert decoder_grad[scored].abs().sum(dim=1).gt(0).any()
    assert not decoder_grad[~scored].any()  # only the step's columns are scored


def test_the_contrastive_weight_scales_only_the_contrastive_term(shapes: Path) -> None:
    full, encoder = _grounded_pretrainer(contrastive=True)
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    third = Pretrainer(
        encoder.model,
        LossConfig(**{**GROUNDED, "contrastive_weight": 0.3}),
        list(encoder.vocab.tokens),
        encoder.vocab.special_ids(),
        10,
    )
    with torch.no_grad():
        a, b = full(pixels, ids_, mask, targets=targets), third(pixels, ids_, mask, targets=targets)
    assert torch.isclose(b["contrastive"], 0.3 * a["contrastive"])
    assert torch.isclose(b["image_weights"], a["image_weights"]) and torch.isclose(b["image_words"], a["image_words"])


def test_the_bag_of_words_losses_need_the_active_vocabulary() -> None:
    with pytest.raises(ValueError, match="active vocabulary"):
        LossConfig(image_words=1.0)
    with pytest.raises(ValueError, match="momentum"):
        LossConfig(momentum=True, negatives=8)


def test_column_logits_equal_the_full_vocabulary_ones() -> None:
    model = create_model("shapes", seed=0)
    pixels = torch.randn(2, 3, 48, 48)
    columns = torch.tensor([5, 2000, 7592])
    with torch.no_grad():
        assert torch.allclose(model.image_logits(pixels, columns), model.image_logits(pixels)[..., columns])


def test_no_training_time_restriction_reaches_the_saved_model(shapes: Path, tmp_path: Path) -> None:
    settings = {
        "data": str(shapes),
        "out": str(tmp_path / "run"),
        "model": "shapes",
        "steps": 3,
        "batch_size": 8,
        "log_every": 1,
        "checkpoint_every": 100,
        "progress": False,
        "losses": {**GROUNDED, "contrastive": True},
    }
    final = train(TrainConfig(**settings))  # type: ignore[arg-type]
    saved = load_file(str(final / "model.safetensors"))
    save_model(create_model("shapes", seed=0), str(tmp_path / "fresh.safetensors"))
    fresh = load_file(str(tmp_path / "fresh.safetensors"))
    assert set(saved) == set(fresh)  # the same tensors as an untrained model: no mask, no column list
    assert all(saved[k].shape == fresh[k].shape for k in fresh)
    config = json.loads((final / "config.json").read_text())
    assert not {"negatives", "own_tokens", "losses"} & set(config)
    encoder = LexLIPEncoder.from_pretrained(final)
    # The encoder scores the whole vocabulary: a token no caption uses turns on when its bias says so.
    outside = encoder.vocab.ids["tyson"]
    assert outside not in ActiveVocabulary([("a red circle",)], encoder.tokenizer, 0).active.tolist()
    before = encoder.encode_texts(["a red circle"])[0]
    with torch.no_grad():
        encoder.model.text.cls.predictions.bias[outside] = 50.0
    after = encoder.encode_texts(["a red circle"])[0]
    assert outside not in before.indices.tolist() and outside in after.indices.tolist()


def test_balanced_words_weigh_an_items_few_words_like_all_the_rest() -> None:
    from trainer.objectives import words_loss
    from trainer.vocabulary import LexiconTargets

    columns = 101
    wanted = torch.zeros(1, columns)
    wanted[0, 0] = 1.0
    zeros = torch.zeros(1, columns)
    targets = LexiconTargets(torch.arange(columns), wanted, zeros, wanted, torch.ones(columns))
    silent = torch.full((1, columns), -4.0)  # every column off, the wanted word too
    plain, balanced = words_loss(silent, wanted, targets), words_loss(silent, wanted, targets, balanced=True)
    on, off = F.softplus(torch.tensor(4.0)), F.softplus(torch.tensor(-4.0))  # BCE of logit -4 for a 1 and a 0
    assert torch.isclose(plain, (on + 100 * off) / 101)  # the missed word is 1% of the plain loss
    assert torch.isclose(balanced, on + off)  # and half of the balanced one


def test_words_only_trains_every_column_and_targets_only_words(tokenizer) -> None:  # type: ignore[no-untyped-def]
    # "red" is in every image's captions (df 1.0 > max_df 0.6): no image's word; "a" and "," are not words at all
    captions = [("a red circle", "red circle, red"), ("a red star",), ("red square",)]
    plain = ActiveVocabulary(captions, tokenizer, negatives=0)
    active = ActiveVocabulary(captions, tokenizer, negatives=0, words_only=True, max_df=0.6)
    name = {c: tokenizer.vocab.tokens[t] for c, t in enumerate(active.active)}
    assert {name[c] for c in np.flatnonzero(plain.content.numpy())} == {"red", "circle", "star", "square"}
    assert active.content.tolist() == [1.0] * len(active)  # every column is scored: the rest is trained off
    assert {name[c] for c in np.flatnonzero(active.words.numpy())} == {"circle", "star", "square"}
    ids_, mask = tokenizer(["a red circle", "a red star"])
    targets = active.targets(np.array([0, 1]), ids_, mask, torch.Generator().manual_seed(0))
    assert {name[c] for c in np.flatnonzero(targets.image_words[0].numpy())} == {"circle"}
    assert {name[c] for c in np.flatnonzero(targets.own_words[1].numpy())} == {"star"}  # not "a", not "red"
    with pytest.raises(ValueError, match="max_df"):
        LossConfig(max_df=0.0)


def test_hard_words_rank_the_heaviest_wrong_words_below_the_items_words() -> None:
    from trainer.objectives import words_loss
    from trainer.vocabulary import LexiconTargets

    columns = 101
    wanted = torch.zeros(1, columns)
    wanted[0, :2] = 1.0
    zeros = torch.zeros(1, columns)
    targets = LexiconTargets(torch.arange(columns), wanted, zeros, wanted, torch.ones(columns))
    pooled = torch.full((1, columns), -4.0)
    pooled[0, :2] = torch.tensor([5.0, 3.0])  # the item's words, mean logit 4
    pooled[0, 7] = 6.0  # one wrong word above them: 1% of the balanced "off" mean, half of hard=2's ranking term
    balanced = words_loss(pooled, wanted, targets, balanced=True)
    hard = words_loss(pooled, wanted, targets, balanced=True, hard=2)
    assert torch.isclose(hard - balanced, (F.softplus(torch.tensor(2.0)) + F.softplus(torch.tensor(-8.0))) / 2)
    # a wrong word well below the item's words costs (almost) nothing more: expansions keep their place after them
    pooled[0, 7] = -4.0
    extra = words_loss(pooled, wanted, targets, balanced=True, hard=2) - words_loss(
        pooled, wanted, targets, balanced=True
    )
    assert float(extra) < 0.001
    # the gradient lowers the wrong word and raises the item's words
    pooled[0, 7] = 6.0
    pooled.requires_grad_(True)
    words_loss(pooled, wanted, targets, balanced=True, hard=2).backward()
    assert pooled.grad is not None and pooled.grad[0, 7] > 0 and pooled.grad[0, 1] < 0


def test_grounding_by_group_splits_the_images_by_their_label() -> None:
    from trainer.data.datasets import Pair
    from trainer.evaluate import grounding_by_label

    class Words:  # the tokenizer seam of trainer/evaluate.py: texts -> (ids, mask), and a vocabulary
        vocab = VOCAB

        def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            rows = [[VOCAB.ids[w] for w in t.split()] for t in texts]
            width = max(len(r) for r in rows)
            ids_ = np.array([r + [0] * (width - len(r)) for r in rows])
            return ids_, np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows])

    def pair(caption: str, group: str) -> Pair:
        return Pair(
            image=np.zeros((1, 1, 3), np.uint8),
            captions=(caption,),
            image_id=caption,
            meta={"labels": {"group": group}},
        )

    pairs = [pair("red circle", "shapes"), pair("blue star", "shapes"), pair("red star", "stars")]
    images = [vec({"red": 9, "tyson": 5}), vec({"blue": 9, "star": 8}), vec({"tyson": 9})]
    found = grounding_by_label(Words(), images, pairs)["grounding@10_image_by_group"]
    assert found == {
        "shapes": {"images": 2, "grounding@10_image": pytest.approx((1 / 2 + 1) / 2)},
        "stars": {"images": 1, "grounding@10_image": 0.0},
    }
    assert grounding_by_label(Words(), images, [Pair(p.image, p.captions, p.image_id) for p in pairs]) == {}


def test_hub_penalty_charges_a_column_wrong_across_the_batch_more_than_scattered_mistakes() -> None:
    content = torch.ones(4, 6)
    wanted = torch.zeros(4, 6)
    wanted[:, 0] = 1.0  # every row's own word is column 0
    hub = torch.zeros(4, 6)
    hub[:, 0], hub[:, 1] = 1.0, 1.0  # the same wrong column on every row
    scattered = torch.zeros(4, 6)
    scattered[:, 0] = 1.0
    scattered[torch.arange(4), torch.arange(4) + 2] = 1.0  # one wrong column each, all different
    w = 1 / 2**0.5  # each row normalised: own word and one wrong word at 1/sqrt(2)
    assert torch.isclose(hub_penalty(hub, wanted, content), torch.tensor(w**2))
    assert torch.isclose(hub_penalty(scattered, wanted, content), torch.tensor(4 * (w / 4) ** 2))
    own_only = torch.zeros(4, 6)
    own_only[:, 0] = 2.0
    assert hub_penalty(own_only, wanted, content) == 0
    not_content = content.clone()
    not_content[:, 1] = 0.0  # a stop word's column is left to the other terms
    assert hub_penalty(hub, wanted, not_content) == 0


def test_a_sibling_margin_raises_only_the_contrastive_term_and_only_with_siblings_in_the_batch(shapes: Path) -> None:
    plain, encoder = _grounded_pretrainer(contrastive=True)
    margined = Pretrainer(
        encoder.model,
        LossConfig(**{**GROUNDED, "sibling_margin": 0.2}),
        list(encoder.vocab.tokens),
        encoder.vocab.special_ids(),
        10,
    )
    pixels, ids_, mask, targets = _grounded_batch(encoder, shapes)
    none = torch.zeros(8, 8, dtype=torch.bool)
    pairs = none.clone()
    pairs[0, 1] = pairs[1, 0] = True  # items 0 and 1 are siblings
    with torch.no_grad():
        base = plain(pixels, ids_, mask, targets=targets, siblings=pairs)
        alone = margined(pixels, ids_, mask, targets=targets, siblings=none)
        sibling = margined(pixels, ids_, mask, targets=targets, siblings=pairs)
    assert torch.isclose(alone["contrastive"], base["contrastive"])  # no sibling in the batch: no change
    assert float(sibling["contrastive"]) > float(base["contrastive"])  # a sibling must now be beaten by 0.2
    assert torch.isclose(sibling["image_words"], base["image_words"])


def test_the_sibling_margin_raises_sibling_scores_only_and_reaches_the_dense_twin_too() -> None:
    from lexlip_es.model import create_model
    from trainer.objectives import DenseObjective, with_sibling_margin

    scores = torch.zeros(3, 3)
    siblings = torch.zeros(3, 3, dtype=torch.bool)
    siblings[0, 1] = siblings[1, 0] = True
    raised = with_sibling_margin(scores, siblings, 0.1)
    assert raised[0, 1] == raised[1, 0] == pytest.approx(0.1) and float(raised.abs().sum()) == pytest.approx(0.2)
    assert with_sibling_margin(scores, None, 0.1) is scores and with_sibling_margin(scores, siblings, 0.0) is scores
    model = create_model("tiny", kind="dense")
    pixels, ids_ = torch.randn(3, 3, 32, 32), torch.randint(1000, 2000, (3, 6))
    mask = torch.ones_like(ids_)
    with torch.no_grad():
        plain = DenseObjective(model, 0.05)(pixels, ids_, mask, siblings=siblings)["loss"]
        margined = DenseObjective(model, 0.05, sibling_margin=0.1)(pixels, ids_, mask, siblings=siblings)["loss"]
    assert float(margined) > float(plain)
