"""The text tower through ONNX Runtime, so a search service encodes queries without torch.

`export_text_onnx` (needs torch) writes `text_encoder.onnx` into a checkpoint folder: token ids and attention mask
in, pooled sparse vector (B x vocabulary) out, the log-saturation and special-token mask included.
`OnnxTextEncoder` (needs only onnxruntime, tokenizers and numpy) reads that folder.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lexlip_es.encoders.base import TextEncoder, checkpoint_model_id
from lexlip_es.query_weights import QueryWeights, query_vectors
from lexlip_es.sparse import SparseVector
from lexlip_es.tokenizer import LENGTH_WINDOW, TextTokenizer, length_batches

ONNX_FILE = "text_encoder.onnx"
OPSET = 17


def export_text_onnx(encoder: Any, directory: str | Path) -> Path:
    """Export a LexLIPEncoder's text side into a checkpoint folder (saved there first if it holds no checkpoint)."""
    import torch

    directory = Path(directory)
    if not (directory / "config.json").exists():
        encoder.save_pretrained(directory)
    model = encoder.model

    class TextSparse(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner.encode_text(input_ids, attention_mask)  # type: ignore[no-any-return]

    wrapper = TextSparse().cpu().eval()
    ids, mask = encoder.tokenizer(["a photo of a red circle", "two stars"])
    path = directory / ONNX_FILE
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python control flow that is constant for our inputs
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["lexicon"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "lexicon": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    model.to(encoder.device)
    return path


def onnx_session(path: Path, threads: int | None = None) -> Any:
    """A CPU ONNX Runtime session; `threads` fixes its intra-op threads (one per worker process on a busy box)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTextEncoder(TextEncoder):
    """Text -> sparse lexicon vector through ONNX Runtime (CPU), same tokenizer and pooling as the torch path;
    `encode_queries` with the folder's query term weights, as `LexLIPEncoder.encode_queries`."""

    def __init__(
        self,
        directory: str | Path,
        batch_size: int = 32,
        threads: int | None = None,
        onnx_dir: str | Path | None = None,
    ) -> None:
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        if config.get("kind", "lexlip") != "lexlip":
            raise ValueError(f"{directory} holds a {config['kind']!r} model; ONNX export covers LexLIP text towers")
        self.tokenizer = TextTokenizer(directory, config["text"]["max_length"])
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else directory
        """Where the `.onnx` files are: beside the checkpoint, or a cache folder when that one is read-only."""
        self.session = onnx_session(self.onnx_dir / ONNX_FILE, threads)
        width = self.session.get_inputs()[0].shape[1]
        self.trims = not isinstance(width, int)
        """Exports before 2026-12-08 take exactly `max_length` tokens: their batches are not cut to the longest."""
        self.batch_size = batch_size
        self.model_id = checkpoint_model_id(directory)
        self.query_weights = QueryWeights.load(directory)

    @property
    def vocab(self) -> Any:
        return self.tokenizer.vocab

    def encode_texts(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [SparseVector.from_output(row, scale, top_k) for row in self._rows(texts)]

    def encode_queries(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return query_vectors(self._rows(texts), self.query_weights, self.vocab, scale, top_k)

    def _rows(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        """One output row per text, in order: a window of batches tokenized at once and run in batches of similar
        length, as the torch path does (`length_batches`)."""
        texts = list(texts)
        window = self.batch_size * LENGTH_WINDOW
        for start in range(0, len(texts), window):
            ids, mask = self.tokenizer(texts[start : start + window])
            rows: list[np.ndarray] = [np.empty(0)] * len(ids)
            for picked, short_ids, short_mask in length_batches(ids, mask, self.batch_size, trim=self.trims):
                (pooled,) = self.session.run(["lexicon"], {"input_ids": short_ids, "attention_mask": short_mask})
                for row, out in zip(picked.tolist(), np.asarray(pooled, dtype=np.float32), strict=True):
                    rows[row] = out
            yield from rows
