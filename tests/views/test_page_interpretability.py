"""Interpretability page: gate α on a range fitted to its spread, attention views that follow the block /
head / step selectors, arrows on the map for the selected road, and the no-weather case."""

import shutil

import numpy as np
import pytest

from stmgt.data.graph import RoadGraph
from tests.views.page_helpers import array, deck_layers, plotly, tiny_run

PAGE = "views/interpretability.py"
ARROW_MAX_PX = 24


def heatmap(at, key: str) -> np.ndarray:
    return array(plotly(at, key)["data"][0]["z"])


def test_gate_heatmaps_show_the_spread_of_alpha(app):
    at = app(PAGE)
    spec = plotly(at, "interp_gate")
    axis = spec["layout"]["coloraxis"]
    traces = [t for t in spec["data"] if t["type"] == "heatmap"]
    alpha = np.stack([array(t["z"]) for t in traces])
    # Centred on an even mix, just wide enough for every value (to the next 0.05), and the legend says so.
    assert axis["cmin"] + axis["cmax"] == pytest.approx(1.0)
    assert axis["cmin"] <= alpha.min() and alpha.max() <= axis["cmax"]
    assert axis["cmax"] - 0.5 < np.abs(alpha - 0.5).max() + 0.05
    assert "centred on 0.5" in axis["colorbar"]["title"]["text"]
    assert len(traces) == 3                                    # the bundled model's blocks
    for trace in traces:
        z = array(trace["z"])
        assert z.shape == (12, 62)
        assert ((z >= 0) & (z <= 1)).all() and z.std() > 0
        assert trace["coloraxis"] == "coloraxis" and len(trace["x"]) == 62
    assert "%{customdata}" in traces[0]["hovertemplate"]        # street names on hover


def test_attention_matrix_zooms_on_the_selected_roads_neighbourhood(app):
    at = app(PAGE, node_id="n07")
    trace = plotly(at, "interp_attention")["data"][0]
    shown = trace["y"]
    assert "n07" in shown and 3 < len(shown) < 40 and shown == trace["x"]
    assert "%{customdata[0]}" in trace["hovertemplate"]                # street names on hover
    assert array(trace["z"])[shown.index("n07")].sum() == pytest.approx(1.0, abs=1e-4)   # all its sources shown


def test_attention_matrix_is_sparse_over_the_graph(app):
    at = app(PAGE)
    at.toggle(key="interp_matrix_all").set_value(True).run()
    spec = plotly(at, "interp_attention")
    trace = spec["data"][0]
    assert (trace["zmin"], trace["zmax"]) == (0.0, 1.0)
    z = array(trace["z"])
    graph = RoadGraph.hcmc()
    allowed = np.eye(62, dtype=bool)
    index = graph.index_of
    allowed[graph.edges["target"].map(index), graph.edges["source"].map(index)] = True
    assert (z[~allowed] == 0).all()                             # zero where there is no edge
    assert (np.diag(z) > 0).all()                               # self loops on the diagonal
    np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-4)   # softmax over each target's sources
    for key in ("interp_temporal", "interp_weather"):
        step = plotly(at, key)["data"][0]
        assert (step["zmin"], step["zmax"]) == (0.0, 1.0)
        np.testing.assert_allclose(array(step["z"]).sum(axis=1), 1.0, atol=1e-4)


def test_block_head_and_step_change_the_attention(app):
    at = app(PAGE, interp_matrix_all=True)
    assert at.radio(key="interp_block").value == 2 and at.radio(key="interp_head").value == 0
    first, temporal = heatmap(at, "interp_attention"), heatmap(at, "interp_temporal")
    at.radio(key="interp_block").set_value(0).run()
    block_1 = heatmap(at, "interp_attention")
    assert not np.allclose(block_1, first)
    assert not np.allclose(heatmap(at, "interp_temporal"), temporal)
    at.radio(key="interp_head").set_value(2).run()
    head_2 = heatmap(at, "interp_attention")
    assert not np.allclose(head_2, block_1)
    np.testing.assert_allclose(head_2.sum(axis=1), 1.0, atol=1e-4)   # one head is a distribution too
    weather = heatmap(at, "interp_weather")
    at.radio(key="interp_head").set_value(3).run()
    assert not np.allclose(heatmap(at, "interp_weather"), weather)
    earliest = at.select_slider(key="interp_step").options[0]     # its label, e.g. "04:15"
    at.select_slider(key="interp_step").set_value(0).run()
    assert not np.allclose(heatmap(at, "interp_attention"), head_2)
    assert any(f"at {earliest} in block 1" in c.value for c in at.caption)
    assert not at.exception


