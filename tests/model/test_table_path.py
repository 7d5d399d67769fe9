"""The table GATv2 path where big graphs take it: a forecast's step-graphs in slices (so validation's
big batches fit in memory) and training under bf16 autocast."""

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
        monkeypatch.setattr(spatial, "INFERENCE_SLICE_BYTES", 3 * per_graph)     # slices of 3, 3 and 1
        sliced, sliced_weights = table_gatv2(gat, x, graph, need_weights=True)
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(sliced_weights, whole_weights, rtol=0, atol=1e-7)
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
