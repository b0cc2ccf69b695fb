"""LexLIP: both towers end in LM heads over the text vocabulary; sparse vectors are max-pooled log-saturated logits."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lexlip_es.model.config import LexLIPConfig
from lexlip_es.model.packed import Packing, packed_bert
from lexlip_es.model.prior import ImageNetPrior
from lexlip_es.model.screen import Screen
from lexlip_es.model.towers import build_text_mlm, build_visual, visual_width


def sparse_pool(logits: torch.Tensor, mask: torch.Tensor | None, vocab_mask: torch.Tensor) -> torch.Tensor:
    """p = log(1 + max over positions of relu(logits)); masked positions (padding) never win the max;
    ids where `vocab_mask` is 0 (special tokens) are zeroed. logits: B x L x V, mask: B x L, result: B x V."""
    activated = torch.relu(logits)
    if mask is not None:
        activated = activated * mask.unsqueeze(-1).to(activated.dtype)
    return torch.log1p(activated.amax(dim=1)) * vocab_mask.to(activated.dtype)


def vocabulary_logits(
    head: Any, hidden: torch.Tensor, columns: torch.Tensor | None = None, sparse: bool = False
) -> torch.Tensor:
    """A BERT LM prediction head (transform, then decoder) over all of the vocabulary, or only over `columns`: the
    same numbers for those ids at a fraction of the cost (the decoder is most of a LexLIP step). `sparse`: the
    decoder's gradient holds only the rows of `columns` (training's row-sparse optimizer, trainer/sparse_rows.py)."""
    features = head.transform(hidden)
    if columns is None:
        return F.linear(features, head.decoder.weight, head.bias)
    weight = F.embedding(columns, head.decoder.weight, sparse=sparse)
    return F.linear(features, weight, head.bias[columns])


def visual_projection(kind: str, width: int, hidden: int) -> nn.Module:
    """The image tower's features -> the hidden size the visual vocabulary head reads (VisionConfig.proj)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, hidden))
    return nn.Identity() if width == hidden else nn.Linear(width, hidden)


