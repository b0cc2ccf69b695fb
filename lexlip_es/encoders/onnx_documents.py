"""Images and captions through ONNX Runtime: the ingest workers' CPU path.

`export_onnx` (needs torch) writes `image_encoder.onnx` beside `text_encoder.onnx` (onnx_text.py) for a LexLIP
checkpoint: pixels in, pooled sparse vector out, the ImageNet word prior and the output norm included. Before it
keeps them it runs both files and the torch model on a probe batch and refuses an export whose outputs differ by more
than `MAX_DIFF`; `onnx.json` records the checkpoint's model id, the differences found and the versions, so a
retrained checkpoint (another model id) is exported again. `ensure_onnx` does all that once per checkpoint, beside
it, or in the cache when the checkpoint folder is read-only.

`OnnxEncoder` (needs onnxruntime, tokenizers, Pillow and numpy) encodes documents as `LexLIPEncoder` does: the same
decoding, crop and tokenizer, the same vectors to float32 rounding (at scale 100 a weight can differ by one step where
torch's value lies within 1e-5 of a step: tests/unit/test_onnx_documents.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lexlip_es.encoders.base import ImageEncoder, checkpoint_model_id
from lexlip_es.encoders.images import DEFAULT_MAX_PIXELS, ImageInput, image_batch
from lexlip_es.encoders.onnx_text import ONNX_FILE, OPSET, OnnxTextEncoder, export_text_onnx, onnx_session
from lexlip_es.errors import LexlipError
from lexlip_es.sparse import SparseVector

IMAGE_ONNX_FILE = "image_encoder.onnx"
RECORD_FILE = "onnx.json"
MAX_DIFF = 1e-4
"""The most an exported file's pooled output may differ from torch's on the probe batch (float32 noise is ~1e-6)."""
IMAGE_BATCH = 8
"""Pictures per ONNX Runtime call: its arena keeps the largest activations it has seen, 804 MiB more for 32 pictures
at 224 px than 195 for 8, and 8 at a time was also faster (0.57 s against 0.66 for 32 on one thread)."""
PROBE_TEXTS = ("a photo of a red circle", "two stars", "a tiger in the grass, big cat", "guitar")


class OnnxExportError(LexlipError):
    """An export that could not be written or does not give torch's vectors."""


