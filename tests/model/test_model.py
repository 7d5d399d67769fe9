"""STMGT model: shapes, parameter counts, the weather fix, DropEdge, masking, diagnostics."""

import json
import math

import pytest
import torch
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import scatter

from stmgt.data.graph import RoadGraph
from stmgt.model import STMGT, Diagnostics, STMGTConfig
from stmgt.model import spatial, temporal, weather
from stmgt.model.attention import attend
from stmgt.model.dropout import Dropout, dropout
from stmgt.model.spatial import GAT_PATHS, StepGraph
from stmgt.model.temporal import TemporalBranch
from stmgt.model.weather import WeatherCrossAttention

SPEC_PARAMS = {"concat": 487_791, "mean": 656_271}
EXTRAS = 96 + 192 + 672 + 96  # observed-flag channel, time-of-day projection, day-of-week embedding,
                              # weather memory decays


def ring_graph(n: int) -> torch.Tensor:
    """Two-way ring plus a few chords, so nodes have different in-degrees."""
    src = torch.arange(n)
    dst = (src + 1) % n
    chords = torch.tensor([[0, n // 2], [n // 2, 1]]) if n > 3 else torch.empty(2, 0, dtype=torch.long)
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src]), chords], dim=1)


def inputs(batch=2, nodes=7, steps=12, seed=0, missing=0.2):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(batch, steps, nodes, generator=g),
        mask=torch.rand(batch, steps, nodes, generator=g) > missing,
        edge_index=ring_graph(nodes),
        weather=torch.randn(batch, steps, 3, generator=g),
        time_of_day=torch.rand(batch, steps, generator=g),
        day_of_week=torch.randint(0, 7, (batch, steps), generator=g),
        past_weather=torch.randn(batch, steps, 3, generator=g),
    )


def model(**overrides) -> STMGT:
    torch.manual_seed(0)
    return STMGT(STMGTConfig(**overrides)).eval()


def mixture_nll(y, means, stds, weights):
    z = (y.unsqueeze(-1) - means) / stds
    log_p = -0.5 * z**2 - stds.log() - 0.5 * math.log(2 * math.pi) + weights.log()
    return -torch.logsumexp(log_p, dim=-1).mean()


# ---- shapes and the mixture ------------------------------------------------------------

def test_output_shapes_and_valid_mixture():
    net = model()
    batch = inputs(batch=3, nodes=62)
    means, stds, weights = net(**batch)
    for t in (means, stds, weights):
        assert t.shape == (3, 12, 62, 5)
        assert torch.isfinite(t).all()
    assert (stds >= 0.01).all()
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 12, 62))


@pytest.mark.parametrize("nodes", [1, 7])
def test_other_node_counts_and_no_weather(nodes):
    net = model(use_weather=False)
    batch = inputs(nodes=nodes)
    batch["weather"] = None
    means, stds, weights = net(**batch)
    assert means.shape == stds.shape == weights.shape == (2, 12, nodes, 5)
    *_, diag = net.forward_with_diagnostics(**batch)
    assert diag.weather_attention is None
    assert net.weather_attn is None


def test_missing_required_inputs_are_clear_errors():
    net = model()
    batch = inputs()
    with pytest.raises(ValueError, match="weather"):
        net(**{**batch, "weather": None})
    with pytest.raises(ValueError, match="time_of_day"):
        net(**{**batch, "time_of_day": None})
    with pytest.raises(ValueError, match="x must be"):
        net(**{**batch, "x": batch["x"][:, :6]})


# ---- parameter counts -------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["concat", "mean"])
def test_parameter_count_matches_spec_code(layout):
    bare = STMGT(STMGTConfig(gat_layout=layout, use_mask=False, time_encoding=False, weather_memory=False))
    assert bare.count_parameters() == SPEC_PARAMS[layout]
    assert STMGT(STMGTConfig(gat_layout=layout)).count_parameters() == SPEC_PARAMS[layout] + EXTRAS


def test_default_is_mean_layout_with_657327_parameters():
    assert STMGTConfig().gat_layout == "mean"
    assert STMGT().count_parameters() == 657_327


