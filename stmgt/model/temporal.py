"""Temporal branch: Transformer encoder layer over each node's own 12 steps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from stmgt.model.attention import attend
from stmgt.model.dropout import Dropout
from stmgt.model.embedding import SinusoidalEncoding


class TemporalBranch(nn.Module):
    """Sinusoidal step encoding + multi-head self-attention + GELU FFN (4×), post-norm with
    two LayerNorms (spec §9.2.3). Every node is its own sequence, so attention sees how
    that road's speed evolved without mixing in its neighbours (the spatial branch does)."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, seq_len: int):
        super().__init__()
        self.pos_encoding = SinusoidalEncoding(hidden_dim, seq_len)
        # Holds the projections (in_proj_*, out_proj) and their initialisation; the attention
        # itself is `attend`, whose dropout draws its mask from random bits.
        self.attention = nn.MultiheadAttention(hidden_dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim * 4),
            nn.GELU(),
            Dropout(dropout),
            nn.Linear(hidden_dim * 4, hidden_dim),
        )
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.norm2 = nn.LayerNorm(hidden_dim)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x [B, T, N, D] -> ([B, T, N, D], attention [B, N, H, T, T] when `need_weights`)."""
        B, T, N, D = x.shape
        x = self.pos_encoding(x.transpose(1, 2).reshape(B * N, T, D))
        attn = self.attention
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(
            B * N, T, 3, attn.num_heads, D // attn.num_heads).permute(2, 0, 3, 1, 4)   # 3 × [B·N, H, T, d]
        mixed, weights = attend(q, k, v, p=attn.dropout if self.training else 0.0, need_weights=need_weights)
        x = self.norm1(x + attn.out_proj(mixed.transpose(1, 2).reshape(B * N, T, D)))
        x = self.norm2(x + self.ffn(x))
        x = x.reshape(B, N, T, D).transpose(1, 2)
        if weights is not None:
            weights = weights.reshape(B, N, -1, T, T)
        return x, weights
