"""The text vocabulary head, screened: `sparse_pool` of the head's logits at a third of its cost on a CPU with bf16
matrix units, to float32 rounding.

Most of a caption's cost on a CPU is the decoder (hidden 384 -> 30,522 WordPieces at every token), and almost every
one of those logits is negative: relu drops it. The screen computes all of them once in bfloat16 (inputs rounded to 8
significant bits, products summed in float32, the sum rounded to bfloat16), keeps the columns whose rounded logit could
still be positive at some token, and computes exactly those columns again in float32. With bfloat16's unit roundoff
u = 2^-8, rounding the inputs moves a product f_i w_i by at most (2u + u^2) |f_i w_i| and rounding the sum moves it by
at most u times its size, so the rounded logit is within 3.1 u |f| |w_v| < 2^-6 |f| |w_v| of the exact one
(Cauchy-Schwarz over the hidden size). A column is dropped only when its rounded logit is below minus that bound at
every token: none that float32 would keep positive is dropped, and the kept ones are float32's own numbers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

BOUND = 2.0**-6
"""Per unit of |f| * |w_v|: how far a logit computed from bfloat16-rounded inputs can be from the float32 one."""
CHUNK = 512
"""Tokens screened at a time: a chunk's bf16 logits are CHUNK x vocabulary (31 MB for BERT's)."""


def bf16_matmul_is_fast() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX); elsewhere the screen is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Screen:
    """The screened pool for one vocabulary head, its bfloat16 weights and row norms computed once (for inference:
    `fresh` tells whether the head's weights changed since)."""

    def __init__(self, head: Any) -> None:
        self.head = head
        weight = head.decoder.weight.detach()
        self.version = weight._version
        self.weight_bf16 = weight.to(torch.bfloat16)
        self.norms = weight.norm(dim=1)

    def fresh(self, head: Any) -> bool:
        return head is self.head and head.decoder.weight._version == self.version

    def pool(self, features: torch.Tensor, rows: torch.Tensor, texts: int) -> torch.Tensor:
        """texts x V: log(1 + max over each text's tokens of relu(decoder(features))), `sparse_pool` without the
        special-token mask. `features`: T x H, the head's transformed hidden states of the texts' real tokens;
        `rows`: T, which text each token belongs to."""
        weight, bias = self.head.decoder.weight, self.head.bias
        columns = self.candidates(features)
        exact = torch.relu(F.linear(features, weight[columns], bias[columns]))
        pooled = exact.new_zeros(texts, len(columns)).scatter_reduce(
            0, rows[:, None].expand_as(exact), exact, reduce="amax", include_self=True
        )
        out = features.new_zeros(texts, weight.shape[0])
        out[:, columns] = torch.log1p(pooled)
        return out

    def candidates(self, features: torch.Tensor) -> torch.Tensor:
        """The columns whose logit could be positive at some token: rounded logit + bound > 0, the bound taken at
        the chunk's largest |f| (looser than per token, and one vector instead of a T x V one)."""
        keep = torch.zeros(self.norms.shape[0], dtype=torch.bool, device=features.device)
        for start in range(0, features.shape[0], CHUNK):
            chunk = features[start : start + CHUNK]
            rounded = (chunk.to(torch.bfloat16) @ self.weight_bf16.T).amax(dim=0).float()
            slack = BOUND * chunk.norm(dim=1).max() * self.norms
            keep |= rounded + self.head.bias + slack > 0
        return torch.nonzero(keep, as_tuple=True)[0]
