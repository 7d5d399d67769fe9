"""The table GATv2 path where big graphs take it: a forecast's step-graphs in slices (so validation's
big batches fit in memory) and training under bf16 autocast."""

import pytest
import torch

from stmgt.data.road_like import road_like_edges
from stmgt.model import STMGT, STMGTConfig
from stmgt.model import spatial
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
        gat, graph = layer(layout).train().double(), StepGraph(road_like_edges(50), 50)
        gat.dropout = 0.0
        x = torch.randn(7, 50, 16, dtype=torch.float64, requires_grad=True)
        keep = torch.rand(7, graph.num_real_edges) >= 0.3
        whole, _ = table_gatv2(gat, x, graph, keep)
        expected = _grads(gat, x, whole)
        per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * x.element_size()
        monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)     # slices of 3, 3 and 1
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


@pytest.mark.parametrize("big", [False, True])
def test_a_big_taped_pass_hands_its_freed_heap_back(monkeypatch, big):
    """Only there: handing it back costs the next pass a page fault per page it reuses."""
    gat, graph = layer().train(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(7, 50, 16, requires_grad=True)
    per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * 4
    monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)
    monkeypatch.setattr(spatial, "RELEASE_HEAP_BEYOND", (6 if big else 7) * per_graph)
    released = []
    monkeypatch.setattr(spatial, "release_free_heap", lambda: released.append(True))
    table_gatv2(gat, x, graph)
    with torch.no_grad():
        table_gatv2(gat.eval(), x, graph)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)    # not traced into a compiled step
    table_gatv2(gat.train(), x, graph)
    assert released == ([True] if big else [])


def test_a_recomputed_slice_draws_the_attention_dropout_mask_of_its_forward(monkeypatch):
    gat, graph = layer().train(), StepGraph(road_like_edges(50), 50)
    x = torch.randn(6, 50, 16, requires_grad=True)
    per_graph = graph.edge_index.shape[1] * gat.heads * gat.out_channels * 4
    monkeypatch.setattr(spatial, "CACHED_SLICE_BYTES", 3 * per_graph)
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
    sliced, _ = table_gatv2(gat, x, graph)
    gat.train()
    for got, want in zip(_grads(gat, x, sliced), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
