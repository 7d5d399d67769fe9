"""The map and chart builders the pages share: what they hand to the browser."""

import json

import numpy as np
import pandas as pd
import pytest

from stmgt.data.graph import RoadGraph
from ui.fan_chart import HIGHLIGHT, MUTED, horizon_bars
from ui.maps import NO_BASEMAP, RING_LINE_PX, RING_MAX_PX, SPEED_STOPS, ramp, road_map, street_names


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
    (halo,) = layers["selected"]["data"]
    assert (halo["lon"], halo["lat"]) == (rows["n02"]["lon"], rows["n02"]["lat"])
    first = graph.edges.iloc[0]
    lat = graph.nodes.set_index("node_id")["lat"]
    assert segments["data"][0]["from_lat"] == pytest.approx(lat[first["source"]])
    assert segments["data"][0]["to_lat"] == pytest.approx(lat[first["target"]])


def test_map_spec_matches_pydecks_own_serialisation(graph):
    import pydeck as pdk

    nodes = graph.nodes[["node_id", "name"]]
    deck = road_map(graph, nodes, ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS), tooltip_html="x")
    assert json.loads(deck.to_json()) == json.loads(pdk.Deck.to_json(deck))


def test_map_without_basemap_names_its_streets(graph):
    nodes = graph.nodes[["node_id"]]
    spec = strict_json(road_map(graph, nodes, ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                                basemap=False, tooltip_html="x", size=(600, 520)).to_json())
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert set(layers) == {"segments", "street-names", "nodes"}
    # An empty style of its own, inline: given none, Streamlit's chart would fetch Carto's from the internet.
    assert spec["mapStyle"] == NO_BASEMAP and NO_BASEMAP.startswith("data:") and "cartocdn" not in json.dumps(spec)
    labels = layers["street-names"]["data"]
    assert 8 <= len(labels) < graph.num_edges / 4                     # a readable subset, not every segment
    assert len(street_names(graph, zoom=16).data) > 2 * len(labels)  # closer in, more of them fit
    assert {label["name"] for label in labels} <= set(graph.edges["road_name"])
    assert all(-90 <= label["angle"] <= 90 for label in labels)       # upright
    online = strict_json(road_map(graph, nodes, ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                                  basemap=True, tooltip_html="x").to_json())
    assert "street-names" not in {layer["id"] for layer in online["layers"]}   # the tiles name the streets


def test_attention_arrows_have_heads_at_their_targets(graph):
    pos = graph.positions()
    arrows = pd.DataFrame({"from_lon": pos.lon[[1, 2]].to_numpy(), "from_lat": pos.lat[[1, 2]].to_numpy(),
                           "to_lon": pos.lon[0], "to_lat": pos.lat[0], "width": [4.0, 12.0], "r": 8, "g": 48, "b": 107})
    spec = strict_json(road_map(graph, graph.nodes[["node_id"]], ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                                arrows=arrows, tooltip_html="x", highlight="n01").to_json())
    layers = {layer["id"]: layer for layer in spec["layers"]}
    order = list(layers)
    assert order.index("arrows") < order.index("nodes") < order.index("selected") < order.index("arrow-heads")
    heads, shafts = layers["arrow-heads"]["data"], layers["arrows"]["data"]
    assert len(heads) == 2 and heads[1]["size"] > heads[0]["size"]             # heavier arrow, bigger head
    for head, shaft in zip(heads, shafts):                                      # each head ends its shaft
        assert (head["lon"], head["lat"]) == pytest.approx((shaft["to_lon"], shaft["to_lat"]))
        # Into the ringed node: moved back along the arrow, on screen, to outside the ring.
        assert np.hypot(*head["offset"]) == pytest.approx(RING_MAX_PX + RING_LINE_PX, abs=0.1)
        assert np.sign(head["offset"][0]) == np.sign(shaft["from_lon"] - shaft["to_lon"])
        assert np.sign(head["offset"][1]) == -np.sign(shaft["from_lat"] - shaft["to_lat"])    # screen y points down
    plain = strict_json(road_map(graph, graph.nodes[["node_id"]], ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                                 arrows=arrows, tooltip_html="x").to_json())
    (plain_heads,) = [layer["data"] for layer in plain["layers"] if layer["id"] == "arrow-heads"]
    assert all(head["offset"] == [0, 0] for head in plain_heads)              # no ring: at the node's edge
    # deck.gl calls a TextLayer's getText on every row: a constant reached the browser as a plain
    # string ("TextLayer({id: 'arrow-heads'}): r is not a function"). It must name a column.
    text = layers["arrow-heads"]["getText"]
    assert text.startswith("@@=") and all(head[text[3:]] == "▶" for head in heads)
    assert layers["arrow-heads"]["characterSet"] == "▶"                          # a string, not an expression
    for layer in spec["layers"]:                                               # no layer takes a constant text
        assert layer.get("getText", "@@=").startswith("@@="), layer["id"]


def test_tooltips_open_into_the_map(graph):
    """A tooltip opens away from the nearer edges of the fitted view, so none is cut off by the map,
    and it wraps at a fixed width."""
    deck = road_map(graph, graph.nodes[["node_id"]], ramp(np.full(graph.num_nodes, 20.0), SPEED_STOPS),
                    tooltip_html="<b>{node_id}</b>")
    assert deck._tooltip["html"].endswith("<b>{node_id}</b></div>")
    assert "translate({tip_x}, {tip_y})" in deck._tooltip["html"] and "max-width:" in deck._tooltip["html"]
    rows = pd.DataFrame({layer["id"]: layer for layer in strict_json(deck.to_json())["layers"]}["nodes"]["data"])
    view = deck.initial_view_state
    west, east = rows.lon < rows.lon.quantile(0.1), rows.lon > rows.lon.quantile(0.9)
    assert (rows.tip_x[west] == "12px").all() and rows.tip_x[east].str.startswith("calc(-100%").all()
    assert (rows.tip_x == "-50%").any()                                        # the middle third: centred
    assert rows.tip_y[rows.lat < view.latitude].str.startswith("calc(-100%").all()    # south: above the node
    assert (rows.tip_y[rows.lat >= view.latitude] == "12px").all()


def test_horizon_bars_highlight_the_selected_step():
    minutes = np.arange(15, 181, 15)
    fig = horizon_bars(minutes, np.arange(12), 3, "Likely congested", "nodes")
    colours = list(fig.data[0].marker.color)
    assert colours[3] == HIGHLIGHT and colours.count(MUTED) == 11
    assert list(fig.layout.xaxis.tickvals) == [60, 120, 180]
    assert pd.Series(fig.data[0].y).tolist() == list(range(12))


def test_what_if_maps_share_one_view(app):
    """The model's and the simulator's change maps open on the same view, so they compare road by road."""
    at = app("views/what_if.py")
    decks = [json.loads(chart.proto.json) for chart in at.get("deck_gl_json_chart")]
    assert len(decks) == 2 and decks[0]["initialViewState"] == decks[1]["initialViewState"]
