"""The active vocabulary of a training run, and each step's lexicon targets.

LexLIP's vocabulary heads score 30,522 WordPieces at every image patch and caption token: 96% of a step on a CPU
(benchmarks/results/step_cost.md). During training only the tokens the captions use can be positives, so a step scores
those (the *active* vocabulary) plus a fresh sample of other tokens as negatives; every other logit is left alone,
and since the heads start with a negative bias (`head_bias`) those tokens stay off. Nothing of this is saved: the
checkpoint is a plain LexLIP model that scores the whole vocabulary.

Each step also gets the targets that ground the lexicons in words:
- image words: the content WordPieces of every caption of the image (what people say about it), and their BM25
  weights in the image's caption document (all its captions together: how much each word says about this image);
- own words: the WordPieces of the caption in the batch (the caption side's restriction, STAIR's first stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lexlip_es.grounding import is_content_token
from lexlip_es.tokenizer import TextTokenizer


@dataclass(frozen=True)
class LexiconTargets:
    """One step's columns (active ids, then sampled negatives) and targets over them (B x A, 0 or 1)."""

    columns: torch.Tensor
    image_words: torch.Tensor
    image_weights: torch.Tensor
    """B x A: the BM25 weight of each content word in the image's caption document (0 elsewhere)."""
    own_words: torch.Tensor
    content: torch.Tensor
    """1 where the column is a content token (the bag-of-words losses leave stop words and pieces to contrastive)."""
    active: int = 0
    """How many of the columns are the active vocabulary (the rest are the step's sampled negatives)."""

    def to(self, device: torch.device) -> LexiconTargets:
        return LexiconTargets(
            self.columns.to(device),
            self.image_words.to(device),
            self.image_weights.to(device),
            self.own_words.to(device),
            self.content.to(device),
            self.active,
        )


def bm25_weights(counts: np.ndarray, k1: float = 1.2, b: float = 0.75, scale: float = 0.5) -> np.ndarray:
    """BM25 document weights (N documents x T terms of raw counts): idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b *
    length / mean length)), with Lucene's idf log(1 + (N - df + 0.5) / (df + 0.5)); times `scale` (0.5 keeps
    quantized weights well below Lucene's 9-bit limit of 511)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[0]
    df = (counts > 0).sum(axis=0)
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    length = counts.sum(axis=1, keepdims=True)
    norm = k1 * (1 - b + b * length / max(float(length.mean()), 1e-9))
    return np.asarray(scale * idf * counts * (k1 + 1) / (counts + norm))


class ActiveVocabulary:
    """Tokens of the training captions (special tokens left out) and a sampler of negatives from the rest."""

    def __init__(
        self,
        captions: Sequence[Sequence[str]],
        tokenizer: TextTokenizer,
        negatives: int,
        words_only: bool = False,
        max_df: float = 1.0,
        extra: Sequence[int] = (),
    ) -> None:
        """`words_only`: the targets hold words only (content tokens in at most `max_df` of the images' captions)
        and every active column is scored, so everything else is trained off; else non-content columns are left
        out of the bag-of-words losses. `extra`: token ids scored every step beside the captions' own."""
        if negatives < 0:
            raise ValueError(f"negatives must be >= 0, got {negatives}")
        vocab = tokenizer.vocab
        special = np.zeros(len(vocab), dtype=bool)
        special[vocab.special_ids()] = True
        flat = [c for group in captions for c in group]
        owner = np.repeat(np.arange(len(captions)), [len(group) for group in captions])
        ids, mask = tokenizer(flat)
        used = np.zeros(len(vocab), dtype=bool)
        used[ids[mask.astype(bool)]] = True
        used[np.asarray(extra, dtype=np.int64)] = True  # more active columns (the prior's words): never targets
        used &= ~special
        self.active = np.flatnonzero(used)
        self.inactive = torch.from_numpy(np.flatnonzero(~used & ~special))
        self.negatives = min(negatives, int((~used & ~special).sum()))
        self.column_of = np.full(len(vocab), -1, dtype=np.int64)
        self.column_of[self.active] = np.arange(self.active.size)
        content = np.array([is_content_token(vocab.tokens[t]) for t in self.active], dtype=np.float32)
        # per image: how often each content word occurs over all its captions, then BM25 over the images
        counts = np.zeros((len(captions), self.active.size), dtype=np.float32)
        for row, image in zip(np.asarray(ids), owner, strict=True):
            columns = self.column_of[row]
            np.add.at(counts[image], columns[columns >= 0], 1.0)
        counts *= content[None, :]
        if words_only:
            content *= (counts > 0).mean(axis=0) <= max_df
            counts *= content[None, :]
        self.words = torch.from_numpy(content)
        """1 for the columns that are words: the only possible targets."""
        self.content = torch.ones_like(self.words) if words_only else self.words
        self._words_only = words_only
        self._image_weights = torch.from_numpy(bm25_weights(counts).astype(np.float32))

    @torch.no_grad()
    def set_inactive_bias(self, heads: Sequence[torch.nn.Module], value: float) -> None:
        """Start every token outside the active vocabulary (special tokens aside) at bias `value` in these LM heads."""
        for head in heads:
            bias: torch.Tensor = head.bias  # type: ignore[assignment]
            bias[self.inactive.to(bias.device)] = value

    def __len__(self) -> int:
        return int(self.active.size)

    def targets(
        self, images: np.ndarray, ids: np.ndarray, mask: np.ndarray, generator: torch.Generator
    ) -> LexiconTargets:
        """Targets for a batch: `images` are bank indices, `ids`/`mask` the batch's tokenized captions."""
        batch, active = len(images), len(self)
        picks = torch.randperm(self.inactive.numel(), generator=generator)[: self.negatives]
        negatives, _ = self.inactive[picks].sort()
        columns = torch.cat([torch.from_numpy(self.active), negatives])
        width = active + self.negatives
        image_weights = torch.zeros(batch, width)
        image_weights[:, :active] = self._image_weights[torch.from_numpy(np.asarray(images))]
        image_words = (image_weights > 0).float()
        own_words = torch.zeros(batch, width)
        own = self.column_of[np.where(mask.astype(bool), ids, 0)]
        rows, cols = np.nonzero(own >= 0)
        own_words[torch.from_numpy(rows), torch.from_numpy(own[rows, cols])] = 1.0
        if self._words_only:
            own_words[:, :active] *= self.words
        content = torch.cat([self.content, torch.ones(self.negatives)])
        return LexiconTargets(columns, image_words, image_weights, own_words, content, active)
