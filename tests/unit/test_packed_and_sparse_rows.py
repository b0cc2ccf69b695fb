"""Training's two shortcuts give the plain paths' numbers: the text tower over real tokens only (model/packed.py) and
row-sparse vocabulary matrices with their lazy AdamW (trainer/sparse_rows.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lexlip_es.encoders.dense import DenseEncoder
from lexlip_es.model import create_model
from lexlip_es.model.packed import Packing, packed_bert
from tests.unit.test_grounding import GROUNDED, _grounded_batch, _grounded_pretrainer
from trainer.data.shapes import generate_shapes
from trainer.loop import TrainConfig, train
from trainer.sparse_rows import LazyAdamW, clip_grad_norm, sparse_row_matrices


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), n_train=32, n_val=4, n_test=8, seed=5, image_size=48)


def _ids(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([7, 2, 12, 5])
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1000, vocab_size, (4, 12), generator=torch.Generator().manual_seed(0)) * mask
    return ids, mask


def test_packing_round_trips_and_zeroes_the_padding() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    packing = Packing.of(mask)
    padded = torch.arange(6.0).reshape(2, 3, 1)
    packed = packing.pack(padded)
    assert packed[:, 0].tolist() == [0.0, 1.0, 3.0]
    assert packing.pad(packed)[..., 0].tolist() == [[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]]


def test_the_packed_text_tower_is_bert_at_every_real_token() -> None:
    model = create_model("tiny", seed=0).eval()
    bert = model.text.bert
    ids, mask = _ids(bert.config.vocab_size)
    with torch.no_grad():
        plain = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        packed, packing = packed_bert(bert, ids, mask)
    assert packed.shape == (int(mask.sum()), bert.config.hidden_size)
    assert torch.allclose(packing.pad(packed)[mask.bool()], plain[mask.bool()], atol=1e-5)
    assert not packing.pad(packed)[~mask.bool()].any()


def test_the_dense_twin_packed_gives_the_same_text_vectors() -> None:
    model = DenseEncoder.from_config("tiny", seed=0).model.eval()
    ids, mask = _ids(model.text.config.vocab_size)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(ids, mask, packed=True), model.encode_text(ids, mask), atol=1e-5)


def test_packed_and_sparse_rows_give_the_plain_losses_and_gradients(shapes: Path) -> None:
    plain, encoder = _grounded_pretrainer(contrastive=True, dense_weight=0.5)
    fast, _ = _grounded_pretrainer(contrastive=True, dense_weight=0.5)
    fast.load_state_dict(plain.state_dict())
    sparse_row_matrices(fast.model)
    fast.packed, fast.sparse_rows = True, True
    batch = _grounded_batch(encoder, shapes)
    results = []
    for module in (plain, fast):
        module.eval()  # no dropout: the same numbers
        out = module(*batch[:3], targets=batch[3])
        out["loss"].backward()
        results.append(out)
    assert torch.allclose(results[0]["loss"], results[1]["loss"], atol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        if p.grad is None:
            assert q.grad is None, name
            continue
        got = q.grad.to_dense() if q.grad.is_sparse else q.grad
        assert torch.allclose(got, p.grad, atol=1e-5), name
    embeddings = fast.model.text.bert.embeddings.word_embeddings.weight
    assert embeddings.grad is not None and embeddings.grad.is_sparse
    assert fast.model.visual_head.decoder.weight.grad.is_sparse  # type: ignore[union-attr]


def test_lazy_adamw_moves_the_rows_read_as_adamw_does_and_no_other() -> None:
    weight = torch.nn.Parameter(torch.randn(10, 4, generator=torch.Generator().manual_seed(1)))
    twin = torch.nn.Parameter(weight.detach().clone())
    start = weight.detach().clone()
    columns, x = torch.tensor([1, 3, 3, 7]), torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    F.linear(x, F.embedding(columns, weight, sparse=True)).square().sum().backward()
    F.linear(x, twin[columns]).square().sum().backward()
    assert weight.grad is not None and weight.grad.is_sparse
    assert torch.allclose(clip_grad_norm([weight], 0.5), torch.nn.utils.clip_grad_norm_([twin], 0.5))
    lazy, dense = LazyAdamW([weight], lr=0.1, weight_decay=0.01), torch.optim.AdamW([twin], lr=0.1, weight_decay=0.01)
    lazy.step()
    dense.step()
    read = torch.tensor([1, 3, 7])
    others = torch.tensor([i for i in range(10) if i not in read.tolist()])
    assert torch.allclose(weight[read], twin[read], atol=1e-6)  # step 1: the same update where read
    assert torch.equal(weight.detach()[others], start[others])  # the rest untouched (AdamW decays them)
    assert not torch.equal(twin.detach()[others], start[others])


def test_a_row_sparse_run_resumes_exactly_and_leaves_unread_rows_alone(shapes: Path, tmp_path: Path) -> None:
    def config(out: Path, **kw: object) -> TrainConfig:
        settings = {
            "data": str(shapes),
            "out": str(out),
            "model": "shapes",
            "steps": 4,
            "batch_size": 8,
            "log_every": 1,
            "checkpoint_every": 2,
            "progress": False,
            "losses": {**GROUNDED, "contrastive": True},
        }
        return TrainConfig(**{**settings, **kw})  # type: ignore[arg-type]

    straight = train(config(tmp_path / "a"))
    train(config(tmp_path / "b", stop_after=2))
    resumed = train(config(tmp_path / "b"))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = create_model("shapes", seed=0).state_dict()
    for name in ("text.bert.embeddings.word_embeddings.weight", "visual_head.decoder.weight"):
        moved = (a[name] != fresh[name]).any(dim=1)
        assert 0 < int(moved.sum()) < 1000, name  # the captions' tokens and sampled negatives, not 30,522 rows
