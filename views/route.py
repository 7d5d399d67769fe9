"""Route: the fastest route between two nodes for a departure within the forecast horizon, its
travel-time distribution (Monte Carlo through the forecast mixtures, errors correlated as in
training), the shortest route beside it, and the historical-average and (simulated data) actual
travel times."""

from dataclasses import replace

import networkx as nx
import numpy as np
import pandas as pd
import streamlit as st

from stmgt.errors import DataError
from stmgt.routing.trip import TripPlanner
from ui import state
from ui.downloads import csv_download
from ui.fan_chart import horizon_label
from ui.layout import flex_columns, metric_columns
from ui.maps import NODE_LAYER, SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map
from ui.route_chart import travel_time_histogram
from ui.text import md

FROM_KEY, TO_KEY, CLICK_KEY, MAP_KEY = "route_from", "route_to", "route_click", "route_map"
ON_TIME = "P(on time)"               # the comparison table's column, with a deadline
ORIGIN, DESTINATION = "Origin", "Destination"
BACKGROUND, ORIGIN_COLOUR, DESTINATION_COLOUR = (205, 205, 212), (26, 152, 80), (178, 24, 43)
SHORTEST_COLOUR = (84, 39, 143)     # the purple the other pages use for a highlight
DEADLINE_MAX_MIN = 180              # the deadline slider's reach, in whole minutes after departure, at least


@st.cache_resource(show_spinner="Loading how forecast errors move together (estimated once per model and "
                                "data, then saved beside the model)…", max_entries=4)
def _planner(model_key: str) -> TripPlanner:
    return TripPlanner.for_forecaster(state.current_forecaster(), state.current_model_choice().run.path)


def deadline_picker(depart: pd.Timestamp, travel, trip_key: str) -> pd.Timestamp | None:
    """The arrival deadline, if asked for. It starts at the median arrival plus a margin
    (`TravelTime.suggested_budget`), for each trip afresh: a fixed budget gave 0 % or 100 % on most trips."""
    if not st.toggle("Arrival deadline", key="route_use_deadline"):
        return None
    budget = min(travel.suggested_budget(), DEADLINE_MAX_MIN)
    reach = max(DEADLINE_MAX_MIN, int(np.ceil(2 * travel.p90)))
    minutes = st.select_slider("Arrive by", options=list(range(1, reach + 1)), value=budget,
                               key=f"route_deadline_{trip_key}",
                               format_func=lambda m: f"{depart + pd.Timedelta(minutes=m):%H:%M}",
                               help="Starts at the median arrival plus half the way to the P90 arrival.")
    return depart + pd.Timedelta(minutes=minutes)


def set_clicked_node() -> None:
    """A clicked node becomes the origin or the destination, as the radio says."""
    objects = st.session_state[MAP_KEY].selection.get("objects", {}).get(NODE_LAYER, [])
    if objects:
        st.session_state[FROM_KEY if st.session_state.get(CLICK_KEY) == ORIGIN else TO_KEY] = objects[0]["node_id"]


def route_rows(graph, answer, colour, width: float) -> pd.DataFrame:
    """A route's segments as map lines."""
    pos = graph.positions()
    src, dst = graph.edge_index.numpy()[:, answer.route.edges]
    colour = np.broadcast_to(np.asarray(colour, dtype=float), (len(src), 3))
    return pd.DataFrame({"from_lon": pos.lon.to_numpy()[src], "from_lat": pos.lat.to_numpy()[src],
                         "to_lon": pos.lon.to_numpy()[dst], "to_lat": pos.lat.to_numpy()[dst], "width": width,
                         "r": colour[:, 0], "g": colour[:, 1], "b": colour[:, 2]})


st.title("Route")
forecaster = state.require_forecaster()
dataset = forecaster.dataset
graph = dataset.graph
ids = graph.node_ids
if st.session_state.get(FROM_KEY) not in ids or st.session_state.get(TO_KEY) not in ids:
    # First visit, or another dataset: a cross-town trip, from the first node to the one farthest by road.
    reach = nx.single_source_dijkstra_path_length(graph.to_networkx(), ids[0], weight="length_m")
    st.session_state[FROM_KEY], st.session_state[TO_KEY] = ids[0], max(reach, key=reach.get)