# ---- the weather cross-attention fix -----------------------------------------------------

def test_weather_attention_is_not_uniform_and_depends_on_traffic():
    torch.manual_seed(0)
    attn = WeatherCrossAttention(96, 4, dropout=0.0, horizon=12, causal=False).eval()
    traffic, weather = torch.randn(2, 12, 5, 96), torch.randn(2, 12, 3)

    out, weights = attn(traffic, weather, need_weights=True)
    assert weights.shape == (2, 5, 4, 12, 12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5, 4, 12))
    # The specification's broadcast layout gives exactly 1/12 everywhere.
    assert (weights - 1 / 12).abs().amax() > 0.05
    assert not torch.allclose(weights[:, 0], weights[:, 1])  # same weather, different road state

    # The weather context read out (before the residual) changes with the traffic ...
    other_traffic = traffic.clone()
    other_traffic[:, :, 0] += 3.0
    context, _ = attn.context(traffic.transpose(1, 2), weather)
    other, _ = attn.context(other_traffic.transpose(1, 2), weather)
    assert (other[0, 0] - context[0, 0]).abs().amax() > 1e-3   # node 0 of sample 0
    torch.testing.assert_close(other[0, 1], context[0, 1])     # untouched node 1 unchanged
    # ... and with the weather.
    out_wet, _ = attn(traffic, weather + 2.0)
    assert (out_wet - out).abs().amax() > 1e-3


def test_weather_attention_equals_multihead_attention_per_node():
    """Keys and values once per sample give what nn.MultiheadAttention gives per node."""
    torch.manual_seed(0)
    attn = WeatherCrossAttention(96, 4, dropout=0.0, horizon=12, causal=True).eval()
    traffic, weather = torch.randn(2, 12, 5, 96), torch.randn(2, 12, 3)
    out, weights = attn(traffic, weather, need_weights=True)
    query = traffic.transpose(1, 2).reshape(10, 12, 96)
    tokens = attn.step_encoding(attn.remembered(attn.weather_proj(weather))).repeat_interleave(5, dim=0)
    future = torch.ones(12, 12, dtype=torch.bool).triu(1)          # True = may not attend
    context, reference = attn.cross_attn(query, tokens, tokens, attn_mask=future, average_attn_weights=False)
    torch.testing.assert_close(weights, reference.view(2, 5, 4, 12, 12))
    torch.testing.assert_close(out, attn.norm(query + context).view(2, 5, 12, 96).transpose(1, 2))


def test_weather_memory_is_a_leaky_running_mean_per_channel():
    torch.manual_seed(0)
    attn = WeatherCrossAttention(8, 2, dropout=0.0, horizon=12)
    projected = torch.randn(3, 12, 8)
    keep = torch.sigmoid(attn.memory_logit)
    expected, memory = [], torch.zeros(3, 8)
    for h in range(12):
        memory = keep * memory + (1 - keep) * projected[:, h]
        expected.append(memory)
    torch.testing.assert_close(attn.remembered(projected), torch.stack(expected, 1))
    # Steady weather builds up in the slow channels and fades out of them after it stops.
    rain = torch.zeros(1, 12, 8)
    rain[:, :4] = 1.0
    remembered = attn.remembered(rain)[0, :, -1]             # the slowest channel
    assert (remembered[:4].diff() > 0).all() and (remembered[4:].diff() < 0).all() and remembered[-1] > 0
    assert 0.02 < keep.min() < 0.1 and 0.9 < keep.max() < 0.95     # ~15 min … ~3 h to start with
    off = WeatherCrossAttention(8, 2, dropout=0.0, horizon=12, memory=False)
    assert off.memory_logit is None and torch.equal(off.remembered(projected), projected)


