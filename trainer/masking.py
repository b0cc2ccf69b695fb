"""Whole-word masking for WordPiece ids: a word and its `##` continuations are masked together (BERT's 80/10/10)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE = -100


class WholeWordMasker:
    def __init__(self, tokens: Sequence[str], special_ids: Sequence[int], mask_id: int) -> None:
        self.continuation = torch.tensor([t.startswith("##") for t in tokens], dtype=torch.bool)
        special = torch.zeros(len(tokens), dtype=torch.bool)
        special[list(special_ids)] = True
        self.special = special
        self.mask_id = mask_id
        self.vocab_size = len(tokens)
        self.maskable = ~special

    def __call__(
        self, ids: torch.Tensor, rate: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked copy of `ids` (B x L) and labels (original ids where masked, IGNORE elsewhere).

        Each word is chosen with probability `rate`, at least one word per text that has one.
        """
        special = self.special[ids]
        word_start = ~self.continuation[ids] & ~special
        word_index = torch.cumsum(word_start.long(), dim=1) - 1  # word number of every token
        word_index[special] = -1
        n_words = word_start.sum(dim=1)
        chosen_words = torch.rand(ids.shape, generator=generator) < rate  # one draw per word slot
        has_words = n_words > 0
        forced = torch.zeros_like(chosen_words)
        if has_words.any():
            pick = (torch.rand(ids.shape[0], generator=generator) * n_words.clamp(min=1)).long()
            forced[torch.arange(ids.shape[0]), pick.clamp(max=ids.shape[1] - 1)] = True
        none_chosen = ~(chosen_words & (torch.arange(ids.shape[1]) < n_words.unsqueeze(1))).any(dim=1)
        chosen_words = torch.where(none_chosen.unsqueeze(1), forced, chosen_words)
        safe_index = word_index.clamp(min=0)
        selected = torch.gather(chosen_words, 1, safe_index) & (word_index >= 0)

        labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
        roll = torch.rand(ids.shape, generator=generator)
        random_ids = torch.randint(0, self.vocab_size, ids.shape, generator=generator)
        random_ids = torch.where(self.maskable[random_ids], random_ids, torch.full_like(ids, self.mask_id))
        masked = ids.clone()
        masked = torch.where(selected & (roll < 0.8), torch.full_like(ids, self.mask_id), masked)
        masked = torch.where(selected & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
        return masked, labels