pick = flex_columns([4, 4, 3], 200, key="route_pick")
origin = pick[0].selectbox("From", ids, key=FROM_KEY, format_func=state.node_option(graph))
destination = pick[1].selectbox("To", ids, key=TO_KEY, format_func=state.node_option(graph))
pick[2].radio("A map click sets", [ORIGIN, DESTINATION], key=CLICK_KEY, horizontal=True)
when = flex_columns([5, 4, 3], 200, key="route_when")
with when[0]:
    anchor = state.anchor_picker(forecaster)
forecast = state.forecast(anchor)
made = forecast.anchor_times[0]
offsets = list(range(forecast.horizon))
offset = when[1].select_slider(
    "Leave at", options=offsets, key="route_depart",
    format_func=lambda s: f"{made + s * forecast.freq:%H:%M}"
                          + (f" ({horizon_label(s, forecast.freq)})" if s else " (now)"),
    help="Departures within the forecast's horizon; segments entered later use later forecast steps.")
depart = made + offset * forecast.freq

try:
    trip = _planner(state.model_key()).plan(forecast, origin, destination, depart)
except DataError as exc:
    st.error(f"No answer for this trip: {md(exc)}")
    st.stop()
fastest, shortest = trip.fastest, trip.shortest
travel = fastest.travel
same = list(shortest.route.nodes) == list(fastest.route.nodes)
with when[2]:
    deadline = deadline_picker(depart, travel, f"{origin}_{destination}_{depart:%Y%m%dT%H%M}")
trip = replace(trip, deadline=deadline)

cols = metric_columns(5 if fastest.true_min is None else 6)
cols[0].metric("Median (P50)", f"{travel.p50:.1f} min",
               help=f"Half of {len(travel.samples):,} Monte Carlo draws arrive sooner; mean {travel.mean:.1f} min.")
cols[1].metric("80 % interval, min", f"{travel.p10:.1f}–{travel.p90:.1f}",
               help="P10–P90 of the draws: 8 trips in 10 should take this long.")
cols[2].metric("Arrive (P50)", f"{(depart + pd.Timedelta(minutes=travel.p50)).round('min'):%H:%M}",
               delta=f"by {(depart + pd.Timedelta(minutes=travel.p90)).ceil('min'):%H:%M} with 90 %",
               delta_color="off", delta_arrow="off")
cols[3].metric("Historical avg.", f"{fastest.historical_min:.1f} min",
               help="The same route driven at the training split's average speed for each node and time of week.")
if deadline is not None:
    cols[4].metric(f"P(arrive by {deadline:%H:%M})", f"{trip.p_on_time:.0%}",
                   delta=None if same else f"shortest route {trip.on_time(shortest):.0%}",
                   delta_color="off", delta_arrow="off",
                   help="Share of the draws that arrive by the deadline, on the fastest route"
                        + ("." if same else " and, below, on the shortest one."))
else:
    cols[4].metric("Distance", f"{fastest.length_m / 1000:.2f} km", delta=f"{len(fastest.route.edges)} segments",
                   delta_color="off", delta_arrow="off")
if fastest.true_min is not None:
    cols[5].metric("Actual", f"{fastest.true_min:.1f} min",
                   help="This trip driven through the simulator's actual speeds, with the same travel-time model.")

map_col, chart_col = flex_columns(2, 420, key="route_map_row")
with map_col:
    basemap = basemap_toggle("route_basemap")           # over its map, as on the other pages, with room for its label
    speed = fastest.segments["expected_speed_kmh"].to_numpy()
    lines = [route_rows(graph, fastest, ramp(speed, SPEED_STOPS), 9)]
    if not same:
        lines.insert(0, route_rows(graph, shortest, SHORTEST_COLOUR, 4))
    colour = np.tile(BACKGROUND, (graph.num_nodes, 1)).astype(np.uint8)
    colour[graph.index_of[origin]], colour[graph.index_of[destination]] = ORIGIN_COLOUR, DESTINATION_COLOUR
    nodes = graph.nodes[["node_id"]].assign(name=list(graph.names.values()))
    deck = road_map(graph, nodes, colour, basemap=basemap,
                    tooltip_html="<b>{name}</b><br/>{node_id}", highlight=destination, arrows=pd.concat(lines),
                    edge_colour=np.tile(BACKGROUND, (graph.num_edges, 1)), size=(620, 460))
    st.pydeck_chart(deck, height=460, on_select=set_clicked_node, selection_mode="single-object", key=MAP_KEY)
    st.html(legend_html(SPEED_STOPS, "Expected speed on the fastest route, km/h"))
    st.caption("Green: origin · red: destination" + ("" if same else " · thin purple: the shortest route")
               + ". Click a node to make it the " + st.session_state[CLICK_KEY].lower() + ".")