def test_the_weather_bend_starts_as_the_specification_and_can_bend():
    """The MLP's output layer starts at zero: the same answers as the linear projection alone,
    until training moves it; then the projection is no longer affine in the weather."""
    torch.manual_seed(0)
    plain = WeatherCrossAttention(8, 2, dropout=0.0, horizon=12)
    bent = WeatherCrossAttention(8, 2, dropout=0.0, horizon=12, bend=True)
    bent.load_state_dict(plain.state_dict(), strict=False)
    traffic, weather = torch.randn(2, 12, 5, 8), torch.randn(2, 12, 3)
    for a, b in zip(bent(traffic, weather, need_weights=True), plain(traffic, weather, need_weights=True)):
        assert torch.equal(a, b)
    torch.nn.init.normal_(bent.weather_bend[-1].weight)
    light, heavy = torch.zeros(1, 1, 3), torch.tensor([[[0.0, 0.0, 4.0]]])
    midway = bent.projected((light + heavy) / 2)
    assert (midway - (bent.projected(light) + bent.projected(heavy)) / 2).abs().amax() > 1e-3
    assert plain.weather_bend is None


def test_the_weather_memory_starts_from_the_past_weather():
    """Rain already falling at the forecast time reads differently from rain starting now."""
    net, batch = model(), inputs()
    wetter = {**batch, "past_weather": batch["past_weather"] + 2.0}
    assert (net(**wetter)[0] - net(**batch)[0]).abs().amax() > 1e-4
    off = model(weather_past=False)
    for a, b in zip(off(**wetter), off(**batch)):
        assert torch.equal(a, b)                                         # off: the past weather is not read
    for a, b in zip(off(**batch), net(**{**batch, "past_weather": None})):
        assert torch.equal(a, b)                                         # none given: the memory starts at 0
    with pytest.raises(ValueError, match=r"past_weather must be \[2, 12, 3\]"):
        net(**{**batch, "past_weather": batch["past_weather"][:, :4]})


def test_several_weather_futures_match_one_forecast_each():
    """futures=S reads one encoded past under S weathers: the forecasts one window at a time would give."""
    net, batch = model(), inputs(batch=3)
    futures = [batch["weather"], batch["weather"] + 2.0, batch["weather"] * -1.5]
    together = net(**{**batch, "weather": torch.cat(futures)}, futures=3)
    for s, future in enumerate(futures):
        for a, b in zip(together, net(**{**batch, "weather": future})):
            torch.testing.assert_close(a[3 * s:3 * s + 3], b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"weather must be \[6, 12, 3\]"):
        net(**batch, futures=2)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="futures must be a whole number of at least 1"):
            net(**batch, futures=bad)
    with pytest.raises(ValueError, match="more than 1 only with use_weather"):
        model(use_weather=False)(**{**batch, "weather": None}, futures=2)


@pytest.mark.parametrize("step", [0, 4, 10])
def test_forecast_at_a_step_ignores_later_weather(step):
    """Causal weather: changing the weather after horizon step h leaves step h exactly as it was."""
    net = model()
    batch = inputs()
    later = batch["weather"].clone()
    later[:, step + 1:] += torch.randn_like(later[:, step + 1:]) * 3
    before, after = net(**batch), net(**{**batch, "weather": later})
    for a, b in zip(before, after):
        assert torch.equal(a[:, :step + 1], b[:, :step + 1])
    if step < 11:
        assert (before[0][:, step + 1:] - after[0][:, step + 1:]).abs().amax() > 1e-4
    *_, diag = net.forward_with_diagnostics(**batch)
    assert (diag.weather_attention.triu(1) == 0).all()


def test_model_output_and_weather_attention_respond_to_weather_and_traffic():
    net = model()
    batch = inputs()
    means, _, _, diag = net.forward_with_diagnostics(**batch)
    means_rain, *_ = net(**{**batch, "weather": batch["weather"] + 2.0})
    assert (means_rain - means).abs().amax() > 1e-4
    *_, diag_traffic = net.forward_with_diagnostics(**{**batch, "x": batch["x"] + 1.0})
    assert (diag_traffic.weather_attention - diag.weather_attention).abs().amax() > 1e-4


# ---- temporal attention and dropout ------------------------------------------------------

