"""A cross-batch memory of image vectors (XBM, Wang et al., CVPR 2020) for the text-to-image contrastive term.

In-batch contrastive ranks a caption's image among 64; a search ranks it among every image, where a word half the
images hold (a category such as "people") or a sibling that differs in one word decides the top hit. The memory keeps
each training image's latest vector (a lexicon over the active vocabulary's columns, or the dense twin's embedding;
detached) so a caption is also ranked against every image seen so far, at the cost of one matrix product. It is
not saved with a checkpoint: a resumed run refills it within an epoch. Rows are dense (images x columns, float32):
right for the emoji set's 2,674 images x 3,480 active columns (37 MB); a corpus of millions would want the phase 2
queues' top-k sparse rows instead. Under DDP each rank remembers the images it saw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ImageMemory:
    """The latest L2-normalised vector of every training image seen (rows by image index), grown on demand."""

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None
        self.filled: torch.Tensor | None = None

    def holds(self, items: torch.Tensor) -> bool:
        """Whether any of these images is stored already: from the second epoch on."""
        if self.filled is None:
            return False
        return bool(self.filled[items[items < self.filled.numel()]].any())

    def others(self, items: torch.Tensor) -> torch.Tensor:
        """The stored vectors of every image seen so far except `items` (M x width; 0 rows before any store)."""
        if self.rows is None or self.filled is None:
            return torch.zeros(0, 0, device=items.device)
        keep = self.filled.clone()
        keep[items[items < keep.numel()]] = False
        return self.rows[keep]

    @torch.no_grad()
    def store(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Remember `vectors` (B x width) as the vectors of images `items` (B indices)."""
        size, width = int(items.max()) + 1, vectors.shape[1]
        if self.rows is None or self.filled is None or self.rows.shape[1] != width:
            self.rows = vectors.new_zeros(size, width, dtype=torch.float32)
            self.filled = torch.zeros(size, dtype=torch.bool, device=vectors.device)
        elif size > self.rows.shape[0]:
            grow = size - self.rows.shape[0]
            self.rows = torch.cat([self.rows, self.rows.new_zeros(grow, width)])
            self.filled = torch.cat([self.filled, self.filled.new_zeros(grow)])
        self.rows[items] = vectors.detach().float()
        self.filled[items] = True

    def __len__(self) -> int:
        return 0 if self.filled is None else int(self.filled.sum())


def memory_cross_entropy(
    memory: ImageMemory,
    batch: torch.Tensor,
    v_image: torch.Tensor,
    v_text: torch.Tensor,
    items: torch.Tensor,
    temperature: float,
) -> torch.Tensor | None:
    """Text-to-image cross-entropy of each caption over the batch's images (`batch`: images x captions scores, sibling
    margins applied) and every other image in the memory; then the batch's image vectors replace theirs in it.
    None in the first epoch, while the memory fills (no image of the batch stored yet)."""
    started = memory.holds(items)
    keys = memory.others(items) if started else None
    memory.store(items, v_image)
    if keys is None or keys.shape[0] == 0:
        return None
    logits = torch.cat([batch.T, v_text @ keys.to(v_text.dtype).T], dim=1) / temperature
    return F.cross_entropy(logits, torch.arange(v_text.shape[0], device=v_text.device))