class LexLIPModel(nn.Module):
    def __init__(
        self,
        config: LexLIPConfig,
        vocab_size: int,
        special_ids: Sequence[int],
        content_ids: Sequence[int] = (),
        text_weights: str | None = None,
        vision_weights: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.text: Any = build_text_mlm(config.text, vocab_size, text_weights, name=config.name)
        if config.head == "linear":
            self.text.cls.predictions.transform = nn.Identity()
        if config.head_bias is not None:
            with torch.no_grad():
                self.text.cls.predictions.bias.fill_(config.head_bias)
        self.visual: Any = build_visual(config.vision, vision_weights, cache_dir, name=config.name)
        hidden = self.text.config.hidden_size
        width = visual_width(self.visual)
        self.visual_proj: Any = visual_projection(config.vision.proj, width, hidden)
        # The visual LM head starts as a copy of the text MLM head (its own parameters, not tied).
        self.visual_head: Any = copy.deepcopy(self.text.cls.predictions)
        self.visual_head.decoder.weight = nn.Parameter(self.text.cls.predictions.decoder.weight.detach().clone())
        vocab_mask = torch.ones(vocab_size)
        vocab_mask[list(special_ids)] = 0.0
        self.vocab_mask: torch.Tensor
        self.register_buffer("vocab_mask", vocab_mask, persistent=False)
        content = torch.zeros(vocab_size)
        content[list(content_ids)] = 1.0
        self.content_mask: torch.Tensor
        """1 for the WordPieces a person reads as words (grounding.is_content_token): a text's own words."""
        self.register_buffer("content_mask", content, persistent=False)
        self._screen: Screen | None = None
        """`encode_text_screened`'s bfloat16 copy of the text head, made at first use (inference only)."""
        self.prior: ImageNetPrior | None = (
            None if config.prior is None else ImageNetPrior(config.prior, width, vocab_size)
        )

    def text_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        """B x L x V logits, or B x L x len(columns) for those vocabulary ids only (training's active vocabulary)."""
        return vocabulary_logits(self.text.cls.predictions, self.text_hidden(input_ids, attention_mask), columns)

    def text_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """B x L x hidden: what the text vocabulary head reads."""
        hidden: torch.Tensor = self.text.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden

    def text_hidden_packed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Packing]:
        """N x hidden at the real tokens only, and where they sit (model/packed.py: training's padding-free path)."""
        return packed_bert(self.text.bert, input_ids, attention_mask)

    def image_logits(self, pixel_values: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """B x positions x V logits (or x len(columns)); a CNN's feature-map cells are its positions."""
        return vocabulary_logits(self.visual_head, self.image_hidden(pixel_values), columns)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """B x positions x width: the tower's features at every position (a CNN's feature-map cells)."""
        tokens: torch.Tensor = self.visual.forward_features(pixel_values)
        if tokens.ndim == 4:  # B x C x H x W -> B x HW x C
            tokens = tokens.flatten(2).transpose(1, 2)
        return tokens

    def image_hidden(self, pixel_values: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """B x positions x hidden: what the visual vocabulary head reads (from `tokens` when given)."""
        tokens = self.image_tokens(pixel_values) if tokens is None else tokens
        if self.config.vision.pool == "mean":
            tokens = tokens.mean(dim=1, keepdim=True)
        hidden: torch.Tensor = self.visual_proj(tokens)
        return hidden

    def image_prior(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x V: the ImageNet word prior of the images whose tower features are `tokens`, at its image weight."""
        if self.prior is None:
            raise ValueError(f"model {self.config.name!r} has no ImageNet prior")
        prior: torch.Tensor = self.prior(tokens.mean(dim=1))
        return self.prior.config.image_weight * prior * self.vocab_mask

    def own_words(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """B x V: 1 at each content WordPiece a text holds (its own words), else 0."""
        own = torch.zeros(input_ids.shape[0], self.content_mask.numel(), device=input_ids.device)
        own.scatter_(1, input_ids, attention_mask.to(own.dtype))
        return own * self.content_mask

    def sparse_from_logits(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return sparse_pool(logits, mask, self.vocab_mask)

    @property
    def learned(self) -> bool:
        """Whether the vocabulary heads speak (a prior-only model's do not)."""
        return self.prior is None or self.prior.config.learned

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not self.learned:
            return self.text_lexicon(None, input_ids, attention_mask)
        p = sparse_pool(self.text_logits(input_ids, attention_mask), attention_mask, self.vocab_mask)
        return self.text_lexicon(p, input_ids, attention_mask)

    def encode_text_screened(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`encode_text`'s lexicons to float32 rounding, cheaper on a CPU with bf16 matrix units: the real tokens
        only (packed) and the vocabulary head screened in bfloat16 (model/screen.py)."""
        if not self.learned:
            return self.encode_text(input_ids, attention_mask)
        hidden, packing = self.text_hidden_packed(input_ids, attention_mask)
        head = self.text.cls.predictions
        rows = torch.div(packing.index, packing.length, rounding_mode="floor")
        if self._screen is None or not self._screen.fresh(head):
            self._screen = Screen(head)
        p = self._screen.pool(head.transform(hidden), rows, packing.batch) * self.vocab_mask
        return self.text_lexicon(p, input_ids, attention_mask)

    def text_lexicon(self, pooled: torch.Tensor | None, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The lexicon a text is handed out as: the heads' pooled output (None: a prior-only model's heads say
        nothing) plus the text's own words where the prior asks for them, at the output norm."""
        own = 0.0 if self.prior is None else self.prior.config.text_own
        if pooled is None:
            return self.scaled(own * self.own_words(input_ids, mask))
        return self.scaled(pooled + own * self.own_words(input_ids, mask) if own else pooled)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.image_tokens(pixel_values)
        if self.prior is not None and not self.learned:
            return self.scaled(self.image_prior(tokens))
        logits = vocabulary_logits(self.visual_head, self.image_hidden(pixel_values, tokens))
        p = sparse_pool(logits, None, self.vocab_mask)
        return self.scaled(p if self.prior is None else p + self.image_prior(tokens))

    def scaled(self, p: torch.Tensor) -> torch.Tensor:
        """The lexicons a model hands out: at the config's `output_norm` when it sets one, else as pooled."""
        norm = self.config.output_norm
        return p if norm is None else F.normalize(p, dim=-1) * norm