def export_image_onnx(encoder: Any, path: Path) -> Path:
    """A LexLIPEncoder's image side as one ONNX file: N x 3 x S x S normalised pixels -> N x vocabulary."""
    import torch

    model = encoder.model

    class ImageSparse(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.inner.encode_image(pixels)  # type: ignore[no-any-return]

    size = encoder.image_size
    wrapper = ImageSparse().cpu().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.zeros(2, 3, size, size),),
            str(path),
            input_names=["pixels"],
            output_names=["lexicon"],
            dynamic_axes={"pixels": {0: "batch"}, "lexicon": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model.to(encoder.device)
    return path


def probe_images(size: int) -> list[Any]:
    """Four deterministic pictures (gradients, a checkerboard, a disc) for the export check."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1)[..., None] * np.array([220, 40, 30])
    planes = [
        np.stack([x, y, 1 - x], axis=-1) * 255,
        np.stack([y, 1 - y, x * y], axis=-1) * 255,
        ((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None].repeat(3, axis=-1) * 255,
        disc + 20,
    ]
    return [Image.fromarray(np.clip(p, 0, 255).astype(np.uint8), mode="RGB") for p in planes]


def export_onnx(encoder: Any, directory: str | Path, onnx_dir: str | Path | None = None) -> Path:
    """Write both ONNX files of a saved LexLIP checkpoint into `onnx_dir` (default: the checkpoint folder), check
    them against `encoder` and record the check in `onnx.json`; returns `onnx_dir`.

    Raises:
        OnnxExportError: the exported files' vectors differ from torch's by more than `MAX_DIFF`.
    """
    directory = Path(directory)
    target = Path(onnx_dir) if onnx_dir is not None else directory
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".onnx-export-") as tmp_name:
        tmp = Path(tmp_name)
        export_text_onnx(encoder, _checkpoint_copy(directory, tmp))
        export_image_onnx(encoder, tmp / IMAGE_ONNX_FILE)
        vision = encoder.config.vision
        pixels = {"size": vision.image_size, "mean": list(vision.mean), "std": list(vision.std)}
        diffs = _check(encoder, directory, tmp, pixels)
        record = {
            "model_id": checkpoint_model_id(directory),
            "pixels": pixels,
            "max_abs_diff": diffs,
            "opset": OPSET,
            "versions": _versions(),
        }
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        for name in (ONNX_FILE, IMAGE_ONNX_FILE, RECORD_FILE):  # the record last: it vouches for the others
            os.replace(tmp / name, target / name)
    return target


def _checkpoint_copy(directory: Path, tmp: Path) -> Path:
    """`export_text_onnx` writes into a checkpoint folder: point it at `tmp` holding the checkpoint's config."""
    for name in ("config.json",):
        (tmp / name).write_bytes((directory / name).read_bytes())
    return tmp


def _check(encoder: Any, directory: Path, tmp: Path, pixels: dict[str, Any]) -> dict[str, float]:
    onnx = OnnxEncoder(directory, onnx_dir=tmp, pixels=pixels)
    size = len(encoder.vocab)
    images = probe_images(encoder.image_size)
    pairs = {
        "image": (encoder.encode_images(images), onnx.encode_images(images)),
        "text": (encoder.encode_texts(PROBE_TEXTS), onnx.encode_texts(PROBE_TEXTS)),
    }
    diffs = {}
    for side, (ours, theirs) in pairs.items():
        a = np.stack([v.to_dense(size) for v in ours]).astype(np.float64)
        b = np.stack([v.to_dense(size) for v in theirs]).astype(np.float64)
        diffs[side] = float(np.abs(a - b).max())
        if not diffs[side] <= MAX_DIFF:
            raise OnnxExportError(
                f"the ONNX {side} encoder of {directory} differs from torch by {diffs[side]:.2e} (at most "
                f"{MAX_DIFF:.0e} allowed); ingest with LEXLIP_WORKER_RUNTIME=torch"
            )
    return diffs


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def exported_for(onnx_dir: Path, model_id: str) -> bool:
    """Whether `onnx_dir` holds a checked export of the checkpoint whose model id is `model_id`."""
    try:
        record = json.loads((onnx_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return False
    files = all((onnx_dir / name).is_file() for name in (ONNX_FILE, IMAGE_ONNX_FILE))
    return files and record.get("model_id") == model_id


def ensure_onnx(directory: str | Path, cache_dir: Path) -> Path:
    """The folder holding a checked ONNX export of the LexLIP checkpoint in `directory`, exported now if missing or
    made for other weights: beside the checkpoint, else (a read-only folder) in `cache_dir/onnx/<model id>`."""
    directory = Path(directory)
    model_id = checkpoint_model_id(directory)
    fallback = cache_dir / "onnx" / model_id
    for folder in (directory, fallback):
        if exported_for(folder, model_id):
            return folder
    from lexlip_es.encoders.lexlip import LexLIPEncoder

    encoder = LexLIPEncoder.from_pretrained(directory, device="cpu")
    target = directory if os.access(directory, os.W_OK) else fallback
    return export_onnx(encoder, directory, target)


class OnnxEncoder(OnnxTextEncoder, ImageEncoder):
    """A LexLIP checkpoint's documents through ONNX Runtime: `encode_images` beside `OnnxTextEncoder`'s texts and
    queries. `onnx_dir` holds the exported files and their record (`ensure_onnx`), which must name this
    checkpoint's weights and says how pixels are fed; `pixels` (size, mean, std) stands in for the record while an
    export is being checked."""

    def __init__(
        self,
        directory: str | Path,
        batch_size: int = 32,
        threads: int | None = None,
        onnx_dir: str | Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pixels: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(directory, batch_size=batch_size, threads=threads, onnx_dir=onnx_dir)
        if pixels is None:
            if not exported_for(self.onnx_dir, self.model_id):
                raise OnnxExportError(f"{self.onnx_dir} holds no checked ONNX export of {self.model_id} (ensure_onnx)")
            pixels = json.loads((self.onnx_dir / RECORD_FILE).read_text())["pixels"]
        self.vision_size = int(pixels["size"])
        self.mean, self.std = tuple(pixels["mean"]), tuple(pixels["std"])
        self.max_pixels = max_pixels
        self.image_session = onnx_session(self.onnx_dir / IMAGE_ONNX_FILE, threads)

    @property
    def image_size(self) -> int:
        return self.vision_size

    def encode_images(
        self, images: Sequence[ImageInput], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]:
        return [SparseVector.from_output(v, scale, top_k) for v in self._image_rows(images)]

    def _image_rows(self, images: Sequence[ImageInput]) -> Iterator[np.ndarray]:
        images = list(images)
        for start in range(0, len(images), IMAGE_BATCH):
            pixels = image_batch(
                images[start : start + IMAGE_BATCH], self.vision_size, self.mean, self.std, start, self.max_pixels
            )
            (pooled,) = self.image_session.run(["lexicon"], {"pixels": pixels})
            yield from np.asarray(pooled, dtype=np.float32)
