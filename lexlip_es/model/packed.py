"""A BERT encoder run over the real tokens only (padding removed), for training batches.

A contrastive batch cannot be grouped by length: emoji captions average 10.8 WordPieces while a batch of 64 pads to
~23, so more than half of every token-wise layer (the Q/K/V, output and feed-forward projections, layer norms,
dropout) and of the text vocabulary head would run on padding. Here the token-wise layers run on the packed
N x hidden real tokens; only attention sees the padded B x L layout (scattered in and gathered back), with padding
masked as in `BertModel`. The numbers are BertModel's at every real token (tests/unit/test_packed_and_sparse_rows.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a B x L batch sit: their flat positions (row-major) and the batch's shape."""

    index: torch.Tensor
    batch: int
    length: int

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> Packing:
        batch, length = attention_mask.shape
        return cls(torch.nonzero(attention_mask.reshape(-1), as_tuple=True)[0], batch, length)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """B x L x ... -> N x ... (the real tokens, in row-major order)."""
        return padded.reshape(self.batch * self.length, *padded.shape[2:])[self.index]

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """N x ... -> B x L x ... with zeros at the padding (differentiable in `packed`)."""
        flat = packed.new_zeros(self.batch * self.length, *packed.shape[1:])
        flat = flat.index_put((self.index,), packed)
        return flat.reshape(self.batch, self.length, *packed.shape[1:])


def _attention(layer: Any, hidden: torch.Tensor, packing: Packing, keep: torch.Tensor) -> torch.Tensor:
    """BertSelfAttention on packed tokens: Q, K, V packed, scaled dot-product attention padded, output packed."""
    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(projection: Any) -> torch.Tensor:  # N x hidden -> B x heads x L x size
        return packing.pad(projection(hidden)).view(packing.batch, packing.length, heads, size).transpose(1, 2)

    dropout = attention.dropout.p if attention.training else 0.0
    context = F.scaled_dot_product_attention(
        split(attention.query), split(attention.key), split(attention.value), attn_mask=keep, dropout_p=dropout
    )
    return packing.pack(context.transpose(1, 2).reshape(packing.batch, packing.length, heads * size))


def packed_bert(bert: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Packing]:
    """A transformers `BertModel`'s last hidden state at the real tokens (N x hidden) and where they sit.

    The embeddings and every token-wise layer run on the packed tokens; attention runs padded (B x heads x L x L,
    padding keys masked out). Dropout applies where BertModel applies it, in training mode."""
    packing = Packing.of(attention_mask)
    embeddings = bert.embeddings
    length = input_ids.shape[1]
    positions = embeddings.position_ids[:, :length].expand(input_ids.shape[0], length)
    ids, positions = packing.pack(input_ids.unsqueeze(-1))[:, 0], packing.pack(positions.unsqueeze(-1))[:, 0]
    hidden = (
        embeddings.word_embeddings(ids)
        + embeddings.token_type_embeddings(torch.zeros_like(ids))
        + embeddings.position_embeddings(positions)
    )
    hidden = embeddings.dropout(embeddings.LayerNorm(hidden))
    keep = attention_mask.bool()[:, None, None, :]  # B x 1 x 1 x L: which keys a query may attend to
    for layer in bert.encoder.layer:
        context = _attention(layer, hidden, packing, keep)
        out = layer.attention.output
        hidden = out.LayerNorm(out.dropout(out.dense(context)) + hidden)
        ff = layer.output
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
        hidden = ff.LayerNorm(ff.dropout(ff.dense(inner)) + hidden)
    return hidden, packing
