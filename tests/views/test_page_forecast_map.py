"""Forecast map page under AppTest: the bundled model draws, scrubbers and toggles change what the
deck holds, a map click selects a node, the ranked table names the likely congested roads with the
forecast's own numbers (and its rows select roads), and a dataset without a model gets a message,
not a crash."""

import io
import json
import threading

import numpy as np
import pandas as pd
import pytest

import torch

import stmgt.forecasting.forecast
from stmgt.data.dataset import free_flow_speed
from stmgt.data.folder import write_folder
from stmgt.data.simulate import simulate
from stmgt.data.graph import RoadGraph
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from tests.views.page_helpers import click_node, deck_layers, select_row, selected_rows, table

PAGE = "views/forecast_map.py"
TABLE = "forecast_map_roads"


def nodes(at) -> pd.DataFrame:
    layer = next(v for k, v in deck_layers(at).items() if k.startswith("nodes"))
    return pd.DataFrame(layer["data"]).set_index("node_id")


def ring(at) -> tuple[float, float]:
    (row,) = deck_layers(at)["selected"]["data"]
    return row["lon"], row["lat"]


def node_position(at, node_id: str) -> tuple[float, float]:
    return tuple(nodes(at).loc[node_id, ["lon", "lat"]])


def legend_colours_kept(at) -> bool:
    """Every node is filled with its own colour, fully opaque, and nothing fades on selection."""
    layer = next(v for k, v in deck_layers(at).items() if k.startswith("nodes"))
    return layer["getFillColor"] == "@@=[r, g, b, 255]" and not layer.get("autoHighlight")

def tooltip(at) -> str:
    return json.loads(at.get("deck_gl_json_chart")[0].proto.tooltip)["html"]


def colours(at) -> np.ndarray:
    return nodes(at)[["r", "g", "b"]].to_numpy()


def legend(at) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_renders_the_bundled_forecast(app):
    at = app(PAGE)
    frame = nodes(at)
    assert len(frame) == 62 and frame.index[0] == "n01"
    assert (frame["q10"] <= frame["median"]).all() and (frame["median"] <= frame["q90"]).all()
    assert frame["p_congested"].between(0, 1).all()
    assert "80 % interval {q10}–{q90}" in tooltip(at) and "P(speed &lt; {limit})" in tooltip(at)
    assert "Median forecast speed, km/h" in legend(at)
    assert f"{np.median(frame['median']):.1f} km/h" == metric(at, "Network median speed")
    assert metric(at, "Likely congested") == f"{(frame['p_congested'] > 0.5).sum()} of 62 nodes"


def count_forecasts(monkeypatch) -> list[int]:
    """The anchors the model forecasts from now on (the page's cache misses)."""
    calls, forecast = [], stmgt.forecasting.forecast.Forecaster.forecast
    monkeypatch.setattr(stmgt.forecasting.forecast.Forecaster, "forecast",
                        lambda self, anchors, *a, **k: calls.append(int(anchors)) or forecast(self, anchors, *a, **k))
    return calls


def settle() -> None:
    """Wait for the page's background prefetch of neighbouring forecast times."""
    for thread in threading.enumerate():
        if thread.name == "stmgt-prefetch":
            thread.join()


def test_horizon_scrubber_recolours_without_recomputing(app, monkeypatch):
    at = app(PAGE)
    before, median_before = colours(at), nodes(at)["median"]
    calls = count_forecasts(monkeypatch)
    at.select_slider(key="horizon_widget").set_value(12).run()
    assert not at.exception
    assert at.session_state["anchor"] not in calls, "moving the horizon must reuse the cached forecast"
    assert (colours(at) != before).any(axis=1).sum() > 10
    assert not np.allclose(nodes(at)["median"], median_before)
    assert "+3 h" in tooltip(at)
    card = next(m.value for m in at.markdown if "80 % interval" in m.value)   # the selected node's card
    assert "(+3 h): median" in card


def test_neighbouring_forecast_times_are_prefetched(app, monkeypatch):
    at = app(PAGE)
    settle()
    calls = count_forecasts(monkeypatch)
    anchor = at.session_state["anchor"]
    at.select_slider(key="anchor_widget").set_value(anchor + 1).run()
    assert not at.exception
    assert anchor + 1 not in calls, "the next forecast time should come from the background prefetch"
    settle()
    assert anchor + 3 in calls                  # the prefetch follows the slider


def test_anchor_scrubber_makes_a_new_forecast(app):
    at = app(PAGE)
    slider = at.select_slider(key="anchor_widget")
    before, anchor = nodes(at)["median"], slider.value
    slider.set_value(anchor - 10).run()                   # 2 h 30 min earlier: before the morning rush
    assert not at.exception
    assert at.session_state["anchor"] == anchor - 10
    assert not np.allclose(nodes(at)["median"], before)


def test_layer_toggle_colours_by_probability(app):
    at = app(PAGE)
    speed_colours = colours(at)
    at.radio(key="map_layer").set_value("Congestion probability").run()
    assert not at.exception
    assert (colours(at) != speed_colours).any()
    assert "P(speed &lt; 50 % of free-flow)" in legend(at)          # text, escaped for HTML
    assert "Median forecast speed" not in legend(at)
    # the most likely congested node gets the darkest purple of the probability scale
    frame = nodes(at)
    darkest = frame.loc[frame["p_congested"].idxmax(), ["r", "g", "b"]].to_numpy(float)
    lightest = frame.loc[frame["p_congested"].idxmin(), ["r", "g", "b"]].to_numpy(float)
    assert darkest.sum() < lightest.sum()


