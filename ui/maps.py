"""pydeck maps of the road graph: nodes and segments coloured on fixed, legible scales, so frames
compare while scrubbing. Street tiles need the internet; without them the map draws the graph's own
streets with their names, which works offline."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pandas as pd
import pydeck as pdk
import streamlit as st
from pydeck.bindings.json_tools import default_serialize

from stmgt.data.graph import RoadGraph
from ui.text import html, one_line

NODE_LAYER = "nodes"
# Speed colours (km/h): jammed red → orange → yellow → free-flowing green; fixed, not per frame.
SPEED_STOPS = [(5, (178, 24, 43)), (12, (239, 101, 72)), (18, (253, 191, 71)), (26, (145, 207, 96)),
               (35, (26, 152, 80))]
# Probability colours: light grey-blue (unlikely) → deep purple (likely).
PROB_STOPS = [(0.0, (222, 235, 247)), (0.5, (158, 154, 200)), (1.0, (84, 39, 143))]
DELTA_STOPS = [(-8, (178, 24, 43)), (-2, (244, 165, 130)), (0, (247, 247, 247)), (2, (146, 197, 222)),
               (8, (33, 102, 172))]
MISSING = (160, 160, 160)
HALO = (20, 20, 20)                 # the ring around the selected node: its fill keeps the legend colour
RING_MAX_PX, RING_LINE_PX = 24, 3   # the ring's largest radius and its line, on screen
LABEL = (80, 80, 80)                # lighter than node outlines, which the e2e tests find by darkness
LABEL_PX, LABEL_CHAR = 12, 0.55     # street-name text height (px) and a character's width per px of it
CARTO_LIGHT = "https://basemaps.cartocdn.com/gl/positron-gl-style/style.json"
# Without street tiles: an empty map style, inline. Given no style at all, Streamlit's chart loads
# Carto's style from the internet anyway, a request on every map even offline (pydeck takes a style
# object only for Mapbox, so it goes as a data URL).
NO_BASEMAP = "data:application/json," + quote(json.dumps({"version": 8, "sources": {}, "layers": []}))
# Tooltips: a dark box of at most TIP_WIDTH_PX, wrapped, opening away from the nearer map edges
# (`tooltip_placement`). deck.gl puts the tooltip's corner at the pointer, so a node near the right
# or bottom edge had its tooltip cut off by the map.
TIP_WIDTH_PX, TIP_GAP_PX = 220, 12
TIP_BOX = (f"max-width:{TIP_WIDTH_PX}px;width:max-content;overflow-wrap:anywhere;background:#29323c;color:#f0f2f6;"
           "padding:6px 8px;border-radius:4px;font-size:12px;line-height:1.35;box-shadow:0 1px 4px rgba(0,0,0,.3)")
TIP_ROOT = {"backgroundColor": "transparent", "padding": "0", "fontSize": "12px"}
ARROW_HEAD = "▶"                    # points east at angle 0; turned to each arrow's bearing


class CompactDeck(pdk.Deck):
    """A pydeck Deck whose JSON is compact. pydeck pretty-prints (indent=2), which sends the spec
    through Python's pure-Python JSON encoder: a third of a scrubber move's server time. Without the
    indent the C encoder writes the same spec."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, default=default_serialize)


def ramp(values, stops) -> np.ndarray:
    """Linear colour interpolation between stops; NaN gets grey. Returns [n, 3] uint8."""
    values = np.asarray(values, dtype=float)
    xs = [x for x, _ in stops]
    out = np.stack([np.interp(values, xs, [c[i] for _, c in stops]) for i in range(3)], axis=-1)
    out[np.isnan(values)] = MISSING
    return out.round().astype(np.uint8)


def signed(x: float) -> str:
    """A tick label for a change: '+2', '−8', and a plain '0'."""
    return f"{x:+g}".replace("-", "−") if x else "0"


def legend_html(stops, unit: str, fmt=lambda x: f"{x:g}") -> str:
    """A horizontal gradient bar with tick labels (`fmt(x)`), for st.html / st.markdown. `unit` is
    text, escaped here, so it may name a node."""
    lo, hi = stops[0][0], stops[-1][0]
    grad = ", ".join(f"rgb{c} {100 * (x - lo) / (hi - lo):.0f}%" for x, c in stops)
    ticks = "".join(f"<span style='position:absolute;left:{100 * (x - lo) / (hi - lo):.0f}%;"
                    f"transform:translateX(-50%);font-size:0.75rem'>{fmt(x)}</span>" for x, _ in stops)
    return (f"<div style='max-width:420px;margin:4px 0 18px 0'>"
            f"<div style='height:12px;border-radius:3px;background:linear-gradient(to right,{grad})'></div>"
            f"<div style='position:relative;height:14px'>{ticks}</div>"
            f"<div style='font-size:0.75rem;color:#666;margin-top:2px'>{html(unit)}</div></div>")


