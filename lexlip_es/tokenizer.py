"""WordPiece tokenization through the `tokenizers` library: the same code on the torch and the ONNX paths.

Texts are always padded to the model's fixed `max_length`, so a text's vector never depends on its batch-mates.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lexlip_es.sparse import Vocabulary

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
LENGTH_WINDOW = 8
"""Encoders sort texts by length within windows of this many batches (`length_batches`), so only one window of
vocabulary-wide rows is alive at a time."""


class TextTokenizer:
    def __init__(self, directory: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in {directory}")
        self.directory = directory
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length=max_length)
        pad_id = self._tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            raise ValueError(f"{path} has no [PAD] token")
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]", length=max_length)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        tokens = [""] * len(vocab)
        for token, i in vocab.items():
            tokens[i] = token
        self.vocab = Vocabulary(tokens)

    def __call__(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Token ids and attention mask, both `len(texts) x max_length`."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), self.max_length)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(texts), self.max_length)
        return ids, mask

    def tokenize(self, text: str) -> list[str]:
        return [t for t in self._tokenizer.encode(text).tokens if t != "[PAD]"]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.directory / TOKENIZER_FILE, directory / TOKENIZER_FILE)
        (directory / VOCAB_FILE).write_text("\n".join(self.vocab.tokens) + "\n", encoding="utf-8")


def trim_padding(ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """A batch cut to its longest text: the padding columns past it change no real token's output (attention never
    reads them), and a batch of short captions costs the text tower and its vocabulary head far less."""
    width = max(1, int(mask.sum(axis=1).max()))
    return ids[:, :width], mask[:, :width]


def length_batches(
    ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], batch_size: int, trim: bool = True
) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """The rows in batches of similar length, each cut to its longest text (`trim_padding`): (row numbers, ids,
    mask) per batch. Every row's output is what a fixed-length batch gives it, at a fraction of the cost. `trim`
    False keeps the full width (a model exported for exactly `max_length` tokens)."""
    order = np.argsort(mask.sum(axis=1), kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        short_ids, short_mask = trim_padding(ids[rows], mask[rows]) if trim else (ids[rows], mask[rows])
        yield rows, short_ids, short_mask