@pytest.mark.parametrize("need_weights", [False, True])
def test_temporal_branch_equals_multihead_attention(need_weights):
    """`attend` over the branch's own nn.MultiheadAttention parameters gives what that module gives."""
    torch.manual_seed(0)
    branch = TemporalBranch(32, 4, dropout=0.0, seq_len=12).eval()
    x = torch.randn(2, 12, 5, 32)
    out, weights = branch(x, need_weights=need_weights)
    seq = branch.pos_encoding(x.transpose(1, 2).reshape(10, 12, 32))
    context, reference = branch.attention(seq, seq, seq, average_attn_weights=False)
    seq = branch.norm1(seq + context)
    expected = branch.norm2(seq + branch.ffn(seq)).view(2, 5, 12, 32).transpose(1, 2)
    torch.testing.assert_close(out, expected)
    if need_weights:
        torch.testing.assert_close(weights, reference.view(2, 5, 4, 12, 12))


def test_dropout_is_bernoulli_per_element_and_rescales():
    p = 0.2
    y = dropout(torch.ones(400_000), p)
    kept = y != 0
    for lane in range(4):                       # every 16-bit lane of the random words is fair
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < 0.006
    pairs = kept[:-1] & kept[1:]                 # neighbours drawn independently
    assert abs(pairs.float().mean().item() - (1 - p) ** 2) < 0.006
    assert torch.allclose(y[kept], torch.tensor(1 / (1 - p)), rtol=1e-4)
    assert abs(y.mean().item() - 1) < 0.01
    assert not torch.equal(kept, dropout(torch.ones(400_000), p) != 0)


def test_dropout_identity_in_eval_and_at_the_ends():
    x = torch.randn(3, 50)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    layer = Dropout(0.5).eval()
    assert layer(x) is x


def test_dropout_compiles_whole_and_draws_the_eager_mask():
    """No graph break, and with ATen's random numbers the compiled mask is the eager one for one
    seed, so a resumed run redraws what it would have drawn."""
    x = torch.randn(64, 40)
    torch.manual_seed(3)
    eager = dropout(x, 0.2)
    compiled = torch.compile(lambda t: dropout(t, 0.2), fullgraph=True, options={"fallback_random": True})
    torch.manual_seed(3)
    torch.testing.assert_close(compiled(x), eager)


# ---- DropEdge ----------------------------------------------------------------------------

def test_eval_is_deterministic_and_keeps_every_edge():
    net = model(drop_edge=0.5)
    batch = inputs()
    first, second = net(**batch), net(**batch)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert net.drop_edge_mask(net.step_graph(batch["edge_index"], 7), 24, "cpu") is None


def test_drop_edge_only_in_training():
    net = model(drop_edge=0.6)
    graph = net.step_graph(ring_graph(7), 7)
    net.train()
    keep = net.drop_edge_mask(graph, 100, "cpu")
    assert keep.shape == (100, graph.num_real_edges)
    assert 0.3 < keep.float().mean() < 0.5
    assert not torch.equal(keep[0], keep[1])      # every step-graph loses different edges
    net.eval()
    assert net.drop_edge_mask(graph, 100, "cpu") is None


def test_dropped_edges_reach_the_graph_attention():
    """drop_edge=1 in training leaves GATv2 only its self loops: the same as an empty graph."""
    batch = inputs()
    for path in GAT_PATHS:
        net = model(dropout=0.0, drop_edge=1.0, gat_path=path).train()
        dropped = net(**batch)
        isolated = net.eval()(**{**batch, "edge_index": torch.empty(2, 0, dtype=torch.long)})
        with_edges = net(**batch)
        for a, b in zip(dropped, isolated):
            torch.testing.assert_close(a, b)
        assert (with_edges[0] - dropped[0]).abs().amax() > 1e-4


def test_step_graph_is_cached_but_follows_graph_changes():
    net = model()
    ei = ring_graph(7)
    assert net.step_graph(ei, 7) is net.step_graph(ei, 7)
    ei[1, 0] = 4  # in-place edit of the caller's graph must not be hidden by the cache
    assert net.step_graph(ei, 7).edge_index[1, 0] == 4
    other = ring_graph(7)[:, :5]
    assert net.step_graph(other, 7).num_real_edges == 5
    with pytest.raises(ValueError, match="twice"):
        StepGraph(torch.cat([other, other[:, :1]], 1), 7)


