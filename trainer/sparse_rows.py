"""Row-sparse training of the vocabulary matrices: the word embeddings (tied to the text head's decoder) and the
visual head's decoder, 30,522 x hidden each.

A step on the active vocabulary reads a few thousand of their rows, yet dense autograd writes a full-size gradient
for each (mostly zeros) and AdamW then walks every row of both: measured at ~0.45 s of a ~1.5 s emoji step on two
CPU cores. Here those rows are read as `F.embedding(..., sparse=True)` lookups, so the gradients are sparse (the rows
a step touched), and `LazyAdamW` updates only those rows: the Adam moments and the decoupled weight decay of a row
move when the row is read, as in `torch.optim.SparseAdam` (bias correction by the parameter's step count). Every
other parameter gets plain AdamW, from the same optimizer object, so checkpoints and resumes are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def sparse_row_matrices(model: Any) -> list[torch.nn.Parameter]:
    """Switch a LexLIP model's text word embeddings to sparse gradients; the vocabulary matrices that now get
    row-sparse gradients (when the objective reads the decoders' rows through `vocabulary_logits(sparse=True)`)."""
    model.text.bert.embeddings.word_embeddings.sparse = True
    return [model.text.bert.embeddings.word_embeddings.weight, model.visual_head.decoder.weight]


class LazyAdamW(torch.optim.AdamW):
    """AdamW whose parameters with sparse gradients are updated row by row (only the rows in the gradient)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    self._rows_update(group, p)
                    p.grad = None  # done here: AdamW's own step skips parameters without a gradient
        return super().step(closure)

    def _rows_update(self, group: dict[str, Any], p: torch.Tensor) -> None:
        grad = p.grad
        assert grad is not None
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        exp_avg = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        denom = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(eps)
        weights = p[rows].mul_(1 - lr * decay).addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))
        p.index_copy_(0, rows, weights)


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` (L2) for a mix of dense and sparse gradients; sparse ones are coalesced
    first, so a row read twice in a step counts once with its summed gradient."""
    grads = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad.values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.tensor(0.0)
    total: torch.Tensor = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coefficient)
    return total