def test_arrows_point_into_the_selected_road_with_widths_proportional_to_attention(app):
    at = app(PAGE, node_id="n05", interp_matrix_all=True)
    graph = RoadGraph.hcmc()
    target = graph.index_of["n05"]
    row = heatmap(at, "interp_attention")[target]
    layers = deck_layers(at)
    arrows = layers["arrows"]["data"]
    pos = graph.positions()
    upstream = set(graph.edges.loc[graph.edges["target"] == "n05", "source"])
    assert len(arrows) == len(upstream) > 1
    by_source = {}
    heads = layers["arrow-heads"]["data"]
    for arrow, head in zip(arrows, heads):
        source = int(np.argmin((pos.lat - arrow["from_lat"]) ** 2 + (pos.lon - arrow["from_lon"]) ** 2))
        # The shaft runs towards the target and stops just short of it, where its head sits.
        along = np.array([arrow["to_lat"] - pos.lat[source], arrow["to_lon"] - pos.lon[source]])
        whole = np.array([pos.lat[target] - pos.lat[source], pos.lon[target] - pos.lon[source]])
        parallel = along[0] * whole[1] - along[1] * whole[0]         # 2-D cross product
        assert parallel == pytest.approx(0, abs=1e-9) and 0.5 < along @ whole / (whole @ whole) < 1
        assert np.hypot(*(whole - along)) < 0.0012                      # ~100 m short of the node
        assert (head["lat"], head["lon"]) == (arrow["to_lat"], arrow["to_lon"])
        by_source[graph.node_ids[source]] = arrow["width"]
    assert set(by_source) == upstream
    widths = np.array([by_source[n] for n in sorted(upstream)])
    weights = np.array([row[graph.index_of[n]] for n in sorted(upstream)])
    np.testing.assert_allclose(widths, ARROW_MAX_PX * weights, rtol=1e-4)
    nodes = {n["node_id"]: n for n in layers["nodes"]["data"]}
    assert nodes["n05"]["radius"] > nodes["n01"]["radius"]          # the selected road is highlighted
    assert layers["selected"]["data"] == [{"lon": pos.lon[target], "lat": pos.lat[target]}]
    listing = next(c.value for c in at.caption if c.value.startswith("Weights:"))
    strongest = graph.node_ids[int(np.argmax(np.where(np.arange(62) == target, 0, row)))]
    assert strongest in listing and "itself" in listing
    # Another road: the arrows follow it.
    at.selectbox(key="node_id_widget").set_value("n01").run()
    moved = deck_layers(at)["arrows"]["data"]
    assert len(moved) == (graph.edges["target"] == "n01").sum()
    assert all(a["to_lat"] == pytest.approx(pos.lat[0], abs=0.0012) for a in moved)


@pytest.fixture(scope="module")
def no_weather_run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("runs") / "dry", use_weather=False)


def test_model_without_weather_says_so(app, isolated_workspace, no_weather_run):
    shutil.copytree(no_weather_run, isolated_workspace / "runs" / "dry")
    at = app(PAGE, model="Run: dry")
    assert any("without weather" in i.value for i in at.info)
    assert len(plotly(at, "interp_gate")["data"]) == 1             # its single block
    assert at.radio(key="interp_head").options == ["mean", "1", "2"]


def test_plain_words_name_the_neighbour_with_the_largest_attention(app):
    at = app(PAGE, node_id="n05", interp_matrix_all=True)
    graph = RoadGraph.hcmc()
    target = graph.index_of["n05"]
    row = heatmap(at, "interp_attention")[target]
    neighbours = sorted((j for j in np.flatnonzero(row) if j != target), key=lambda j: -row[j])
    sentence = next(m.value for m in at.markdown if "listens most to" in m.value)
    first, second = (graph.label(graph.node_ids[j]) for j in neighbours[:2])
    assert f"listens most to **{first}** (attention {row[neighbours[0]]:.2f}), then **{second}**" in sentence
    alpha = np.stack([array(t["z"]) for t in plotly(at, "interp_gate")["data"]])
    assert f"gate α = {alpha[-1, :, target].mean():.2f}" in sentence            # the last block, as selected
    assert any("What these words mean" == e.label for e in at.expander)
    # Another block: the sentence follows it.
    at.radio(key="interp_block").set_value(0).run()
    sentence = next(m.value for m in at.markdown if "listens most to" in m.value)
    assert f"gate α = {alpha[0, :, target].mean():.2f}" in sentence
