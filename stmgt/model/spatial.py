"""Spatial branch: GATv2 over the road graph, run on all B·T step-graphs in one call."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import remove_self_loops


class StepGraphs:
    """Turns the per-step graph into one disjoint union of `copies` graphs (one per batch
    item and time step), so a single GATv2Conv call covers them all.

    The per-step graph is stripped of self loops first; GATv2Conv then appends one self
    loop per node after all real edges, which fixes the layout `unbatch_attention` relies
    on. Batched indices are cached per (copies, nodes, device) and reused while the caller
    passes the same, unmodified edge_index tensor."""

    def __init__(self):
        self._cache: dict[tuple, tuple[Tensor, int, Tensor]] = {}

    @staticmethod
    def step_edge_index(edge_index: Tensor) -> Tensor:
        """The per-step edges GATv2Conv attends over, without its self loops."""
        return remove_self_loops(edge_index)[0]

    def batch(self, edge_index: Tensor, num_nodes: int, copies: int) -> Tensor:
        key = (copies, num_nodes, edge_index.device)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is edge_index and hit[1] == edge_index._version:
            return hit[2]
        step = self.step_edge_index(edge_index)
        offsets = torch.arange(copies, device=step.device).repeat_interleave(step.shape[1]) * num_nodes
        batched = step.repeat(1, copies) + offsets
        self._cache[key] = (edge_index, edge_index._version, batched)
        return batched

    @staticmethod
    def unbatch_attention(step_edges: Tensor, attention: Tensor, num_nodes: int,
                          copies: int) -> tuple[Tensor, Tensor]:
        """GATv2Conv's per-edge weights [copies·(E+N), H] (real edges graph by graph, then
        the self loops) -> ([copies, E+N, H], per-step edge index [2, E+N] incl. self loops)."""
        num_edges = step_edges.shape[1]
        heads = attention.shape[-1]
        real = attention[: copies * num_edges].reshape(copies, num_edges, heads)
        loops = attention[copies * num_edges:].reshape(copies, num_nodes, heads)
        nodes = torch.arange(num_nodes, device=step_edges.device)
        edge_index = torch.cat([step_edges, torch.stack([nodes, nodes])], dim=1)
        return torch.cat([real, loops], dim=1), edge_index


class SpatialBranch(nn.Module):
    """GATv2 + dropout + residual + LayerNorm (spec §9.2.2). GATv2 rather than GAT because
    its attention ranks neighbours per query node (dynamic attention), so congestion on one
    approach can matter more to one intersection than to another."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, layout: str):
        super().__init__()
        if layout == "concat":
            self.gat = GATv2Conv(hidden_dim, hidden_dim // heads, heads=heads, dropout=dropout, concat=True)
        else:
            self.gat = GATv2Conv(hidden_dim, hidden_dim, heads=heads, dropout=dropout, concat=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, batched_edges: Tensor,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x [B, T, N, D], batched_edges over B·T·N nodes -> ([B, T, N, D], per-edge
        attention [B·T·(E+N), H] when `need_weights`, else None)."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        attention = None
        if need_weights:
            h, (_, attention) = self.gat(flat, batched_edges, return_attention_weights=True)
        else:
            h = self.gat(flat, batched_edges)
        h = self.norm(self.dropout(h) + flat)
        return h.reshape(shape), attention