@pytest.mark.parametrize("path", GAT_PATHS)
def test_batched_spatial_branch_equals_one_graph_at_a_time(path):
    net = model(gat_path=path)
    batch = inputs(batch=2, nodes=7)
    h = net.embed(batch["x"], batch["mask"], batch["time_of_day"], batch["day_of_week"])
    branch = net.blocks[0].spatial
    out, _ = branch(h, net.step_graph(batch["edge_index"], 7))
    gat_one = branch.gat(h[1, 5], batch["edge_index"])
    torch.testing.assert_close(out[1, 5], branch.norm(gat_one + h[1, 5]))


# ---- the dense GATv2 path equals PyG's -------------------------------------------------------

def test_the_per_edge_gather_has_index_selects_gradient_eager_and_compiled():
    """Compiled on a CPU (how training runs there) its backward sums each node's uses through a
    padded table instead of index_add's atomics."""
    graph = StepGraph(RoadGraph.hcmc().edge_index, 62)            # 2 to 6 uses per node
    x = torch.randn(3, 62, 4, 5, requires_grad=True)
    weights = torch.randn(3, graph.edge_index.shape[1], 4, 5)
    for gather, index in ((graph.sources, graph.edge_index[0]), (graph.targets, graph.edge_index[1])):
        expected = torch.autograd.grad((x.index_select(1, index) * weights).sum(), x)[0]
        table = lambda x: spatial.TableGather.apply(x, gather.index, gather.uses, gather.used)   # noqa: E731
        for run in (gather, table, torch.compile(gather.__call__, fullgraph=True)):
            torch.testing.assert_close(run(x), x.index_select(1, index))
            torch.testing.assert_close(torch.autograd.grad((run(x) * weights).sum(), x)[0], expected)


@pytest.mark.parametrize("layout", ["concat", "mean"])
@pytest.mark.parametrize("drop_edge", [0.0, 0.3])
def test_dense_path_equals_pyg_outputs_and_gradients(layout, drop_edge):
    """Same weights, same DropEdge draw: outputs and every parameter gradient agree in fp32."""
    batch = inputs(batch=3, nodes=62)
    batch["edge_index"] = ring_graph(62)
    assert_path_equals_pyg("dense", batch, torch.randn(3, 12, 62), gat_layout=layout, drop_edge=drop_edge)


def assert_path_equals_pyg(path, batch, target, **overrides):
    """`path` and PyG's path with the same weights and the same DropEdge draw: outputs and every
    parameter gradient of a mixture NLL agree in fp32."""
    results = {}
    for each in (path, "pyg"):
        net = model(gat_path=each, dropout=0.0, **overrides).train()
        torch.manual_seed(1)                      # the same DropEdge mask on both paths
        params = net(**batch)
        mixture_nll(target, *params).backward()
        results[each] = params, {k: p.grad for k, p in net.named_parameters()}
    (ours, our_grads), (pyg, pyg_grads) = results[path], results["pyg"]
    for a, b in zip(ours, pyg):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert our_grads.keys() == pyg_grads.keys()
    for name in our_grads:
        torch.testing.assert_close(our_grads[name], pyg_grads[name], rtol=1e-5, atol=1e-5, msg=name)


def test_dense_path_reports_the_same_attention_as_pyg():
    batch = inputs(batch=2, nodes=7)
    dense = model(gat_path="dense").forward_with_diagnostics(**batch)[-1]
    pyg = model(gat_path="pyg").forward_with_diagnostics(**batch)[-1]
    assert torch.equal(dense.attention_edge_index, pyg.attention_edge_index)
    torch.testing.assert_close(dense.spatial_attention, pyg.spatial_attention)


def test_large_graphs_leave_the_dense_path(monkeypatch):
    net = model(gat_path="auto")
    batch = inputs(batch=1, nodes=7)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)     # the ratio rule is the compiled step's
    expected = net(**batch)
    monkeypatch.setattr("stmgt.model.spatial.DENSE_SLOTS_RATIO", {"cpu": 1.0})   # 7 nodes > 1 × 4 slots
    monkeypatch.setattr("stmgt.model.spatial.dense_gatv2", None)   # would fail if called
    for a, b in zip(net(**batch), expected):
        torch.testing.assert_close(a, b)


