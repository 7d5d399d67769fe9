"""GATv2's per-edge attention over a big graph on a CPU, in parts of target-node rows sized for the
core's cache, forward and backward.

On a 5,000-road graph one step-graph has ~28,000 edges and each per-edge tensor [edges, heads,
channels] is ~43 MB: beyond the L3 cache of a 2-core machine, so every per-edge operation of the
table path streams main memory, and the same work ran about five times as fast in parts of a megabyte
or two (benchmarks/RESULTS.md, *Graph scaling*). The table path's slices are whole step-graphs, too big
here; a slice of target-node rows would need autograd to sum a full-size gradient of the projected
features per slice. So this autograd Function runs the rows of the step-graphs, flattened into one
axis, in consecutive parts whose incoming edges (sorted by target) fill a budget, and writes the
backward pass out: it keeps only the attention weights and the dropout mask (one value per edge and
head), recomputes each part's per-edge features, and sums its gradients straight into the projected
features' gradient buffers. The maths is `spatial._table_gatv2`'s, term by term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stmgt.model.dropout import dropout


class FlatRows:
    """`copies` step-graphs as one graph of copies·N rows, from the rows of their neighbour table
    (`spatial.NeighbourTable`): the sorted edges' flat sources and targets, each edge's row within its
    part (`local`) and cell in its part's [rows, slots] table (`cell`), and `parts`, (first row, end
    row, first edge, end edge) of each run of rows with at most `part_edges` edges (or one row, if it
    alone has more)."""

    def __init__(self, table, copies: int, part_edges: int):
        N, E = table.num_nodes, table.sources.numel()
        offsets = torch.arange(copies, device=table.sources.device).unsqueeze(1)
        self.sources = (table.sources + offsets * N).reshape(-1)
        self.targets = (table.targets + offsets * N).reshape(-1)
        self.slots = table.slots
        starts = torch.cat([(table.starts[:-1] + offsets * E).reshape(-1), table.starts.new_tensor([copies * E])])
        starts = starts.tolist()
        self.parts, first = [], 0
        while first < copies * N:
            end = first + 1
            while end < copies * N and starts[end + 1] - starts[first] <= part_edges:
                end += 1
            self.parts.append((first, end, starts[first], starts[end]))
            first = end
        firsts, sizes = torch.tensor([(first, b - a) for first, _, a, b in self.parts] or [(0, 0)],
                                     dtype=torch.long, device=self.targets.device).T
        self.local = self.targets - firsts.repeat_interleave(sizes)     # each edge's row within its part
        self.cell = self.local * self.slots + table.slot.repeat(copies)  # and its cell in the part's table


def row_parts_attention(source: Tensor, target: Tensor, att: Tensor, rows: FlatRows, kept: Tensor | None,
                        drop: float, slope: float) -> tuple[Tensor, Tensor]:
    """GATv2's attention-weighted neighbour sums. source, target [R, H, C] (`lin_l`, `lin_r` of the R
    flattened rows), att [H, C], `kept` [edges] bool in sorted order (DropEdge) or None, `drop` the
    attention dropout in force -> (sums [R, H, C], attention weights [edges, H] in sorted order)."""
    return RowPartsAttention.apply(source, target, att, rows, kept, drop, slope)


class RowPartsAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, source, target, att, rows, kept, drop, slope):
        H = att.shape[0]
        wide = torch.result_type(source, att)                  # fp32 under a bf16 autocast, as PyG's messages
        sums = source.new_zeros(source.shape, dtype=wide)
        weights = source.new_empty(rows.sources.numel(), H, dtype=wide)
        scale = torch.empty_like(weights) if drop > 0 else None      # dropout's keep / (1 − p), or 0
        for first, end, a, b in rows.parts:
            local, cell = rows.local[a:b], rows.cell[a:b]
            messages = source.index_select(0, rows.sources[a:b])                            # [e, H, C]
            pair = F.leaky_relu_(target.index_select(0, rows.targets[a:b]).add_(messages), slope)
            score = (pair.mul_(att) if pair.dtype == att.dtype else pair * att).sum(-1)      # [e, H]
            if kept is not None:
                score.masked_fill_(~kept[a:b, None], float("-inf"))
            table = score.new_full(((end - first) * rows.slots, H), float("-inf")).index_copy_(0, cell, score)
            weight = torch.softmax(table.view(end - first, rows.slots, H), dim=1).view(-1, H).index_select(0, cell)
            weights[a:b] = weight
            if scale is not None:
                scale[a:b] = dropout(torch.ones_like(weight), drop)
                weight = weight * scale[a:b]
            messages = messages.mul_(weight[:, :, None]) if messages.dtype == wide else weight[:, :, None] * messages
            sums[first:end].index_add_(0, local, messages)
        ctx.save_for_backward(source, target, att, weights, scale)
        ctx.rows, ctx.slope = rows, slope
        ctx.mark_non_differentiable(weights)
        return sums, weights

    @staticmethod
    def backward(ctx, grad, _):
        source, target, att, weights, scale = ctx.saved_tensors
        rows, slope = ctx.rows, ctx.slope
        d_source = torch.zeros(source.shape, dtype=grad.dtype, device=grad.device)
        d_target = torch.zeros_like(d_source)
        d_att = torch.zeros(att.shape, dtype=grad.dtype, device=grad.device)
        att_wide = att.to(grad.dtype)
        for first, end, a, b in rows.parts:
            local = rows.local[a:b]
            weight = weights[a:b]
            dropped = weight if scale is None else weight * scale[a:b]
            source_rows = source.index_select(0, rows.sources[a:b])                          # [e, H, C]
            pair = target.index_select(0, rows.targets[a:b]).add_(source_rows)
            g = grad[first:end].index_select(0, local)
            d_dropped = (source_rows.mul_(g) if source_rows.dtype == g.dtype else g * source_rows).sum(-1)
            d_edge_source = g.mul_(dropped[:, :, None])                                      # d messages / d source
            d_weight = d_dropped if scale is None else d_dropped.mul_(scale[a:b])
            # Softmax backward per row: w · (dw − Σ_row w·dw).
            row_sum = d_weight.new_zeros(end - first, weight.shape[1]).index_add_(0, local, weight * d_weight)
            d_score = weight * (d_weight - row_sum[local])
            d_att += F.leaky_relu(pair, slope).to(grad.dtype).mul_(d_score[:, :, None]).sum(0)
            d_pair = torch.ops.aten.leaky_relu_backward(d_score[:, :, None] * att_wide, pair.to(grad.dtype),
                                                        slope, False)
            d_source.index_add_(0, rows.sources[a:b], d_edge_source.add_(d_pair))
            d_target[first:end].index_add_(0, local, d_pair)
        return d_source.to(source.dtype), d_target.to(target.dtype), d_att.to(att.dtype), None, None, None, None


