"""The table GATv2 path where big graphs take it: a forecast's step-graphs in slices (so validation's
big batches fit in memory), training under bf16 autocast, the parts of target-node rows with a
hand-written backward (`stmgt.model.row_parts`) a CPU runs eagerly, and the checkpointed slices of a
taped pass elsewhere (a compiled step; other devices)."""

import pytest
import torch

from stmgt.data.road_like import road_like_edges
from stmgt.model import STMGT, STMGTConfig
from stmgt.model import spatial
from stmgt.model.row_parts import RowPartsAttention, row_parts_attention
from stmgt.model.spatial import StepGraph, dense_gatv2, table_gatv2


def layer(layout: str = "mean"):
    torch.manual_seed(0)
    return STMGT(STMGTConfig(hidden_dim=16, heads=2, num_blocks=1, gat_layout=layout)).blocks[0].spatial.gat


def test_slices_without_gradients_give_the_whole_batch_s_output_and_attention(monkeypatch):
    gat, graph = layer().eval(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(7, 50, 16)
    with torch.no_grad():
        whole, whole_weights = table_gatv2(gat, x, graph, need_weights=True)
        per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * 4
        monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)   # slices of 3, 3 and 1
        slices = []                                                          # step-graphs per slice
        gat.lin_l.register_forward_hook(lambda module, args, out: slices.append(len(args[0])))
        sliced, sliced_weights = table_gatv2(gat, x, graph, need_weights=True)
    assert slices == [3, 3, 1]
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(sliced_weights, whole_weights, rtol=0, atol=1e-6)
    assert sliced_weights.shape == (7, graph.edge_index.shape[1], gat.heads)