def uneven_graph(n: int = 40, seed: int = 3) -> torch.Tensor:
    """In-degrees from 0 to 8, node n − 1 isolated, node n − 2 a source only."""
    g = torch.Generator().manual_seed(seed)
    edges = set()
    for target in range(n - 2):
        for source in torch.randperm(n - 1, generator=g)[: target % 9].tolist():
            if source != target:
                edges.add((source, target))
    return torch.tensor(sorted(edges)).T


@pytest.mark.parametrize("layout", ["concat", "mean"])
@pytest.mark.parametrize("drop_edge", [0.0, 0.3])
@pytest.mark.parametrize("graph", ["ring", "uneven"])
@pytest.mark.parametrize("path", [p for p in GAT_PATHS if p != "pyg"])
def test_every_path_equals_pyg_outputs_and_gradients(path, graph, layout, drop_edge):
    """Each static-shape path against PyG's message passing, on a ring with chords and on a graph
    of uneven in-degrees with an isolated node: outputs and every parameter gradient in fp32."""
    nodes = 62 if graph == "ring" else 40
    batch = inputs(batch=3, nodes=nodes)
    batch["edge_index"] = ring_graph(nodes) if graph == "ring" else uneven_graph(nodes)
    assert_path_equals_pyg(path, batch, torch.randn(3, 12, nodes), gat_layout=layout, drop_edge=drop_edge)


def test_table_path_reports_the_same_attention_as_pyg():
    batch = inputs(batch=2, nodes=40)
    batch["edge_index"] = uneven_graph(40)
    table = model(gat_path="table").forward_with_diagnostics(**batch)[-1]
    pyg = model(gat_path="pyg").forward_with_diagnostics(**batch)[-1]
    assert torch.equal(table.attention_edge_index, pyg.attention_edge_index)
    torch.testing.assert_close(table.spatial_attention, pyg.spatial_attention)


def test_the_neighbour_table_lists_every_incoming_edge_once():
    graph = StepGraph(uneven_graph(40), 40)
    table = graph.table
    assert table.edges.shape == (40, graph.slots) and graph.slots == 9           # in-degree 8 + the self loop
    listed = table.edges[table.present]
    assert sorted(listed.tolist()) == list(range(graph.edge_index.shape[1]))
    assert torch.equal(graph.edge_index[1][table.edges[table.present]],
                       torch.arange(40).unsqueeze(1).expand(40, graph.slots)[table.present])
    assert torch.equal(table.edges.reshape(-1)[table.slot_of_edge], torch.arange(graph.edge_index.shape[1]))
    assert table.present[39].sum() == 1                                        # the isolated node: its self loop


def test_auto_path_picks_dense_on_the_embedded_graph_and_the_table_on_a_big_sparse_one(monkeypatch):
    embedded, big = StepGraph(RoadGraph.hcmc().edge_index, 62), StepGraph(ring_graph(5000), 5000)
    cpu = torch.device("cpu")
    assert spatial.choose_path(embedded, cpu, compiled=True) == "dense"
    assert spatial.choose_path(big, cpu, compiled=True) == "table"
    # Eager or without gradients (forecasts, validation) a CPU takes the table path at any size.
    assert spatial.choose_path(embedded, cpu) == "table"
    assert spatial.choose_path(embedded, cpu, taped=False, compiled=True) == "table"
    # Other devices go by the ratio, compiled or not.
    assert spatial.choose_path(embedded, torch.device("cuda")) == "dense"
    assert spatial.choose_path(big, torch.device("cuda")) == "table"
    with monkeypatch.context() as patched, torch.no_grad():
        patched.setattr("stmgt.model.spatial.dense_gatv2", None)          # would fail if called
        assert torch.isfinite(model().eval()(**inputs(batch=1, nodes=7))[0]).all()
    net = model(gat_path="dense")                       # a forced path stays forced
    monkeypatch.setattr("stmgt.model.spatial.DENSE_SLOTS_RATIO", {"cpu": 0.0})
    monkeypatch.setattr("stmgt.model.spatial.table_gatv2", None)   # would fail if called
    assert torch.isfinite(net(**inputs(batch=1, nodes=7))[0]).all()


