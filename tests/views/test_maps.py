"""The map and chart builders the pages share: what they hand to the browser."""

import json

import numpy as np
import pandas as pd
import pytest

from stmgt.graph import RoadGraph
from ui.fan_chart import HIGHLIGHT, MUTED, horizon_bars
from ui.maps import SPEED_STOPS, ramp, road_map


@pytest.fixture(scope="module")
def graph():
    return RoadGraph.hcmc()


def strict_json(text: str):
    """Parse as browsers do: NaN and Infinity are not JSON."""
    def refuse(token):
        raise ValueError(f"{token} in the map spec")
    return json.loads(text, parse_constant=refuse)


def test_map_spec_is_valid_json_even_with_missing_values(graph):
    speed = np.linspace(5, 35, graph.num_nodes)
    speed[[0, 7]] = np.nan                                    # e.g. a sensor without data
    nodes = graph.nodes[["node_id", "name"]].assign(median=speed)
    deck = road_map(graph, nodes, ramp(speed, SPEED_STOPS), tooltip_html="{median}", highlight="n02")
    spec = strict_json(deck.to_json())
    layers = {layer["id"]: layer for layer in spec["layers"]}
    segments, points = layers["segments"], layers["nodes"]
    assert len(points["data"]) == graph.num_nodes and len(segments["data"]) == graph.num_edges
    rows = {row["node_id"]: row for row in points["data"]}
    assert rows["n01"]["median"] is None and rows["n01"]["r"] == 160           # missing: grey, empty tooltip
    assert rows["n03"]["median"] == pytest.approx(speed[2])
    assert rows["n02"]["radius"] > rows["n03"]["radius"]                       # the selected node stands out
    first = graph.edges.iloc[0]
    lat = graph.nodes.set_index("node_id")["lat"]
    assert segments["data"][0]["from_lat"] == pytest.approx(lat[first["source"]])
    assert segments["data"][0]["to_lat"] == pytest.approx(lat[first["target"]])


def test_map_spec_matches_pydecks_own_serialisation(graph):
    import pydeck as pdk

    nodes = graph.nodes[["node_id", "name"]]
    deck = road_map(graph, nodes, ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS), tooltip_html="x")
    assert json.loads(deck.to_json()) == json.loads(pdk.Deck.to_json(deck))


def test_map_without_basemap_still_draws_its_layers(graph):
    nodes = graph.nodes[["node_id"]]
    spec = strict_json(road_map(graph, nodes, ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                                basemap=False, tooltip_html="x").to_json())
    assert spec.get("mapStyle") is None and {layer["id"] for layer in spec["layers"]} == {"segments", "nodes"}


def test_horizon_bars_highlight_the_selected_step():
    minutes = np.arange(15, 181, 15)
    fig = horizon_bars(minutes, np.arange(12), 3, "Likely congested", "nodes")
    colours = list(fig.data[0].marker.color)
    assert colours[3] == HIGHLIGHT and colours.count(MUTED) == 11
    assert list(fig.layout.xaxis.tickvals) == [60, 120, 180]
    assert pd.Series(fig.data[0].y).tolist() == list(range(12))
