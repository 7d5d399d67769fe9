"""Scaled dot-product attention with the dropout of `stmgt.model.dropout`, shared by the
temporal self-attention and the weather cross-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stmgt.model.dropout import dropout


def attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None, p: float = 0.0,
           need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """softmax(q·kᵀ/√d, over the keys `allowed` [Q, K] marks) · v, with dropout p on the weights:
    q [..., Q, d], k and v [..., K, d] -> ([..., Q, d], weights [..., Q, K] when `need_weights`).

    Without weights or dropout to compute (or on CUDA, whose fused kernels drop cheaply) this is
    `F.scaled_dot_product_attention`; otherwise the weights are formed explicitly so that the
    dropout mask comes from random bits."""
    if not need_weights and (p == 0 or q.is_cuda):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p), None
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return dropout(weights, p) @ v, weights if need_weights else None