# ---- masking -----------------------------------------------------------------------------

def test_values_under_a_false_mask_are_ignored():
    net = model()
    batch = inputs(missing=0.3)
    hidden = ~batch["mask"]
    changed = batch["x"].clone()
    changed[hidden] = 50.0
    changed[0, 0, 0] = float("nan") if hidden[0, 0, 0] else changed[0, 0, 0]
    for a, b in zip(net(**batch), net(**{**batch, "x": changed})):
        assert torch.equal(a, b)
    visible = batch["x"].clone()
    visible[batch["mask"]] += 1.0
    assert (net(**{**batch, "x": visible})[0] - net(**batch)[0]).abs().amax() > 1e-4


def test_observed_flag_and_clock_reach_the_output():
    net = model()
    batch = inputs()
    base = net(**batch)[0]
    zero_observed = batch["x"].clone()
    zero_observed[~batch["mask"]] = 0.0
    flipped = net(**{**batch, "x": zero_observed, "mask": torch.ones_like(batch["mask"])})[0]
    assert (flipped - base).abs().amax() > 1e-4  # a real 0 differs from a missing value
    later = net(**{**batch, "time_of_day": (batch["time_of_day"] + 0.25) % 1})[0]
    assert (later - base).abs().amax() > 1e-4
    with torch.no_grad():                            # the day vectors start at zero; training moves them
        net.time_encoding.day_of_week.weight.normal_()
    base = net(**batch)[0]
    weekend = net(**{**batch, "day_of_week": torch.full_like(batch["day_of_week"], 6)})[0]
    assert (weekend - base).abs().amax() > 1e-4


def test_a_day_of_the_week_never_trained_on_adds_nothing():
    """A few days of imported data leave some days out of the training split: their vectors must
    stay at zero, not at a random start that would shift every forecast made on such a day."""
    net = model().train()
    days = net.time_encoding.day_of_week.weight
    assert torch.equal(days, torch.zeros_like(days))
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2)
    batch = inputs()
    for _ in range(3):
        optimiser.zero_grad()
        net(**{**batch, "day_of_week": torch.full_like(batch["day_of_week"], 3)})[0].square().mean().backward()
        optimiser.step()
    assert days[3].abs().amax() > 0
    assert torch.equal(days[[0, 1, 2, 4, 5, 6]], torch.zeros(6, days.shape[1]))


# ---- diagnostics -------------------------------------------------------------------------

def test_diagnostics_shapes_and_normalisation():
    net = model()
    batch = inputs(batch=2, nodes=7)
    means, stds, weights, diag = net.forward_with_diagnostics(**batch)
    plain = net(**batch)
    for a, b in zip((means, stds, weights), plain):
        torch.testing.assert_close(a, b)

    assert isinstance(diag, Diagnostics)
    n_edges = batch["edge_index"].shape[1] + 7  # the ring has no self loops; GATv2 adds 7
    assert diag.alpha.shape == (3, 2, 12, 7)
    assert ((diag.alpha >= 0) & (diag.alpha <= 1)).all()
    assert diag.spatial_attention.shape == (3, 2, 12, n_edges, 4)
    assert diag.attention_edge_index.shape == (2, n_edges)
    assert diag.temporal_attention.shape == (3, 2, 7, 4, 12, 12)
    assert diag.weather_attention.shape == (2, 7, 4, 12, 12)
    for t in vars(diag).values():
        assert not t.requires_grad

    loops = diag.attention_edge_index[:, -7:]
    assert torch.equal(loops[0], torch.arange(7)) and torch.equal(loops[1], torch.arange(7))
    per_target = scatter(diag.spatial_attention, diag.attention_edge_index[1], dim=3, dim_size=7, reduce="sum")
    torch.testing.assert_close(per_target, torch.ones_like(per_target))
    torch.testing.assert_close(diag.temporal_attention.sum(-1), torch.ones(3, 2, 7, 4, 12))
    torch.testing.assert_close(diag.weather_attention.sum(-1), torch.ones(2, 7, 4, 12))


