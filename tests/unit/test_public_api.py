"""The library's public surface: `load_encoder` picks the right encoder, and `AsyncLexSearch` mirrors `LexSearch`
method for method."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from lexlip_es import AsyncLexSearch, LexLIPEncoder, LexlipError, LexSearch, load_encoder


def test_load_encoder_gives_each_checkpoint_its_encoder(tmp_path: Path) -> None:
    from lexlip_es.encoders.dense import DenseEncoder
    from lexlip_es.encoders.onnx_text import OnnxTextEncoder, export_text_onnx

    saved = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "lexlip")
    torch_encoder = load_encoder(saved)
    assert type(torch_encoder) is LexLIPEncoder and torch_encoder.model_id.startswith("tiny-")
    with pytest.raises(LexlipError, match=r"holds no text_encoder\.onnx"):
        load_encoder(saved, kind="onnx")
    export_text_onnx(torch_encoder, saved)
    onnx = load_encoder(saved)
    assert type(onnx) is OnnxTextEncoder and onnx.model_id == torch_encoder.model_id  # queries without torch
    assert type(load_encoder(saved, kind="torch")) is LexLIPEncoder  # images need torch
    DenseEncoder.from_config("tiny", seed=0).save_pretrained(tmp_path / "dense")
    assert type(load_encoder(tmp_path / "dense")) is DenseEncoder
    with pytest.raises(LexlipError, match="is not a checkpoint folder"):
        load_encoder(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(LexlipError, match="is not valid JSON"):
        load_encoder(tmp_path / "broken")
    assert json.loads((saved / "config.json").read_text())["name"] == "tiny"


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_lex_search_mirrors_lex_search_method_for_method() -> None:
    sync, asynchronous = _public(LexSearch), _public(AsyncLexSearch)
    assert (
        set(sync)
        == set(asynchronous)
        == {"layout", "backend", "search_vector", "search_text", "search_image", "explain"}
    )
    for name, signature in sync.items():
        assert inspect.iscoroutinefunction(getattr(AsyncLexSearch, name)), name
        assert not inspect.iscoroutinefunction(getattr(LexSearch, name)), name
        other = asynchronous[name]
        assert list(signature.parameters.values()) == list(other.parameters.values()), name
        returned = str(signature.return_annotation)
        assert returned.replace("EngineBackend", "AsyncEngineBackend") == str(other.return_annotation), name
        assert getattr(LexSearch, name).__doc__ and getattr(AsyncLexSearch, name).__doc__, name


def test_encode_documents_as_ingest_writes_them(tmp_path: Path) -> None:
    from PIL import Image

    from lexlip_es import LexiconLayout, encode_documents
    from lexlip_es.documents import merge_max

    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    layout = LexiconLayout(encoder.model_id, top_k_image=20, top_k_text=10)
    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue")]
    captions = [["a red square", "red"], []]
    docs = encode_documents(encoder, layout, ["a", "b"], images, captions, [{"shop": "eu"}, {}])
    assert [d.id for d in docs] == ["a", "b"]
    want_image = encoder.encode_images(images[:1], scale=layout.scale, top_k=20)[0]
    assert docs[0].image == want_image.to_features(encoder.vocab, escape=False) and len(docs[0].image) <= 20
    merged = merge_max(encoder.encode_texts(captions[0], scale=layout.scale, top_k=10))
    assert docs[0].captions == merged.to_features(encoder.vocab, escape=False)
    assert docs[0].metadata == {"shop": "eu", "captions": ["a red square", "red"]}
    assert docs[1].captions == {} and docs[1].metadata == {}
    with pytest.raises(ValueError, match="same length: 2, 1, 2, 2"):
        encode_documents(encoder, layout, ["a", "b"], images[:1], captions)