with chart_col:
    st.plotly_chart(travel_time_histogram(travel.samples, None if same else shortest.travel.samples, travel.p10,
                                          travel.p50, travel.p90, fastest.historical_min, fastest.true_min,
                                          None if deadline is None else (deadline - depart) / pd.Timedelta(minutes=1)),
                    key="route_histogram")
    if deadline is not None:
        st.caption(f"Hatched: the fastest route's draws that arrive by {deadline:%H:%M}, "
                   f"{trip.p_on_time:.0%} of them.")
    st.caption(f"Forecast made {made:%a %d %b %H:%M}, leaving {depart:%H:%M}. Speeds are drawn jointly across nodes "
               "and forecast steps with the correlation the model's errors showed on the training split; each "
               "segment is driven at the mean of its two end nodes' speeds at the step nearest its entry time.")

st.subheader("Fastest and shortest route")
compare = pd.DataFrame([{"Route": name, "Segments": len(a.route.edges), "Length (km)": a.length_m / 1000,
                         "P10 (min)": a.travel.p10, "P50 (min)": a.travel.p50, "P90 (min)": a.travel.p90,
                         "Mean (min)": a.travel.mean, "Historical (min)": a.historical_min,
                         "Actual (min)": np.nan if a.true_min is None else a.true_min,
                         **({} if deadline is None else {ON_TIME: 100 * trip.on_time(a)}),
                         "Via": " → ".join(a.route.nodes)}
                        for name, a in (("Fastest", fastest), ("Shortest", shortest))])
formats = {c: st.column_config.NumberColumn(c.removesuffix(" (min)"), format="%.1f",    # fits at 1440 px
                                            help="minutes" if c.endswith("(min)") else None)
           for c in compare.columns if "(" in c}
formats["Route"] = st.column_config.TextColumn(pinned=True)            # in view when the table scrolls (< 1440 px)
if deadline is not None:
    formats[ON_TIME] = st.column_config.NumberColumn(f"P(by {deadline:%H:%M})", format="%.0f %%",
                                                     help="Share of each route's draws that arrive by the deadline.")
st.container(key="route_compare_table").dataframe(compare, hide_index=True, key="route_compare", column_config=formats)
if same:
    st.caption("The shortest route is the fastest one here.")
else:
    faster = float((travel.samples < shortest.travel.samples).mean())
    st.caption(f"In {faster:.0%} of the joint draws the fastest route beats the shortest one.")

st.subheader("Segments of the fastest route")
segments = fastest.segments.assign(**{"from": [graph.names[n] for n in fastest.segments["from"]],
                                      "to": [graph.names[n] for n in fastest.segments["to"]]})
st.container(key="route_segments_table").dataframe(segments, hide_index=True, key="route_segments", column_order=(
    "road_name", "length_m", "expected_speed_kmh", "entry_time", "minutes", "to"), column_config={
    "to": "To", "road_name": st.column_config.TextColumn("Street", pinned=True),    # in view when it scrolls
    "length_m": st.column_config.NumberColumn("Length (m)", format="%.0f"),
    "expected_speed_kmh": st.column_config.NumberColumn("Speed (km/h)", format="%.1f", help="Expected speed"),
    "entry_time": st.column_config.DatetimeColumn("Entered at", format="HH:mm:ss"),
    "minutes": st.column_config.NumberColumn("Minutes", format="%.2f")})
csv_download(fastest.segments.assign(from_name=segments["from"], to_name=segments["to"],
                                     entry_time=[t.isoformat() for t in segments["entry_time"]]).round(3),
             f"route_{origin}_{destination}_{depart:%Y%m%dT%H%M}.csv", "route_segments_csv")
st.caption("Each segment runs along its street from the junction of the row above (the first from the origin) "
           "to the one in To. Driven on the expected (mixture mean) speeds; the entry time picks the forecast step.")