def test_spatial_attention_is_reported_per_step_and_edge():
    """Block 0's reported weights for sample 1, step 5 equal GATv2 run on that step alone."""
    net = model()
    batch = inputs(batch=2, nodes=7)
    *_, diag = net.forward_with_diagnostics(**batch)
    h = net.embed(batch["x"], batch["mask"], batch["time_of_day"], batch["day_of_week"])
    _, (edge_index, attention) = net.blocks[0].spatial.gat(h[1, 5], batch["edge_index"],
                                                         return_attention_weights=True)
    assert torch.equal(edge_index, diag.attention_edge_index)
    torch.testing.assert_close(diag.spatial_attention[0, 1, 5], attention)


def test_plain_forward_computes_no_attention_weights(monkeypatch):
    net = model(gat_path="pyg")
    seen = []

    def recording(*args, **kwargs):
        out = attend(*args, **kwargs)
        seen.append(out[1])
        return out
    for module in (temporal, weather):
        monkeypatch.setattr(module, "attend", recording)
    for module in net.modules():
        if isinstance(module, GATv2Conv):
            module.register_forward_hook(lambda m, i, o: seen.append(o if isinstance(o, tuple) else None))
    net(**inputs())
    assert len(seen) == 3 + 1 + 3 and all(s is None for s in seen)   # temporal, weather, GATv2


# ---- training ----------------------------------------------------------------------------

def test_tiny_overfit_loss_decreases():
    torch.manual_seed(0)
    net = STMGT(STMGTConfig(hidden_dim=32, num_blocks=2, dropout=0.0, drop_edge=0.0)).train()
    batch = inputs(batch=4, nodes=7)
    target = torch.randn(4, 12, 7, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = mixture_nll(target, *net(**batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3
    assert all(math.isfinite(v) for v in losses)


# ---- config ------------------------------------------------------------------------------

def test_config_round_trip_through_json():
    config = STMGTConfig(hidden_dim=64, gat_layout="mean", use_weather=False, dropout=0.1)
    restored = STMGTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert STMGT(restored).count_parameters() == STMGT(config).count_parameters()


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown STMGT config key.*hidden_size"):
        STMGTConfig.from_dict({**STMGTConfig().to_dict(), "hidden_size": 96})
    with pytest.raises(ValueError, match="gat_layout"):
        STMGTConfig(gat_layout="sum")
    with pytest.raises(ValueError, match="divisible"):
        STMGTConfig(hidden_dim=90, heads=4)
    with pytest.raises(ValueError, match="horizon"):
        STMGTConfig(horizon=6)


def test_recomputed_blocks_give_the_same_forecast_and_gradients():
    """`recompute_blocks` (memory for big graphs) keeps each block's input only and recomputes the
    block in the backward pass, replaying its random draws: dropout and DropEdge on, the same
    outputs and gradients as keeping everything."""
    net = model(dropout=0.3, drop_edge=0.2).train()
    batch = inputs()

    def step():
        torch.manual_seed(5)
        net.zero_grad()
        means = net(**batch)[0]
        means.square().mean().backward()
        return means.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]

    kept, kept_grads = step()
    net.recompute_blocks = True
    recomputed, recomputed_grads = step()
    torch.testing.assert_close(recomputed, kept, rtol=0, atol=0)
    assert len(recomputed_grads) == len(kept_grads)
    for got, want in zip(recomputed_grads, kept_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("path", ["dense", "table"])
def test_recomputed_blocks_keep_the_mode_of_their_forward_pass(path):
    """The trainer's what-if loss runs the model in eval mode with gradients, then switches it back to
    training before the backward pass: the recomputed blocks must not start dropping."""
    net = model(dropout=0.3, drop_edge=0.2, gat_path=path).eval()
    batch = inputs()
    expected = torch.autograd.grad(net(**batch)[0].square().mean(), list(net.parameters()), allow_unused=True)
    net.recompute_blocks = True
    loss = net(**batch)[0].square().mean()
    net.train()
    for got, want in zip(torch.autograd.grad(loss, list(net.parameters()), allow_unused=True), expected):
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