def test_table_path_trains_under_bf16_autocast_as_the_dense_path_does():
    for layout in ("mean", "concat"):
        gat, graph = layer(layout).train(), StepGraph(road_like_edges(50), 50)
        gat.dropout = 0.0
        x = torch.randn(3, 50, 16, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            table, _ = table_gatv2(gat, x, graph)
            dense, _ = dense_gatv2(gat, x, graph)
        table.float().square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        torch.testing.assert_close(table.float(), dense.float(), rtol=0.05, atol=0.05)


def test_without_gradients_the_in_place_pass_gives_what_the_training_pass_gives():
    gat, graph = layer("concat").eval(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(4, 50, 16)
    taped, taped_weights = table_gatv2(gat, x, graph, need_weights=True)
    with torch.no_grad():
        in_place, in_place_weights = table_gatv2(gat, x, graph, need_weights=True)
    torch.testing.assert_close(in_place, taped.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(in_place_weights, taped_weights.detach(), rtol=0, atol=1e-7)


def as_compiled(monkeypatch):
    """Table passes as inside a compiled step, which takes the checkpointed slices, not row parts."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)


def float64_training_case(layout: str):
    """A layer in training mode without attention dropout, 7 step-graphs and a DropEdge mask, in float64."""
    gat, graph = layer(layout).train().double(), StepGraph(road_like_edges(50), 50)
    gat.dropout = 0.0
    x = torch.randn(7, 50, 16, dtype=torch.float64, requires_grad=True)
    return gat, graph, x, torch.rand(7, graph.num_real_edges) >= 0.3


def _grads(gat, x, out):
    out.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in gat.parameters()]
    x.grad = None
    gat.zero_grad()
    return grads


def test_training_slices_recompute_in_the_backward_what_the_whole_batch_gives(monkeypatch):
    """A training pass over more step-graphs than a slice holds goes in slices whose per-edge tensors
    are recomputed in the backward pass (the projections run again): outputs and gradients (DropEdge
    on) as one pass. In float64, so that the sums' other order leaves no float32 rounding of the
    CPU's kernels."""
    for layout in ("mean", "concat"):
        gat, graph, x, keep = float64_training_case(layout)
        whole, _ = table_gatv2(gat, x, graph, keep)
        expected = _grads(gat, x, whole)
        per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * x.element_size()
        monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)     # slices of 3, 3 and 1
        as_compiled(monkeypatch)
        runs = []
        hook = gat.lin_l.register_forward_hook(lambda module, args, out: runs.append(len(args[0])))
        sliced, _ = table_gatv2(gat, x, graph, keep)
        assert sliced.grad_fn is not None
        torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-12)
        for got, want in zip(_grads(gat, x, sliced), expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        hook.remove()
        assert runs == [3, 3, 1, 1, 3, 3]          # forward, then each slice again in the backward pass
        monkeypatch.undo()


def test_a_cpu_slices_for_its_cache_and_other_devices_for_memory():
    assert spatial.slice_bytes(torch.device("cpu")) == spatial.CACHED_SLICE_BYTES
    assert spatial.slice_bytes(torch.device("cuda")) == spatial.EDGE_SLICE_BYTES < 64 * spatial.CACHED_SLICE_BYTES


def test_a_recomputed_slice_draws_the_attention_dropout_mask_of_its_forward(monkeypatch):
    gat, graph = layer().train(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(6, 50, 16, requires_grad=True)
    per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * 4
    monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)
    as_compiled(monkeypatch)
    with monkeypatch.context() as kept_not_recomputed:      # the same slices, their tensors kept
        kept_not_recomputed.setattr(spatial, "checkpointed", lambda layer, *args: layer(*args))
        torch.manual_seed(1)
        kept, _ = table_gatv2(gat, x, graph)
        expected = _grads(gat, x, kept)
    torch.manual_seed(1)
    recomputed, _ = table_gatv2(gat, x, graph)
    torch.testing.assert_close(recomputed, kept, rtol=0, atol=0)
    for got, want in zip(_grads(gat, x, recomputed), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_slice_recomputes_in_the_mode_of_its_forward_pass(monkeypatch):
    """The trainer's what-if loss runs the model in eval mode with gradients and switches it back to
    training before the backward pass: the recomputed slices must not start dropping attention."""
    gat, graph = layer().eval(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(6, 50, 16, requires_grad=True)
    whole, _ = table_gatv2(gat, x, graph)
    expected = _grads(gat, x, whole)
    per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * 4
    monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)
    as_compiled(monkeypatch)
    sliced, _ = table_gatv2(gat, x, graph)
    gat.train()
    for got, want in zip(_grads(gat, x, sliced), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_parts_cover_the_rows_in_order_within_their_edge_budget():
    graph = StepGraph(road_like_edges(50), 50)
    rows = graph.table.flat(3, 40)
    assert rows.parts[0][:3] == (0, rows.parts[0][1], 0) and rows.parts[-1][1] == 150
    assert rows.parts[-1][3] == rows.sources.numel() == 3 * graph.edge_index.shape[1]
    for (_, end, _, b), (first, _, a, _) in zip(rows.parts, rows.parts[1:]):
        assert (end, b) == (first, a)                                   # consecutive, nothing skipped
    assert all(b - a <= 40 for *_, a, b in rows.parts)
    assert len({first // 50 for first, *_ in rows.parts}) == 3          # parts inside every step-graph
    lone = graph.table.flat(2, 1)                                       # one row is never split
    assert [end - first for first, end, *_ in lone.parts] == [1] * 100
    for first, end, a, b in rows.parts:                                 # each part's edges end at its rows
        assert ((rows.targets[a:b] >= first) & (rows.targets[a:b] < end)).all()


@pytest.mark.parametrize("layout", ["mean", "concat"])
@pytest.mark.parametrize("part_edges", [23, 10_000])                    # within a step-graph; several whole
def test_row_parts_give_the_dense_path_s_outputs_gradients_and_attention(monkeypatch, layout, part_edges):
    """In float64, so that the sums' other order leaves no float32 rounding; DropEdge on."""
    gat, graph, x, keep = float64_training_case(layout)
    whole, _ = dense_gatv2(gat, x, graph, keep)
    expected = _grads(gat, x, whole)
    monkeypatch.setattr(spatial, "ROW_PART_BYTES", part_edges * gat.heads * gat.out_channels * 8)
    backward, ran = RowPartsAttention.backward, []
    monkeypatch.setattr(RowPartsAttention, "backward", staticmethod(lambda *a: ran.append(1) or backward(*a)))
    parts, _ = table_gatv2(gat, x, graph, keep)
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-12)
    for got, want in zip(_grads(gat, x, parts), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert ran == [1]                                                   # the hand-written backward, once
    with torch.no_grad():
        gat.eval()
        want, want_weights = dense_gatv2(gat, x, graph, need_weights=True)
        monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 0)           # a step-graph beyond a slice: row parts
        got, got_weights = table_gatv2(gat, x, graph, need_weights=True)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_weights, want_weights, rtol=0, atol=1e-12)


def test_the_hand_written_backward_matches_finite_differences_with_dropout_and_drop_edge():
    """gradcheck against the function itself, the random state reset before every call, so attention
    dropout draws the same mask each time: the backward must use the mask its forward drew."""
    graph = StepGraph(road_like_edges(12), 12)
    rows = graph.table.flat(2, 9)
    assert len(rows.parts) > 2
    torch.manual_seed(0)
    source, target = (torch.randn(24, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    att = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    kept = torch.rand(rows.sources.numel()) >= 0.2
    kept[rows.sources == rows.targets] = True                           # self loops stay

    def attention(source, target, att):
        torch.manual_seed(5)
        return row_parts_attention(source, target, att, rows, kept, 0.3, 0.2)[0]

    assert torch.autograd.gradcheck(attention, (source, target, att))


def test_a_pass_s_backward_keeps_the_mode_of_its_forward():
    """The trainer's what-if loss runs the model in eval mode with gradients and switches it back to
    training before the backward pass: its gradients must not start dropping attention."""
    gat, graph = layer().eval(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(6, 50, 16, requires_grad=True)
    expected = _grads(gat, x, dense_gatv2(gat, x, graph)[0])
    out, _ = table_gatv2(gat, x, graph)
    gat.train()
    for got, want in zip(_grads(gat, x, out), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_training_pass_drops_attention_and_keeps_its_expectation():
    gat, graph = layer().train(), StepGraph(road_like_edges(50), 50)
    gat.dropout = 0.5
    x = torch.randn(40, 50, 16, requires_grad=True)
    dropped, _ = table_gatv2(gat, x, graph)
    kept_all, _ = table_gatv2(gat.eval(), x, graph)
    assert dropped.grad_fn is not None and not torch.allclose(dropped, kept_all)
    dropped, kept_all = dropped.detach() - gat.bias.detach(), kept_all - gat.bias.detach()
    assert abs(dropped.mean().item() - kept_all.mean().item()) < 0.05 * kept_all.abs().mean().item()
