"""The trainer on the tiny model and a small shapes set: data, masking, objectives, EMA, queues, resume, DDP, eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.local.ports import free_port
from lexlip_es.sparse import SparseVector
from trainer.data.datasets import CorruptCounter, Pair, load_pairs, load_valid_images, write_webdataset
from trainer.data.shapes import generate_shapes
from trainer.evaluate import misses_by_family, ranks_against, retrieval_metrics
from trainer.loop import TrainConfig, _batch_indices, sibling_mask, train
from trainer.masking import IGNORE, WholeWordMasker
from trainer.objectives import LossConfig, Pretrainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), n_train=64, n_val=4, n_test=16, seed=3, image_size=32)


@pytest.fixture(scope="module")
def encoder() -> LexLIPEncoder:
    return LexLIPEncoder.from_config("tiny", seed=0)  # type: ignore[no-any-return]


def _batch(encoder: LexLIPEncoder, shapes: Path, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pairs = load_pairs(shapes, "train")[:n]
    pixels = encoder.image_tensor([p.image for p in pairs])
    ids, mask = encoder.tokenizer([p.captions[0] for p in pairs])
    return pixels, torch.from_numpy(ids), torch.from_numpy(mask)


def test_shapes_are_seeded_and_speak_the_bert_vocabulary(shapes: Path, encoder: LexLIPEncoder, tmp_path: Path) -> None:
    again = generate_shapes(tmp_path, n_train=64, n_val=4, n_test=16, seed=3, image_size=32)
    assert again.read_text() == shapes.read_text()
    data = json.loads(shapes.read_text())
    assert [r["split"] for r in data["images"]].count("test") == 16
    for record in data["images"]:
        assert len(record["sentences"]) == 5 and 1 <= len(record["objects"]) <= 3
        for sentence in record["sentences"]:
            tokens = encoder.tokenizer.tokenize(sentence["raw"])
            assert "[UNK]" not in tokens and not any(t.startswith("##") for t in tokens), sentence["raw"]


def test_sources_karpathy_manifest_and_webdataset_agree(shapes: Path, tmp_path: Path) -> None:
    pairs = load_pairs(shapes, "test")
    assert len(pairs) == 16 and all(len(p.captions) == 5 for p in pairs)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": p.image, "captions": list(p.captions)}) + "\n" for p in pairs))
    assert [p.captions for p in load_pairs(manifest)] == [p.captions for p in pairs]
    shard = write_webdataset(pairs, tmp_path / "shard-000.tar")
    from_tar = load_pairs(shard)
    assert [p.captions for p in from_tar] == [p.captions for p in pairs]
    assert from_tar[0].image == Path(str(pairs[0].image)).read_bytes()
    assert len(load_pairs(tmp_path)) == 16  # a folder of shards


def test_corrupt_images_are_skipped_and_counted(shapes: Path, tmp_path: Path) -> None:
    pairs = load_pairs(shapes, "test")[:3]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    counter = CorruptCounter()
    kept = load_valid_images(
        [*pairs, Pair(str(bad), ("x",), "bad"), Pair(str(tmp_path / "gone.png"), ("y",), "g")],
        max_pixels=10_000_000,
        counter=counter,
    )
    assert len(kept) == 3 and counter.skipped == 2
    assert "bad.png" in counter.reasons[0] and "no such file" in counter.reasons[1]


def test_whole_word_masking(encoder: LexLIPEncoder) -> None:
    vocab = encoder.vocab
    masker = WholeWordMasker(list(vocab.tokens), vocab.special_ids(), vocab.ids["[MASK]"])
    ids, _ = encoder.tokenizer(["unbelievably colourful circles everywhere"] * 64)
    pieces = encoder.tokenizer.tokenize("unbelievably colourful circles everywhere")
    assert any(p.startswith("##") for p in pieces)  # the test needs multi-piece words
    masked, labels = masker(torch.from_numpy(ids), 0.3, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    special = torch.isin(torch.from_numpy(ids), torch.tensor(vocab.special_ids()))
    assert not (chosen & special).any()
    assert chosen.any(dim=1).all()  # at least one word per text
    cont = torch.tensor([vocab.tokens[i].startswith("##") for i in ids[0]])
    for row in range(64):  # a continuation is masked exactly when the piece before it is
        for j in range(1, ids.shape[1]):
            if cont[j]:
                assert chosen[row, j] == chosen[row, j - 1]
    assert torch.equal(labels[chosen], torch.from_numpy(ids)[chosen])
    share_masked = (masked[chosen] == vocab.ids["[MASK]"]).float().mean()
    assert 0.6 < share_masked < 0.95  # 80 % [MASK], the rest random or kept
    word_rate = chosen.float().sum() / (~special).float().sum()
    assert 0.2 < word_rate < 0.45


def _pretrainer(encoder: LexLIPEncoder, **losses: object) -> Pretrainer:
    fresh = LexLIPEncoder.from_config("tiny", seed=0)
    vocab = fresh.vocab
    return Pretrainer(fresh.model, LossConfig(**losses), list(vocab.tokens), vocab.special_ids())  # type: ignore[arg-type]


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(encoder: LexLIPEncoder, shapes: Path) -> None:
    torch.manual_seed(0)
    module = _pretrainer(encoder).train()
    batch = _batch(encoder, shapes)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        out = module(*batch, generator=torch.Generator().manual_seed(1))
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert {"self_mlm", "image_mlm", "text_mlm", "contrastive", "flops"} <= set(out)
    assert losses[-1] < losses[0] * 0.9


def test_every_parameter_gets_a_gradient_and_the_bottleneck_embeddings_do_not(
    encoder: LexLIPEncoder, shapes: Path
) -> None:
    # every term, the auxiliary dense one and its distillation into the lexicons included
    module = _pretrainer(encoder, dense_weight=0.5, distill_weight=0.5).train()
    pixels, ids, mask = _batch(encoder, shapes)
    out = module(pixels, ids, mask, generator=torch.Generator().manual_seed(0))
    assert "dense" in out and "distill" in out and module.dense_image is not None
    out["loss"].backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []

    module.zero_grad(set_to_none=True)
    b = module.bottleneck(module.model.image_logits(pixels), None)
    b.sum().backward()
    embeddings = module.model.text.bert.embeddings.word_embeddings.weight
    assert embeddings.grad is None  # stop-gradient: b = softmax(...) @ sg(W_te)
    assert module.model.visual_head.decoder.weight.grad is not None


def test_distillation_moves_the_lexicon_scores_toward_the_dense_ones_and_never_the_dense_ones() -> None:
    from trainer.objectives import symmetric_distillation

    teacher = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.0, 0.3, 0.7]], requires_grad=True)
    assert float(symmetric_distillation(teacher.detach().clone(), teacher, 0.05)) == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(3, 3, requires_grad=True)
    loss = symmetric_distillation(student, teacher, 0.05)
    loss.backward()
    assert float(loss.detach()) > 0 and teacher.grad is None
    assert student.grad is not None and float(student.grad[0, 0]) < 0 < float(
        student.grad[0, 2]
    )  # raise 0.9, lower 0.0
    with pytest.raises(ValueError, match="set dense_weight too"):
        LossConfig(distill_weight=1.0)


def test_momentum_encoder_follows_the_ema_and_queues_hold_sparse_non_negative_keys(
    encoder: LexLIPEncoder, shapes: Path
) -> None:
    module = _pretrainer(
        encoder,
        self_mlm=False,
        image_mlm=False,
        text_mlm=False,
        contrastive=False,
        momentum=True,
        queue_size=12,
        queue_top_k=16,
        ema=0.9,
    ).train()
    assert module.momentum_model is not None
    pixels, ids, mask = _batch(encoder, shapes)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.5)
    before = [p.detach().clone() for p in module.momentum_model.parameters()]
    out = module(pixels, ids, mask)
    out["loss"].backward()
    optimizer.step()
    module.momentum_update()
    for old, mp, p in zip(before, module.momentum_model.parameters(), module.model.parameters(), strict=True):
        assert torch.allclose(mp, 0.9 * old + 0.1 * p.detach(), atol=1e-6)
    assert not all(torch.equal(o, m) for o, m in zip(before, module.momentum_model.parameters(), strict=True))
    assert int(module.queue_len) == 8 and int(module.queue_ptr) == 8
    module(pixels, ids, mask)
    assert int(module.queue_len) == 12 and int(module.queue_ptr) == 4  # a ring of 12
    for side in ("image", "text"):
        values = getattr(module, f"{side}_queue_val")
        indices = getattr(module, f"{side}_queue_idx")
        assert (values >= 0).all() and values.shape == (12, 16)
        assert all(len(set(row.tolist())) == 16 for row in indices)  # 16 distinct tokens per key
        assert (values > 0).sum(dim=1).max() <= 16


def _config(shapes: Path, out: Path, **kw: object) -> TrainConfig:
    base = {
        "data": str(shapes),
        "out": str(out),
        "steps": 4,
        "batch_size": 8,
        "checkpoint_every": 2,
        "log_every": 1,
        "progress": False,
        "lr": 1e-3,
    }
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_resuming_reproduces_the_same_steps(shapes: Path, tmp_path: Path) -> None:
    straight = train(_config(shapes, tmp_path / "a"))
    stopped = train(_config(shapes, tmp_path / "b", stop_after=2))
    assert stopped.name == "last" and not (tmp_path / "b" / "final").exists()
    resumed = train(_config(shapes, tmp_path / "b"))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    straight_rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight_rows]
    assert LexLIPEncoder.from_pretrained(resumed).encode_texts(["a red circle"])[0].nnz > 0


def test_phase2_and_finetune_start_from_a_phase1_checkpoint(shapes: Path, tmp_path: Path) -> None:
    phase1 = train(_config(shapes, tmp_path / "p1", steps=2))
    phase2 = train(
        _config(
            shapes,
            tmp_path / "p2",
            phase="phase2",
            init=str(phase1),
            steps=2,
            losses={"queue_size": 16, "queue_top_k": 32},
        )
    )
    tuned = train(_config(shapes, tmp_path / "ft", phase="finetune", init=str(phase2), steps=2))
    rows = [json.loads(line) for line in (tmp_path / "p2" / "metrics.jsonl").read_text().splitlines()]
    assert "momentum" in rows[-1] and "self_mlm" not in rows[-1]
    assert LexLIPEncoder.from_pretrained(tuned).encode_images([load_pairs(shapes, "test")[0].image])[0].nnz > 0


def test_the_dense_twin_trains_with_the_same_loop(shapes: Path, tmp_path: Path) -> None:
    from lexlip_es.encoders.dense import DenseEncoder

    final = train(_config(shapes, tmp_path / "dense", kind="dense", phase="finetune", steps=3))
    rows = [json.loads(line) for line in (tmp_path / "dense" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rows)
    vectors = DenseEncoder.from_pretrained(final).encode_texts(["a red circle"])
    assert vectors[0].shape == (64,)


def test_a_lexlip_model_can_start_from_the_dense_twins_towers(shapes: Path, tmp_path: Path) -> None:
    dense = train(_config(shapes, tmp_path / "dense", kind="dense", phase="finetune", steps=2))
    sparse = train(_config(shapes, tmp_path / "sparse", phase="finetune", steps=1, lr=1e-12, init_backbones=str(dense)))
    d, s = load_file(str(dense / "model.safetensors")), load_file(str(sparse / "model.safetensors"))
    assert torch.allclose(s["visual.patch_embed.proj.weight"], d["visual.patch_embed.proj.weight"], atol=1e-8)
    layer = "encoder.layer.1.output.dense.weight"
    assert torch.allclose(s[f"text.bert.{layer}"], d[f"text.{layer}"], atol=1e-8)
    with pytest.raises(ValueError, match="not a dense-twin checkpoint"):
        train(_config(shapes, tmp_path / "bad", phase="finetune", steps=1, init_backbones=str(sparse)))


def test_two_process_gloo_ddp_run_trains(shapes: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"log_every": 1, "progress": False, "lr": 1e-3}))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "lexlip_app.cli",
        "train",
        "phase1",
        "--config",
        str(config),
        "--data",
        str(shapes),
        "--out",
        str(tmp_path / "ddp"),
        "--steps",
        "3",
        "--batch-size",
        "8",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / "ddp" / "final" / "model.safetensors").exists()


def test_recall_counts_ties_against_the_model() -> None:
    scores = np.array([[5.0, 5.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 0.0]])
    assert ranks_against(scores, [[0], [1], [2]]).tolist() == [1, 0, 2]
    empty = np.zeros((4, 10))
    result = retrieval_metrics(empty, np.zeros((8, 10)), [0, 0, 1, 1, 2, 2, 3, 3])
    # empty vectors tie with everything: 3 other images, 6 other captions rank ahead of the right ones
    assert result["text_to_image"]["R@1"] == 0.0 and result["text_to_image"]["R@5"] == 1.0
    assert result["image_to_text"]["R@5"] == 0.0 and result["image_to_text"]["R@10"] == 1.0
    ident = np.eye(4)
    perfect = retrieval_metrics(ident, np.repeat(ident, 2, axis=0), [0, 0, 1, 1, 2, 2, 3, 3])
    assert perfect["text_to_image"]["R@1"] == 1.0 and perfect["image_to_text"]["R@1"] == 1.0


def test_misses_split_by_where_the_top_image_went() -> None:
    # images 0 and 1 are one family (skin-tone variants), 2 and 3 stand alone; captions 0-3 belong to images 0-3
    scores = np.array(
        [
            [1.0, 2.0, 0.0, 0.0],  # missed: its sibling (image 1) first
            [0.0, 3.0, 1.0, 0.0],  # found
            [0.0, 4.0, 4.0, 0.0],  # missed by a tie with image 1, another family
            [0.0, 0.0, 0.0, 1.0],  # found
        ]
    )
    assert misses_by_family(scores, [0, 1, 2, 3], ["a", "a", "b", "c"]) == {
        "captions": 4,
        "captions_of_an_image_with_family": 2,
        "missed": 2,
        "to_its_family": 1,
        "elsewhere": 1,
    }
    result = retrieval_metrics(np.eye(4), scores, [0, 1, 2, 3], ["a", "a", "b", "c"])
    assert result["text_to_image_misses"]["missed"] == 4 - round(4 * result["text_to_image"]["R@1"])
    assert "text_to_image_misses" not in retrieval_metrics(np.eye(4), scores, [0, 1, 2, 3])


def test_eval_command_prints_recall(shapes: Path, encoder: LexLIPEncoder, tmp_path: Path) -> None:
    encoder.save_pretrained(tmp_path / "ckpt")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lexlip_app.cli",
            "eval",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--data",
            str(shapes),
            "--top-k-image",
            "8",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["images"] == 16 and metrics["captions"] == 80 and metrics["mean_nnz_image"] == 8
    assert 0.0 <= metrics["text_to_image"]["R@1"] <= metrics["text_to_image"]["R@10"] <= 1.0


def test_sparse_vector_helpers_used_by_eval() -> None:
    v = SparseVector(np.array([1, 3]), np.array([2, 4], np.int32))
    assert v.to_dense(5).tolist() == [0, 2, 0, 4, 0]


def test_a_frozen_stem_run_saves_the_whole_unchanged_tower_and_resumes_exactly(shapes: Path, tmp_path: Path) -> None:
    # the emoji config (EfficientNet-Lite0 + MiniLM-L6) from random image weights: stem + blocks 0-2 frozen, run once
    settings = {
        "model": "emoji",
        "vision_weights": "random",
        "frozen_vision_blocks": 3,
        "batch_size": 4,
        "tower_lr": 1e-4,
        "phase": "finetune",
    }
    straight = train(_config(shapes, tmp_path / "a", **settings))
    stopped = train(_config(shapes, tmp_path / "b", stop_after=2, **settings))
    start = load_file(str(stopped / "model.safetensors"))  # step 2 (the resumed run overwrites `last`)
    resumed = train(_config(shapes, tmp_path / "b", **settings))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untouched = [
        k for k in a if k.startswith(("visual.conv_stem.", "visual.bn1.", "visual.blocks.0.", "visual.blocks.2."))
    ]
    trained = [k for k in a if k.startswith("visual.blocks.5.") and k.endswith("weight")]
    assert untouched and trained
    assert all(torch.equal(a[k], start[k]) for k in untouched)  # frozen, and saved whole
    assert any(not torch.equal(a[k], start[k]) for k in trained)
    loaded = LexLIPEncoder.from_pretrained(resumed).model.state_dict()
    assert all(torch.equal(loaded[k], a[k]) for k in untouched + trained)  # the checkpoint loads as a whole tower


def test_grouped_batches_keep_each_group_together_and_cover_the_epoch() -> None:
    groups = [f"family{i // 6}" for i in range(30)] + [f"single{i}" for i in range(34)]
    batches, _ = _batch_indices(len(groups), 8, 0, 3, 0, 1, groups)
    order = batches.flatten().tolist()
    assert sorted(order) == list(range(64))
    for family in {g for g in groups if g.startswith("family")}:
        places = [order.index(i) for i, g in enumerate(groups) if g == family]
        assert max(places) - min(places) == 5  # the six siblings sit next to each other
    again, _ = _batch_indices(len(groups), 8, 0, 3, 0, 1, groups)
    assert np.array_equal(batches, again)
    plain, _ = _batch_indices(len(groups), 8, 0, 3, 0, 1)
    assert not np.array_equal(batches, plain)
    pairs, _ = _batch_indices(len(groups), 8, 0, 3, 0, 1, groups, group_size=2)
    order = pairs.flatten().tolist()
    assert sorted(order) == list(range(64))
    for first in range(0, 30, 6):  # each family of six is laid out as three adjacent pairs
        places = sorted(order.index(i) for i in range(first, first + 6))
        assert sum(b - a == 1 for a, b in pairwise(places)) >= 3


def test_the_sibling_mask_marks_pairs_of_one_group_and_never_an_item_with_itself() -> None:
    groups = ["cat", "dog", "cat", "fox", "dog"]
    mask = sibling_mask(groups, np.array([2, 0, 3, 4]))
    assert mask.tolist() == [
        [False, True, False, False],  # item 2 (cat) and item 0 (cat)
        [True, False, False, False],
        [False, False, False, False],  # fox has no sibling in the batch
        [False, False, False, False],  # dog 4's sibling (1) is not in this batch
    ]


def test_calibrate_picks_the_power_on_val_and_eval_scores_weighted_queries(
    shapes: Path, encoder: LexLIPEncoder, tmp_path: Path
) -> None:
    from lexlip_es.query_weights import QueryWeights
    from trainer.calibrate import POWERS

    checkpoint = tmp_path / "ckpt"
    encoder.save_pretrained(checkpoint)

    def lexlip(*args: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "lexlip_app.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    plain = lexlip("eval", "--checkpoint", str(checkpoint), "--data", str(shapes))
    chosen = lexlip("calibrate", "--checkpoint", str(checkpoint), "--data", str(shapes))
    weights = QueryWeights.load(checkpoint)
    assert weights is not None and weights.documents == 64 and chosen["split"] == "val" and chosen["captions"] == 20
    figures = {float(p): r for p, r in chosen["t2i_R@1_by_power"].items()}
    assert sorted(figures) == sorted(POWERS) and weights.power == chosen["power"]
    assert figures[weights.power] == max(figures.values())
    assert all(p > weights.power for p, r in figures.items() if r == figures[weights.power] and p != weights.power)

    weights.with_power(1.0).save(checkpoint)  # a power the tiny model may not choose, so the weighted path runs
    scored = lexlip("eval", "--checkpoint", str(checkpoint), "--data", str(shapes))
    assert scored["query_weights_power"] == 1.0 and "query_weights_power" not in plain
    assert scored["text_to_image_unweighted"] == plain["text_to_image"]
    assert scored["image_to_text"] == plain["image_to_text"]  # captions are documents there: never weighted
