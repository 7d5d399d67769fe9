"""Spatial branch: GATv2 over the road graph, run on all B·T step-graphs at once.

Three interchangeable ways to run the same `GATv2Conv` parameters:

* ``"dense"``: the graph is fixed, so the attention softmax runs over a masked N×N matrix per
  step-graph and the neighbour sum is one batched matmul. Static shapes, no scatter softmax:
  faster than PyG's message passing on a CPU (benchmarks/RESULTS.md) and free of its index
  bookkeeping on a GPU, but its cost and memory grow with N².
* ``"table"``: the scores are computed per edge as on the dense path, the softmax runs over a
  padded neighbour table, N rows × (max in-degree + 1) slots (the self loop included, a mask for
  the padding), and the neighbour sum is one index_add over the edges. Static shapes too, and
  cost and memory linear in the edges: the path for graphs where N² outgrows the edges. Eager on
  a CPU it runs in parts of target-node rows sized for the cache, with a hand-written backward
  pass (`stmgt.model.row_parts`).
* ``"pyg"``: PyG's own `GATv2Conv` over one disjoint union of the B·T step-graphs — the
  reference the other two are tested against.

``"auto"`` (`choose_path`) picks dense or table per graph, device and pass (with or without
gradients) from a measured cost model.

DropEdge is a keep-mask over the real edges of every step-graph, shared by all paths: a dropped
edge gets no attention weight, exactly as if it were removed (self loops always stay).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import remove_self_loops

from stmgt.model.dropout import Dropout, dropout
from stmgt.model.recompute import checkpointed
from stmgt.model.row_parts import FlatRows, row_parts_attention
from stmgt.settings import SETTINGS

GAT_PATHS = tuple(path for path in SETTINGS["gat_path"].choices if path != "auto")   # the ways GATv2 runs
# Beyond the per-edge work both share, the dense path's N×N softmax and matmul cost about N² per
# head and step-graph, the table's softmax and neighbour sum about N × slots; the dense form wins
# while N ≤ DENSE_SLOTS_RATIO × slots (slots = max in-degree + 1). Read from training steps as `fit`
# runs them on a CPU (compiled, bf16; `benchmarks/graph_scaling.py --compiled`) since the table
# path's cache-sized slices: dense ahead at 10 nodes a slot (the embedded graph), the table at 25
# (benchmarks/RESULTS.md, *Graph scaling*); no other device has been measured, so they use the
# CPU's ratio. That is the compiled training pass; eager or without gradients a CPU takes the table
# path (in row parts) at any size.
DENSE_SLOTS_RATIO = {"cpu": 16.0}
# Per-edge features (one tensor's worth) the table path holds at once (`table_gatv2`, `slice_bytes`):
# on a CPU slices of step-graphs small enough to stay in its cache, elsewhere a memory cap, whose
# per-edge tensors a taped pass recomputes in the backward pass instead of keeping. On a CPU the
# cache-sized slices ran validation's batches 1.3–1.9× as fast as slices of the cap
# (benchmarks/RESULTS.md, *Graph scaling*).
EDGE_SLICE_BYTES = 256 * 1024 ** 2
CACHED_SLICE_BYTES = 8 * 1024 ** 2
# Per-edge features of one part of target-node rows (`stmgt.model.row_parts`), what an eager pass on a
# CPU runs: small enough for a core's 2 MB L2 cache. Against the checkpointed slices they ran training
# steps 1.2× (62 nodes) to 1.6× (5,000 nodes) as fast, forecasts within 2 % at 62 and 200 nodes and
# 1.1–1.4× as fast at 1,000 and 5,000 (benchmarks/RESULTS.md, *Graph scaling*).
ROW_PART_BYTES = 2 * 1024 ** 2


def slice_bytes(device: torch.device) -> int:
    """Per-edge bytes (one tensor's worth) per slice of the table path on `device`."""
    return CACHED_SLICE_BYTES if torch.device(device).type == "cpu" else EDGE_SLICE_BYTES


def choose_path(graph: StepGraph, device: torch.device, taped: bool = True, compiled: bool = False) -> str:
    """"dense" or "table" for `graph` on `device`, whichever the cost model says is faster: for a
    compiled pass with gradients (`taped`) by nodes per slot; on a CPU otherwise the table path:
    without gradients (forecasts, validation) its cache-sized slices were level with the dense path at
    batch 1 on the embedded graph and 2.2–3.3× as fast at validation's batches of every graph
    measured, and an eager training step on the embedded graph took 1.43 s against the dense path's
    1.87 s (bf16), where compiled the dense path is ahead (benchmarks/RESULTS.md, *Graph scaling*)."""
    device = torch.device(device)
    if device.type == "cpu" and not (taped and compiled):
        return "table"
    ratio = DENSE_SLOTS_RATIO.get(device.type, DENSE_SLOTS_RATIO["cpu"])
    return "dense" if graph.num_nodes <= ratio * graph.slots else "table"


class TableGather(torch.autograd.Function):
    """`x.index_select(1, index)` whose backward sums each node's uses through a padded table
    instead of autograd's `index_add`."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, uses: Tensor, used: Tensor) -> Tensor:
        ctx.save_for_backward(uses, used)
        return x.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        uses, used = ctx.saved_tensors                                     # [N, U]
        picked = grad.index_select(1, uses.reshape(-1)).unflatten(1, uses.shape)   # [M, N, U, ...]
        used = used.view(*used.shape, *([1] * (grad.dim() - 2))).to(grad.dtype)
        return (picked * used).sum(2), None, None, None


class EdgeGather:
    """Per-edge rows of node features, x [M, N, ...] -> [M, E, ...] for `index` [E] (one end of
    every edge). Compiled for a CPU, the backward is `TableGather`'s: inductor fuses the table sum
    into one vectorised loop, where `index_add` scatters every edge's channels with atomic adds
    (a faster training step, benchmarks/RESULTS.md); on a GPU, where atomics are cheap, the table is
    unmeasured, so it is not used there. Eager, the rows are gathered, and summed back (`sum_into`),
    with `index_select` and `index_add` along the step-graphs' nodes flattened into one axis."""

    def __init__(self, index: Tensor, num_nodes: int):
        counts = torch.bincount(index, minlength=num_nodes)
        order = torch.argsort(index, stable=True)                  # edges grouped by node
        slot = torch.arange(index.numel(), device=index.device) - (counts.cumsum(0) - counts)[index[order]]
        self.index, self.num_nodes = index, num_nodes
        self._flat: dict[int, Tensor] = {}
        self.uses = index.new_zeros(num_nodes, int(counts.max()))              # node n's edges, padded with edge 0
        self.used = torch.zeros_like(self.uses, dtype=torch.bool)
        self.uses[index[order], slot] = order
        self.used[index[order], slot] = True

    def __call__(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() and x.device.type == "cpu":
            return TableGather.apply(x, self.index, self.uses, self.used)
        M = x.shape[0]
        rows = x.reshape(M * self.num_nodes, -1).index_select(0, self.flat_index(M))
        return rows.view(M, self.index.numel(), *x.shape[2:])

    def sum_into(self, values: Tensor) -> Tensor:
        """The reverse: per-edge values [M, E, ...] summed into the node each edge names -> [M, N, ...]."""
        M = values.shape[0]
        flat = values.reshape(M * self.index.numel(), -1)
        sums = flat.new_zeros(M * self.num_nodes, flat.shape[1]).index_add_(0, self.flat_index(M), flat)
        return sums.view(M, self.num_nodes, *values.shape[2:])

    def flat_index(self, copies: int) -> Tensor:
        """`index` into `copies` step-graphs flattened into one [copies·N] axis: eager row gathers and
        sums over one axis of 2-D tensors ran 2–4× as fast on a CPU as along axis 1 of [M, N, H, C]
        (benchmarks/RESULTS.md, *Graph scaling*)."""
        flat = self._flat.get(copies)
        if flat is None:
            offsets = torch.arange(copies, device=self.index.device).unsqueeze(1) * self.num_nodes
            flat = self._flat[copies] = (self.index + offsets).reshape(-1)
        return flat


class StepGraph:
    """One time step's road graph as GATv2 attends over it: the real edges (self loops
    removed) followed by one self loop per node — the order PyG's `GATv2Conv` uses, which is
    also the order of the reported attention weights (`edge_index` names them)."""

    def __init__(self, edge_index: Tensor, num_nodes: int):
        real = remove_self_loops(edge_index)[0]
        nodes = torch.arange(num_nodes, device=edge_index.device)
        self.num_nodes = num_nodes
        self.real_edges = real                                              # [2, E]
        self.edge_index = torch.cat([real, torch.stack([nodes, nodes])], 1)  # [2, E + N]
        # Where edge j→i sits in a target-major N×N matrix (row i, column j).
        self.positions = self.edge_index[1] * num_nodes + self.edge_index[0]
        self.sources = EdgeGather(self.edge_index[0], num_nodes)
        self.targets = EdgeGather(self.edge_index[1], num_nodes)
        if self.positions.unique().numel() != self.positions.numel():
            raise ValueError("edge_index lists an edge twice; give each directed edge once")
        self._batched: dict[int, Tensor] = {}
        # Max in-degree + 1 (the self loop): the width of the neighbour table.
        self.slots = int(torch.bincount(self.edge_index[1], minlength=num_nodes).max()) if num_nodes else 0
        self._table: NeighbourTable | None = None

    @property
    def table(self) -> NeighbourTable:
        """The padded neighbour table, built on first use."""
        if self._table is None:
            self._table = NeighbourTable(self)
        return self._table

    @property
    def num_real_edges(self) -> int:
        return self.real_edges.shape[1]

    def batched_real_edges(self, copies: int, keep: Tensor | None = None) -> Tensor:
        """The real edges of `copies` step-graphs as one disjoint graph (PyG's input), without
        the edges `keep` [copies, E] marks False."""
        batched = self._batched.get(copies)
        if batched is None:
            offsets = torch.arange(copies, device=self.real_edges.device) * self.num_nodes
            batched = (self.real_edges.unsqueeze(1) + offsets.view(1, -1, 1)).reshape(2, -1)
            self._batched[copies] = batched
        return batched if keep is None else batched[:, keep.reshape(-1)]


class NeighbourTable:
    """Every node's incoming edges (its self loop included) as one row of a padded table: `edges`
    [N, S] ids into `graph.edge_index`, padded with the node's own self loop, `present` [N, S]
    False on the padding, `slot_of_edge` [E + N] where each edge sits in the flattened table.
    The same rows unpadded, for `stmgt.model.row_parts`: `order` the edge ids sorted by target,
    `sources`, `targets` and `slot` of the sorted edges, `starts` [N + 1] where each row begins."""

    def __init__(self, graph: StepGraph):
        N, S = graph.num_nodes, graph.slots
        targets = graph.edge_index[1]
        loops = graph.num_real_edges + torch.arange(N, device=targets.device)     # node i's self loop id
        counts = torch.bincount(targets, minlength=N)
        self.num_nodes, self.slots = N, S
        self.order = order = torch.argsort(targets, stable=True)                     # edges grouped by target
        self.sources, self.targets = graph.edge_index[0][order], targets[order]
        self.starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.slot = slot = torch.arange(order.numel(), device=targets.device) - self.starts[self.targets]
        self.edges = loops.unsqueeze(1).repeat(1, S)
        self.edges[self.targets, slot] = order
        self.present = torch.zeros(N, S, dtype=torch.bool, device=targets.device)
        self.present[self.targets, slot] = True
        self.padded = not bool(self.present.all())
        self.slot_of_edge = torch.empty_like(order)
        self.slot_of_edge[order] = self.targets * S + slot
        self._flat: dict[tuple[int, int], FlatRows] = {}

    def flat(self, copies: int, part_edges: int) -> FlatRows:
        """The rows of `copies` step-graphs in parts of at most `part_edges` edges, built once."""
        key = (copies, part_edges)
        if key not in self._flat:
            self._flat[key] = FlatRows(self, copies, part_edges)
        return self._flat[key]


def table_gatv2(gat: GATv2Conv, x: Tensor, graph: StepGraph, keep: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """`gat`'s output for x [M, N, D] (M step-graphs) with the softmax over each node's row of the
    padded neighbour table and the neighbour sum as one index_add over the edges: the same maths
    as `dense_gatv2` without its N×N matrix. -> ([M, N, out], attention [M, E + N, heads] in
    `graph.edge_index` order when `need_weights`).

    An eager pass on a CPU runs in parts of target-node rows (`stmgt.model.row_parts`), which keeps no
    per-edge features for the backward pass: a taped one whole (its step-graphs in slices took 18 %
    longer and 0.4 GB more at 5,000 nodes and batch 8), one without gradients in the slices below.
    Otherwise the step-graphs go through in slices of `slice_bytes` per per-edge tensor, one after
    another: on a CPU small enough to stay in its cache, elsewhere a memory cap. A pass without
    gradients drops each slice's per-edge tensors once used; a taped pass (compiled, or on another
    device) does not keep them but recomputes them in the backward pass (activation checkpointing;
    the random state is replayed, so attention dropout draws the same mask twice, in the layer's mode
    of the forward pass: `stmgt.model.recompute`), so memory stays bounded on a big graph. A
    training-mode pass without gradients runs whole."""
    M = x.shape[0]
    per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * x.element_size()
    taped = torch.is_grad_enabled()
    row_parts = x.device.type == "cpu" and not torch.compiler.is_compiling()
    layer = _row_parts_gatv2 if row_parts else _table_gatv2
    size = max(1, slice_bytes(x.device) // per_graph)
    if M <= size or (gat.training and not taped) or (taped and row_parts):
        return layer(gat, x, graph, keep, need_weights)
    if taped:
        layer = partial(checkpointed, layer)
    parts = [layer(gat, x[i:i + size], graph, None if keep is None else keep[i:i + size], need_weights)
             for i in range(0, M, size)]
    return torch.cat([out for out, _ in parts]), torch.cat([w for _, w in parts]) if need_weights else None


def _table_gatv2(gat: GATv2Conv, x: Tensor, graph: StepGraph, keep: Tensor | None,
                 need_weights: bool) -> tuple[Tensor, Tensor | None]:
    M, N, _ = x.shape
    H, C = gat.heads, gat.out_channels
    table = graph.table
    source = graph.sources(gat.lin_l(x).view(M, N, H, C))                            # [M, E + N, H, C]
    target = graph.targets(gat.lin_r(x).view(M, N, H, C))
    # Without gradients nothing needs the per-edge tensors again: they are reused in place.
    in_place = not torch.is_grad_enabled() and source.dtype == target.dtype
    pair = F.leaky_relu(target.add_(source) if in_place else source + target, gat.negative_slope, inplace=in_place)
    score = (pair.mul_(gat.att) if in_place else pair * gat.att).sum(-1)[:, table.edges]   # [M, N, S, H]
    if keep is not None:
        kept = torch.cat([keep, keep.new_ones(M, N)], 1)[:, table.edges] & table.present   # [M, N, S]
        score = score.masked_fill(~kept.unsqueeze(-1), float("-inf"))
    elif table.padded:
        score = score.masked_fill(~table.present.unsqueeze(-1), float("-inf"))
    # Every row keeps its self loop, so none is all -inf; back to edge order, padding left out.
    weights = torch.softmax(score, dim=2).reshape(M, -1, H)[:, table.slot_of_edge]   # [M, E + N, H]
    dropped = dropout(weights, gat.dropout, gat.training)
    if in_place and source.dtype == dropped.dtype:
        messages = source.mul_(dropped.unsqueeze(-1))
    else:
        # Under autocast `source` is bf16 and the softmax float32: the messages take the wider type, as PyG's.
        messages = dropped.unsqueeze(-1) * source
    return _heads_out(gat, graph.targets.sum_into(messages)), weights if need_weights else None


def _row_parts_gatv2(gat: GATv2Conv, x: Tensor, graph: StepGraph, keep: Tensor | None,
                     need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """`_table_gatv2`'s output, its per-edge work by `row_parts_attention`."""
    M, N, _ = x.shape
    H, C = gat.heads, gat.out_channels
    order = graph.table.order
    source = gat.lin_l(x).view(M * N, H, C)
    target = gat.lin_r(x).view(M * N, H, C)
    rows = graph.table.flat(M, max(1, ROW_PART_BYTES // (H * C * source.element_size())))
    kept = None if keep is None else torch.cat([keep, keep.new_ones(M, N)], 1)[:, order].reshape(-1)
    sums, weights = row_parts_attention(source, target, gat.att[0], rows, kept,
                                        gat.dropout if gat.training else 0.0, gat.negative_slope)
    if need_weights:                                                        # back to edge order
        weights = weights.new_empty(M, order.numel(), H).index_copy_(1, order, weights.view(M, -1, H))
    return _heads_out(gat, sums.view(M, N, H, C)), weights if need_weights else None


def _heads_out(gat: GATv2Conv, mixed: Tensor) -> Tensor:
    """Every head's neighbour sums [M, N, H, C] -> GATv2's output: heads side by side or averaged, + bias."""
    M, N, H, C = mixed.shape
    out = mixed.reshape(M, N, H * C) if gat.concat else mixed.mean(2)
    return out if gat.bias is None else out + gat.bias


def dense_gatv2(gat: GATv2Conv, x: Tensor, graph: StepGraph, keep: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """`gat`'s output for x [M, N, D] (M step-graphs) with the softmax over a masked N×N score
    matrix: the same maths as `GATv2Conv.forward`, term by term. -> ([M, N, out],
    attention [M, E + N, heads] in `graph.edge_index` order when `need_weights`)."""
    M, N, _ = x.shape
    H, C = gat.heads, gat.out_channels
    source = gat.lin_l(x).view(M, N, H, C)
    target = gat.lin_r(x).view(M, N, H, C)
    pair = F.leaky_relu(graph.sources(source) + graph.targets(target), gat.negative_slope)
    score = (pair * gat.att).sum(-1)                                              # [M, E + N, H]
    if keep is not None:
        loops = keep.new_ones(M, N)
        score = score.masked_fill(~torch.cat([keep, loops], 1).unsqueeze(-1), float("-inf"))
    matrix = score.new_full((M, H, N * N), float("-inf"))
    matrix = matrix.scatter(2, graph.positions.expand(M, H, -1), score.transpose(1, 2))
    attention = torch.softmax(matrix.view(M, H, N, N), dim=-1)
    weights = attention.view(M, H, N * N)[:, :, graph.positions]                      # [M, H, E + N]
    if gat.training and gat.dropout > 0:
        # Dropout on the edges' weights only, as PyG does: a mask over the whole N×N matrix
        # would draw ~20× more random numbers, and on a CPU drawing them is most of dropout's cost.
        dropped = dropout(weights, gat.dropout)
        attention = weights.new_zeros(M, H, N * N).scatter(2, graph.positions.expand(M, H, -1), dropped)
        attention = attention.view(M, H, N, N)
    mixed = attention @ source.transpose(1, 2)                                        # [M, H, N, C]
    return _heads_out(gat, mixed.transpose(1, 2)), weights.transpose(1, 2) if need_weights else None


class SpatialBranch(nn.Module):
    """GATv2 + dropout + residual + LayerNorm (spec §9.2.2). GATv2 rather than GAT because
    its attention ranks neighbours per query node (dynamic attention), so congestion on one
    approach can matter more to one intersection than to another."""

    def __init__(self, hidden_dim: int, heads: int, dropout: float, layout: str, path: str = "auto"):
        super().__init__()
        if layout == "concat":
            self.gat = GATv2Conv(hidden_dim, hidden_dim // heads, heads=heads, dropout=dropout, concat=True)
        else:
            self.gat = GATv2Conv(hidden_dim, hidden_dim, heads=heads, dropout=dropout, concat=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = Dropout(dropout)
        self.path = path

    def forward(self, x: Tensor, graph: StepGraph, keep: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x [B, T, N, D], `keep` [B·T, E] DropEdge mask or None -> ([B, T, N, D], attention
        [B·T, E + N, heads] in `graph.edge_index` order when `need_weights`, else None)."""
        B, T, N, D = x.shape
        flat = x.reshape(B * T, N, D)
        path = (choose_path(graph, x.device, torch.is_grad_enabled(), torch.compiler.is_compiling())
                if self.path == "auto" else self.path)
        if path == "dense":
            h, attention = dense_gatv2(self.gat, flat, graph, keep, need_weights)
        elif path == "table":
            h, attention = table_gatv2(self.gat, flat, graph, keep, need_weights)
        else:
            h, attention = self._pyg(flat, graph, keep, need_weights)
        h = self.norm(self.dropout(h) + flat)
        return h.reshape(B, T, N, -1), attention

    def _pyg(self, x: Tensor, graph: StepGraph, keep: Tensor | None, need_weights: bool):
        M, N, D = x.shape
        edges = graph.batched_real_edges(M, keep)
        if not need_weights:
            return self.gat(x.reshape(M * N, D), edges).view(M, N, -1), None
        h, (_, alpha) = self.gat(x.reshape(M * N, D), edges, return_attention_weights=True)
        if keep is not None:
            raise ValueError("attention weights are reported on the full graph only (eval mode)")
        # GATv2Conv lists the batched real edges graph by graph, then every node's self loop.
        real = alpha[: M * graph.num_real_edges].view(M, graph.num_real_edges, -1)
        loops = alpha[M * graph.num_real_edges:].view(M, N, -1)
        return h.view(M, N, -1), torch.cat([real, loops], 1)