def rounded(values, decimals: int) -> np.ndarray:
    """Numbers for a tooltip field, rounded in float64: a float32 rounded to 7.6 reaches the tooltip
    as 7.599999904632568. NaN stays NaN (an empty field)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals)


def road_map(graph: RoadGraph, nodes: pd.DataFrame, colour: np.ndarray, *, basemap: bool = False,
             tooltip_html: str, highlight: str | None = None, arrows: pd.DataFrame | None = None,
             edge_colour: np.ndarray | None = None, size: tuple[int, int] = (440, 420),
             node_layer: str = NODE_LAYER) -> CompactDeck:
    """`nodes`: one row per graph node (any extra columns feed the tooltip); `colour` [N, 3].
    Segments take the mean colour of their two ends unless `edge_colour` [E, 3] is given.
    `arrows` (source/target lat lon, width, colour) draws weighted arrows with heads, e.g. attention.
    The `highlight`ed node keeps its colour and gets a dark ring. Without `basemap` tiles the
    streets are named from the graph. `size` is the map's approximate width and height on screen
    (px): the view fits the graph in it. `node_layer` names the clickable layer (see
    `ui.state.node_layer`). `tooltip_html` is a fixed template: user text reaches it only through
    `{column}` fields, whose values Streamlit escapes as it fills them in."""
    pos = graph.positions()
    lat, lon = pos["lat"].to_numpy(), pos["lon"].to_numpy()
    chosen = nodes["node_id"].to_numpy() == highlight
    view = fitted_view(lat, lon, *size)
    tip_x, tip_y = tooltip_placement(lat, lon, view)
    node_rows = _records({**{k: v if k == "node_id" else _text(v) for k, v in nodes.items()}, "lat": lat, "lon": lon,
                          "r": colour[:, 0], "g": colour[:, 1], "b": colour[:, 2],
                          "radius": np.where(chosen, 90, 55), "tip_x": tip_x, "tip_y": tip_y})
    src, dst = graph.edge_index.numpy()
    ecol = edge_colour if edge_colour is not None else ((colour[src].astype(float) + colour[dst]) / 2).round()
    edge_rows = _records({"from_lon": lon[src], "from_lat": lat[src], "to_lon": lon[dst], "to_lat": lat[dst],
                          "r": ecol[:, 0], "g": ecol[:, 1], "b": ecol[:, 2],
                          "road_name": _text(graph.edges["road_name"])})
    layers = [
        pdk.Layer("LineLayer", edge_rows, id="segments", get_source_position=["from_lon", "from_lat"],
                  get_target_position=["to_lon", "to_lat"], get_color=["r", "g", "b", 220], get_width=5,
                  width_min_pixels=3, pickable=False),
    ]
    if not basemap and graph.has_coordinates:
        layers.append(street_names(graph, view.zoom))
    ring = (lon[chosen][0], lat[chosen][0]) if chosen.any() else None
    shafts, heads = arrow_layers(arrows, ring) if arrows is not None and len(arrows) else (None, None)
    if shafts is not None:
        layers.append(shafts)
    layers.append(pdk.Layer("ScatterplotLayer", node_rows, id=node_layer, get_position=["lon", "lat"],
                            get_fill_color=["r", "g", "b", 255], get_line_color=[30, 30, 30], get_radius="radius",
                            radius_min_pixels=5, radius_max_pixels=16, get_line_width=1,
                            line_width_units='"pixels"', stroked=True, pickable=True))
    if chosen.any():
        i = int(np.flatnonzero(chosen)[0])
        layers.append(pdk.Layer("ScatterplotLayer", [{"lon": lon[i], "lat": lat[i]}], id="selected",
                                get_position=["lon", "lat"], get_radius=150, radius_min_pixels=11,
                                radius_max_pixels=RING_MAX_PX, filled=False, stroked=True,
                                get_line_color=[*HALO, 255], get_line_width=RING_LINE_PX,
                                line_width_units='"pixels"', pickable=False))
    if heads is not None:
        layers.append(heads)                # over the nodes and the ring, which would hide a head otherwise
    return CompactDeck(layers=layers, initial_view_state=view, map_provider="carto" if basemap else None,
                       map_style=CARTO_LIGHT if basemap else NO_BASEMAP,
                       tooltip={"html": f"<div style='transform:translate({{tip_x}}, {{tip_y}});{TIP_BOX}'>"
                                        f"{tooltip_html}</div>", "style": TIP_ROOT})


def tooltip_placement(lat: np.ndarray, lon: np.ndarray, view: pdk.ViewState) -> tuple[list[str], list[str]]:
    """Per node, the CSS shift (x, y) of its tooltip from the pointer so that it opens into the map:
    to the right of nodes in the left third of the view, centred over the middle third, to the left
    in the right third; below nodes in the upper half, above in the lower half. Judged on the view
    the map opens with; a map panned far may still cut one off."""
    half_x = 0.85 / 2 * (np.ptp(lon) or 1.0)                 # the fitted view spans the nodes at most 85 %
    across = (lon - view.longitude) / max(half_x, 1e-12)
    x = np.select([across < -1 / 3, across > 1 / 3], [f"{TIP_GAP_PX}px", f"calc(-100% - {TIP_GAP_PX}px)"], "-50%")
    y = np.where(lat < view.latitude, f"calc(-100% - {TIP_GAP_PX}px)", f"{TIP_GAP_PX}px")
    return x.tolist(), y.tolist()


def street_names(graph: RoadGraph, zoom: float, size_px: int = LABEL_PX) -> pdk.Layer:
    """The graph's street names along its segments, turned with the road and kept upright. Chosen
    here rather than in the browser, at the map's fitted zoom: longest segments first, a label only
    where it fits along its segment and overlaps no label already placed, so the names stay readable
    on any browser."""
    pos = graph.positions()
    scale = 512 * 2 ** zoom / (2 * np.pi)                                 # screen px per Mercator radian
    x = scale * np.radians(pos["lon"].to_numpy())
    y = -scale * np.log(np.tan(np.pi / 4 + np.radians(pos["lat"].to_numpy()) / 2))
    src, dst = graph.edge_index.numpy()
    names = _text(graph.edges["road_name"].fillna("").astype(str))
    placed, rows, named = [], [], set()       # named: segments labelled, either way (a two-way street is two edges)
    for k in np.argsort(-np.hypot(x[dst] - x[src], y[dst] - y[src]), kind="stable"):
        a, b = src[k], dst[k]
        dx, dy = x[b] - x[a], y[b] - y[a]
        length, width = float(np.hypot(dx, dy)), LABEL_CHAR * size_px * len(names[k])
        if not names[k] or width > 0.9 * length or (min(a, b), max(a, b), names[k]) in named:
            continue
        ux, uy = dx / length, dy / length
        cx, cy = (x[a] + x[b]) / 2 - uy * size_px * 0.6, (y[a] + y[b]) / 2 + ux * size_px * 0.6  # beside the road
        half_w = abs(ux) * width / 2 + abs(uy) * size_px / 2
        half_h = abs(uy) * width / 2 + abs(ux) * size_px / 2
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        if any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in placed):
            continue
        placed.append(box)
        named.add((min(a, b), max(a, b), names[k]))
        angle = -np.degrees(np.arctan2(dy, dx))                           # screen y points down
        angle = angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle
        rows.append({"lon": float(np.degrees(cx / scale)),
                     "lat": float(np.degrees(2 * np.arctan(np.exp(-cy / scale)) - np.pi / 2)),
                     "name": names[k], "angle": round(float(angle), 1)})
    return pdk.Layer("TextLayer", rows, id="street-names", get_position=["lon", "lat"], get_text="name",
                     get_angle="angle", get_size=size_px, get_color=[*LABEL, 255], font_family='"sans-serif"',
                     character_set='"auto"', font_settings={"sdf": True}, outline_width=2,
                     outline_color=[255, 255, 255, 255], pickable=False)


def arrow_layers(arrows: pd.DataFrame, ring: tuple[float, float] | None = None) -> tuple[pdk.Layer, pdk.Layer]:
    """Shafts as lines and a filled triangle at each target (scaled with the shaft's width),
    pulled back from the target so the head sits at the node's edge; the head of an arrow into the
    node with the selection ring at `ring` (lon, lat) moves a further fixed distance on screen, out of
    the ring, while its shaft runs on under the ring."""
    rows = dict(arrows.items())
    dx = (rows["to_lon"] - rows["from_lon"]) * np.cos(np.radians(rows["to_lat"]))
    dy = rows["to_lat"] - rows["from_lat"]
    angle = np.degrees(np.arctan2(dy, dx))
    length = np.hypot(dx, dy)
    ringed = np.zeros(len(angle), bool) if ring is None else (np.isclose(rows["to_lon"], ring[0])
                                                              & np.isclose(rows["to_lat"], ring[1]))
    back = np.minimum(0.0009 / np.maximum(length, 1e-9), 0.45)                         # ~100 m before the node
    towards_source = np.stack([-np.cos(np.radians(angle)), np.sin(np.radians(angle))], axis=-1)   # screen y down
    offset = np.where(ringed[:, None], towards_source * (RING_MAX_PX + RING_LINE_PX), 0.0).round(1)
    tip_lon = rows["to_lon"] - back * (rows["to_lon"] - rows["from_lon"])
    tip_lat = rows["to_lat"] - back * (rows["to_lat"] - rows["from_lat"])
    shafts = _records({**rows, "to_lon": tip_lon, "to_lat": tip_lat})
    heads = _records({"lon": tip_lon, "lat": tip_lat, "angle": angle.round(1), "r": rows["r"], "g": rows["g"],
                      "b": rows["b"], "size": np.maximum(16, 3.5 * np.asarray(rows["width"], dtype=float)).round(1),
                      "head": np.full(len(tip_lon), ARROW_HEAD), "offset": offset})
    return (pdk.Layer("LineLayer", shafts, id="arrows", get_source_position=["from_lon", "from_lat"],
                      get_target_position=["to_lon", "to_lat"], get_color=["r", "g", "b", 230],
                      get_width="width", width_units='"pixels"', pickable=False),
            # deck.gl calls getText for every row, so the glyph is a column named here, not a constant
            # (a quoted constant reached the browser as a string: "r is not a function"); and pydeck would
            # turn a list of strings, e.g. a character set, into an expression, so that is a string too.
            pdk.Layer("TextLayer", heads, id="arrow-heads", get_position=["lon", "lat"], get_text="head",
                      get_angle="angle", get_size="size", get_color=["r", "g", "b", 240], get_pixel_offset="offset",
                      character_set=f'"{ARROW_HEAD}"', get_text_anchor='"end"', pickable=False))


def basemap_toggle(key: str, container=st) -> bool:
    """The street-tiles switch every map shares. Off by default: the server cannot tell whether
    the browser is online, and offline the tiles leave a silent white map, while the graph's own
    streets and names draw everywhere."""
    on = container.toggle("Street tiles (online)", value=False, key=key,
                          help="Carto's street tiles, loaded by your browser from the internet. Off, the map shows "
                               "the road graph's own streets and their names, which works offline.")
    if on:
        container.caption(":material/wifi: Tiles come from basemaps.cartocdn.com: if the background stays blank, "
                          "this browser is offline; switch them off for the street names.")
    return on


def _records(columns: dict) -> list[dict]:
    """Layer rows as plain dicts, from equal-length columns: pydeck would otherwise convert a
    DataFrame with `to_dict("records")`, several ms per map frame."""
    return [dict(zip(columns, row)) for row in zip(*map(_json_values, columns.values()))]


def _text(column):
    """A text column as maps show it, on one line with bidi controls visible (`ui.text.one_line`;
    Streamlit escapes it for the tooltip's HTML); other columns as they are. Node ids are not passed
    through here: a click selects the node by its id."""
    column = np.asarray(column)
    if column.dtype != object:
        return column
    return np.array([one_line(v) if isinstance(v, str) else v for v in column.tolist()], dtype=object)


def _json_values(column) -> list:
    """A column as JSON-ready Python values; NaN (which JSON lacks) becomes null, shown empty."""
    column = np.asarray(column)
    if column.dtype.kind == "f" and not np.isfinite(column).all():
        column = np.where(np.isfinite(column), column, None)
    return column.tolist()


def fitted_view(lat: np.ndarray, lon: np.ndarray, width_px: int, height_px: int) -> pdk.ViewState:
    """The view centred on the nodes' bounding box, zoomed so the box fills at most 85 % of a map of
    the given size (Web Mercator, 512-px tiles as deck.gl uses them)."""
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))             # Mercator northing
    lon_span = max(float(np.ptp(lon)), 1e-4) / 360
    y_span = max(float(np.ptp(y)), 1e-4) / (2 * np.pi)
    zoom = np.log2(0.85 * min(width_px / lon_span, height_px / y_span) / 512)
    centre_y = (y.min() + y.max()) / 2
    return pdk.ViewState(latitude=float(np.degrees(2 * np.arctan(np.exp(centre_y)) - np.pi / 2)),
                         longitude=float((lon.min() + lon.max()) / 2), zoom=float(np.clip(zoom, 1, 18)), pitch=0)