def test_threshold_changes_congestion_probabilities(app):
    at = app(PAGE)
    low = nodes(at)["p_congested"]
    assert at.number_input(key="map_threshold").value == 50         # % of each node's free-flow speed
    at.number_input(key="map_threshold").set_value(80.0).run()
    assert not at.exception
    high = nodes(at)["p_congested"]
    assert (high >= low - 1e-6).all() and (high > low + 0.05).sum() > 10
    limits = nodes(at)["limit"].str.removesuffix(" km/h").astype(float)
    assert limits.between(5, 40).all() and limits.nunique() > 10      # each road against its own normal


def test_selected_node_is_shown_and_click_selects(app):
    at = app(PAGE, node_id="n07")
    assert ring(at) == node_position(at, "n07")             # a ring around the selected node
    assert legend_colours_kept(at)
    assert any("`n07`" in m.value for m in at.markdown)
    click_node(at, "n12", 11)
    assert not at.exception
    assert at.session_state["node_id"] == "n12"
    assert ring(at) == node_position(at, "n12")
    # The clicked layer is renamed, so the browser drops the click's selection (which would fade the map).
    assert "nodes" not in deck_layers(at) and any(layer.startswith("nodes-") for layer in deck_layers(at))
    at.switch_page("views/node_forecast.py").run()
    assert not at.exception
    assert at.selectbox(key="node_id_widget").value == "n12"


@pytest.fixture(scope="module")
def bundled() -> tuple[Forecaster, np.ndarray]:
    """The bundled model on the embedded data, outside the dashboard, and each road's free-flow
    speed: what the page's numbers must equal."""
    dataset = load_dataset(EMBEDDED)
    return Forecaster(Run(BUNDLED_RUN).load(), dataset), free_flow_speed(dataset)


def selected_roads(at) -> list[str]:
    """The road(s) of the table's selected row."""
    return [table(at, TABLE).value["node_id"].iloc[r] for r in selected_rows(at, TABLE)]


@pytest.mark.parametrize("step", [4, 12])
def test_ranked_table_names_the_likely_congested_roads(app, downloads, bundled, step):
    at = app(PAGE, horizon=step)
    assert at.session_state["horizon"] == step
    forecaster, free_flow = bundled
    forecast = forecaster.forecast(at.session_state["anchor"])
    mixture = forecast.mixture[0, step - 1]
    q10, median, q90 = mixture.quantiles([0.1, 0.5, 0.9]).numpy().T
    p = mixture.prob_below(torch.as_tensor(0.5 * free_flow, dtype=mixture.means.dtype)).numpy()
    roads = table(at, TABLE).value
    graph = forecaster.dataset.graph
    assert sorted(roads["node_id"]) == sorted(graph.node_ids)
    assert roads["p_congested"].is_monotonic_decreasing                 # most likely congested first
    rows = roads.set_index("node_id").loc[graph.node_ids]               # back in the graph's order
    assert rows["name"].tolist() == list(graph.names.values())
    for column, expected in [("p_congested", p), ("median_kmh", median), ("q10_kmh", q10), ("q90_kmh", q90),
                             ("free_flow_ratio", median / free_flow)]:
        np.testing.assert_allclose(rows[column], expected, atol=6e-4, err_msg=column)
    likely = int(metric(at, "Likely congested").split(" of ")[0])
    assert likely == (p > 0.5).sum() == (roads["p_congested"] > 0.5).sum()
    if step == 4:
        assert 0 < likely < 62                                           # a rush hour: some, not all
    assert any(f"Above 50 %: {likely} road(s)" in c.value for c in at.caption)
    # The download is the table, cell for cell.
    csv = downloads[f"congestion_{forecast.anchor_times[0]:%Y%m%dT%H%M}_step{step}.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(csv)), roads.reset_index(drop=True), check_dtype=False)


def test_a_table_row_selects_its_road(app):
    at = app(PAGE, node_id="n07")
    assert selected_roads(at) == ["n07"]                     # the table shows the session's road selected
    ids = table(at, TABLE).value["node_id"].tolist()
    row = next(i for i, node in enumerate(ids) if node not in ("n07", "n12"))
    road = ids[row]
    select_row(at, TABLE, row)
    assert not at.exception
    assert at.session_state["node_id"] == road
    assert ring(at) == node_position(at, road)                # the map rings it, the card shows it
    assert any(f"`{road}`" in m.value for m in at.markdown)
    assert selected_roads(at) == [road]
    click_node(at, "n12", 11)                                  # a map click moves the table's selection too
    assert selected_roads(at) == ["n12"]
    select_row(at, TABLE, row)
    at.switch_page("views/node_forecast.py").run()             # "Open its forecast" opens this road
    assert not at.exception
    assert at.selectbox(key="node_id_widget").value == road


def tiny_dataset(workspace) -> None:
    """An imported 3-node dataset: no saved model fits its graph."""
    graph = RoadGraph(pd.DataFrame({"node_id": ["a", "b", "c"], "name": ["A", "B", "C"], "lat": [10.77, 10.78, 10.79],
                                    "lon": [106.70, 106.71, 106.70], "road_class": ["primary"] * 3}),
                      pd.DataFrame({"source": ["a", "b", "b", "c"], "target": ["b", "a", "c", "b"],
                                    "length_m": [1200.0] * 4, "road_name": ["AB", "AB", "BC", "BC"]}))
    write_folder(simulate(weeks=1, seed=5, graph=graph), workspace / "datasets" / "tiny")


@pytest.mark.parametrize("page", [PAGE, "views/node_forecast.py"])
def test_dataset_without_model_shows_the_way_forward(app, isolated_workspace, page):
    tiny_dataset(isolated_workspace)
    at = app(page, dataset="Imported: tiny")
    assert not at.exception
    assert any("no model for this dataset" in w.value.lower() for w in at.warning)
    assert not at.get("deck_gl_json_chart") and not at.get("plotly_chart")
