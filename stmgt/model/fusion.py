"""Gated fusion of the spatial and temporal branches, and the block that runs them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stmgt.model.spatial import SpatialBranch, StepGraph
from stmgt.model.temporal import TemporalBranch


class GatedFusion(nn.Module):
    """α·spatial + (1−α)·temporal with α = σ(W[spatial ‖ temporal] + b) per node, step and
    channel (spec §9.2.4): the data decide, case by case, how much the neighbours matter
    versus the road's own history, and α is returned so that choice can be inspected."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(hidden_dim * 2, hidden_dim), nn.Sigmoid())

    def forward(self, spatial: Tensor, temporal: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.gate(torch.cat([spatial, temporal], dim=-1))
        return alpha * spatial + (1 - alpha) * temporal, alpha


class STBlock(nn.Module):
    """One spatio-temporal block: both branches read the same input in parallel, then the
    gate fuses them (the specification names the block but does not show it)."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, seq_len: int, gat_layout: str,
                 gat_path: str = "dense"):
        super().__init__()
        self.spatial = SpatialBranch(hidden_dim, heads, dropout, gat_layout, gat_path)
        self.temporal = TemporalBranch(hidden_dim, heads, dropout, seq_len)
        self.fusion = GatedFusion(hidden_dim)

    def forward(self, h: Tensor, graph: StepGraph, keep: Tensor | None = None, need_weights: bool = False):
        """h [B, T, N, D], `keep` the DropEdge mask -> (fused [B, T, N, D], α [B, T, N, D],
        spatial attention or None, temporal attention or None)."""
        spatial, spatial_attention = self.spatial(h, graph, keep, need_weights)
        temporal, temporal_attention = self.temporal(h, need_weights)
        fused, alpha = self.fusion(spatial, temporal)
        return fused, alpha, spatial_attention, temporal_attention
