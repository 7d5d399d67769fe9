"""Forecast map: every node's predictive speed (or congestion probability) at one horizon step of
one forecast, and the roads ranked by how likely they are congested then. The two scrubbers live in
a fragment, so moving them redraws only the map and the table."""

import threading
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
import torch
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from stmgt.data.dataset import FREE_FLOW_PERCENTILE
from stmgt.data.graph import RoadGraph
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecast, Forecaster
from ui import pages, state
from ui.fan_chart import horizon_bars, horizon_label
from ui.maps import PROB_STOPS, SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded
from ui.ranked import road_table
from ui.text import code, md

MEDIAN, PROBABILITY = "Median speed", "Congestion probability"
PICK_KEY = "forecast_map_pick"
TABLE_KEY = "forecast_map_roads"
PREFETCH_KEY = "forecast_map_prefetch"
PREFETCH_THREAD = "stmgt-prefetch"
PREFETCH_STEPS = (1, -1, 2, -2)     # neighbouring forecast times computed in the background
INTERVAL = (0.1, 0.5, 0.9)          # q10, median, q90: the 80 % interval shown in tooltips
LIKELY = 0.5                        # a node whose P(congested) is above this counts as likely congested
MAP_PX, SIDE_PX = 600, 300          # the side panel moves under the map where both do not fit


@dataclass(frozen=True)
class Frame:
    """One horizon step of one forecast as the page shows it: each node's quantiles there (km/h),
    its congestion line and P(congested) at every step (for the by-horizon bars)."""

    forecast: Forecast
    step: int
    q10: np.ndarray                 # [N] km/h
    median: np.ndarray              # [N] km/h
    q90: np.ndarray                 # [N] km/h
    free_flow: np.ndarray           # [N] km/h, NaN: never observed
    limit: np.ndarray               # [N] km/h, the congestion line
    p_all: np.ndarray               # [H, N] P(speed below the line)
    congested: str                  # the line in words

    @property
    def p_congested(self) -> np.ndarray:
        return self.p_all[self.step - 1]

    @property
    def likely(self) -> np.ndarray:
        """How many nodes are likely congested at each step, [H]."""
        return (self.p_all > LIKELY).sum(-1)

    @property
    def target(self) -> pd.Timestamp:
        return self.forecast.target_times(0)[self.step - 1]

    @property
    def when(self) -> str:
        """'08:00 (+1 h)': the target time and how far ahead it lies."""
        return f"{self.target:%H:%M} ({horizon_label(self.step, self.forecast.freq)})"


def frame_at(forecast: Forecast, step: int, share: float) -> Frame:
    """Slice one cached forecast: quantiles for this step, P(congested) for all steps."""
    mixture = forecast.mixture[0, step - 1]
    q10, median, q90 = mixture.quantiles(INTERVAL).numpy().T
    free_flow = state.free_flow()
    limit = share / 100 * free_flow
    p_all = forecast.mixture[0].prob_below(torch.as_tensor(limit, dtype=mixture.means.dtype)).double().numpy()
    return Frame(forecast, step, q10, median, q90, free_flow, limit, p_all, f"speed < {share:g} % of free-flow")


def prefetch_neighbours(anchors: np.ndarray) -> None:
    """Forecast the neighbours of the selected forecast time in a background thread, so stepping it
    (arrow keys on the slider) finds them cached: the model's forward pass is most of an anchor move.
    One thread per session; it follows the slider until the neighbours of where it rests are done."""
    running = st.session_state.get(PREFETCH_KEY)
    if running is not None and running.is_alive():
        return

    def work() -> None:
        done = set()
        while True:
            anchor = st.session_state[state.ANCHOR_KEY]
            i = int(np.searchsorted(anchors, anchor))
            todo = [int(anchors[i + step]) for step in PREFETCH_STEPS if 0 <= i + step < len(anchors)]
            todo = [a for a in todo if a not in done]
            if not todo:
                return
            done.add(todo[0])
            try:
                state.forecast(todo[0])
            except DataError:           # the page itself shows the error for the selected time
                return

    # Not a daemon (which it would inherit from the script thread): exit waits instead of aborting torch.
    thread = threading.Thread(target=work, name=PREFETCH_THREAD, daemon=False)
    add_script_run_ctx(thread, get_script_run_ctx())
    thread.start()
    st.session_state[PREFETCH_KEY] = thread


def controls() -> tuple[str, float, bool]:
    """What the map shows (colours, the congestion line, street tiles): outside the fragment, as a
    change here redraws the whole page."""
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom"):
        colour_by = st.radio("Colour nodes and roads by", [MEDIAN, PROBABILITY], horizontal=True, key="map_layer",
                             width="content")
        share = st.number_input(
            "Congested below (% of free-flow speed)", min_value=5.0, max_value=100.0, value=50.0, step=5.0,
            format="%g", key="map_threshold", width=260,
            help=f"A node counts as congested while its speed is below this share of its own free-flow speed: the "
                 f"{FREE_FLOW_PERCENTILE}th percentile of its speeds in the training period (hover a node for its "
                 "limit in km/h). 50 % is a common line for heavy congestion.")
        basemap = basemap_toggle("map_basemap")
    return colour_by, share, basemap


def pick_frame(forecaster: Forecaster, share: float) -> Frame:
    """The two scrubbers: when the forecast is made and how far ahead to look."""
    left, right = st.columns([3, 2])
    with left:
        anchor = state.anchor_picker(forecaster)
    forecast = state.forecast(anchor)
    targets = forecast.target_times(0)
    with right:
        step = state.horizon_picker(
            forecast.horizon, "Forecast horizon",
            lambda s: f"{horizon_label(s, forecast.freq)} · {targets[s - 1]:%H:%M}",
            help="How far ahead of the forecast time; the clock time is the target time.")
    return frame_at(forecast, step, share)


def node_rows(graph: RoadGraph, f: Frame) -> pd.DataFrame:
    """The map's node layer: what each node's tooltip and the selected node's card say."""
    return graph.nodes[["node_id", "road_class"]].assign(
        name=list(graph.names.values()), median=rounded(f.median, 1), q10=rounded(f.q10, 1), q90=rounded(f.q90, 1),
        p_congested=f.p_congested.round(3),
        limit=[f"{x:.1f} km/h" if np.isfinite(x) else "unknown" for x in f.limit],
        p_text=[f"{100 * p:.0f} %" if np.isfinite(p) else "—" for p in f.p_congested])


def headline(f: Frame, nodes: pd.DataFrame) -> None:
    now = np.nanmedian(f.forecast.history[0, -1])
    network = float(np.median(f.median))
    slowest = int(np.argmin(f.median))
    with st.container(horizontal=True, key="map_metrics"):
        st.metric("Network median speed", f"{network:.1f} km/h", width="content",
                  delta=f"{network - now:+.1f} km/h vs {f.forecast.anchor_times[0]:%H:%M}" if np.isfinite(now)
                  else None,
                  help="Median over nodes of each node's median forecast; the change is against the median "
                       "speed observed when the forecast was made.")
        st.metric("Likely congested", f"{f.likely[f.step - 1]} of {len(nodes)} nodes", width="content",
                  help=f"Nodes whose forecast gives P({f.congested}) above {100 * LIKELY:g} %; the table "
                       "under the map names them.")
        st.metric("Slowest node", f"{f.median[slowest]:.1f} km/h", delta=md(nodes["name"][slowest]),
                  delta_color="off", delta_arrow="off", width="content")


def map_panel(f: Frame, graph: RoadGraph, nodes: pd.DataFrame, colour_by: str, basemap: bool, node_id: str) -> None:
    """The road map at the chosen step, the selected node ringed; a click on a node selects it."""
    if colour_by == MEDIAN:
        colour = ramp(f.median, SPEED_STOPS)
        legend = legend_html(SPEED_STOPS, f"Median forecast speed, km/h · {f.target:%a %d %b %H:%M}")
    else:
        colour = ramp(f.p_congested, PROB_STOPS)
        legend = legend_html(PROB_STOPS, f"P({f.congested}) · {f.target:%a %d %b %H:%M}", fmt=lambda p: f"{p:.0%}")
    tooltip = ("<b>{name}</b><br/>{node_id} · {road_class}<br/>"
               f"{f.when}: median <b>{{median}} km/h</b><br/>"
               "80 % interval {q10}–{q90} km/h<br/>"
               "P(speed &lt; {limit}): <b>{p_text}</b>")
    deck = road_map(graph, nodes, colour, basemap=basemap, tooltip_html=tooltip, highlight=node_id, size=(600, 520),
                    node_layer=state.node_layer(PICK_KEY))
    st.pydeck_chart(deck, height=520, on_select=partial(state.select_clicked_node, PICK_KEY),
                    selection_mode="single-object", key=PICK_KEY)
    st.html(legend)


def side_panel(f: Frame, nodes: pd.DataFrame, i: int, node_id: str) -> None:
    """The selected node's forecast at this step, the way to its full forecast, and how many nodes
    are likely congested at each step."""
    with st.container(border=True, key="map_node_card"):
        st.markdown(f"**{md(nodes['name'][i])}** · {code(node_id)}  \n"
                    f"{f.when}: median **{f.median[i]:.1f} km/h**, "
                    f"80 % interval {f.q10[i]:.1f}–{f.q90[i]:.1f} km/h  \n"
                    f"P(speed < {nodes['limit'][i]}): **{nodes['p_text'][i]}**")
        pages.link(pages.NODE_FORECAST, "Open its forecast")
        st.caption("Selected node (ringed) · click another on the map or a row of the table to change it.")
    minutes = (np.arange(1, f.forecast.horizon + 1) * (f.forecast.freq / pd.Timedelta(minutes=1))).astype(int)
    st.plotly_chart(horizon_bars(minutes, f.likely, f.step - 1, "Likely congested nodes by horizon", "nodes"),
                    config={"displayModeBar": False}, key="map_congested_bars")
    if not np.isfinite(f.free_flow).any():
        st.caption("No bars: no road has a free-flow speed (none was observed in the training period), so none can "
                   "be judged congested.")
    elif not f.likely.any():
        st.caption(f"No bars: at no horizon of this forecast is any road's P({f.congested}) above "
                   f"{100 * LIKELY:g} %. Raise the line above, or pick a busier time.")


def ranked_roads(f: Frame, graph: RoadGraph) -> None:
    """Every road at the chosen step, most likely congested first: which roads the headline counts."""
    st.subheader("Roads by congestion probability")
    table = pd.DataFrame({"name": list(graph.names.values()), "node_id": graph.node_ids,
                          "p_congested": f.p_congested, "median_kmh": f.median, "q10_kmh": f.q10, "q90_kmh": f.q90,
                          "free_flow_ratio": f.median / f.free_flow})
    table = table.sort_values(["p_congested", "median_kmh"], ascending=[False, True], na_position="last",
                              kind="stable").round(3)
    st.caption(f"At {f.when}, every road ranked by P({f.congested}), with its forecast speed. Above "
               f"{100 * LIKELY:g} %: {f.likely[f.step - 1]} road(s), the likely congested ones. Click a row to "
               "select its road on the map and on every page.")
    kmh = partial(st.column_config.NumberColumn, format="%.1f")
    road_table(table, TABLE_KEY, f"congestion_{f.forecast.anchor_times[0]:%Y%m%dT%H%M}_step{f.step}.csv", {
        "name": st.column_config.TextColumn("Road", width=320, pinned=True),    # fits at 1440 px, pinned below
        "node_id": st.column_config.TextColumn("Node"),
        "p_congested": st.column_config.ProgressColumn(
            "P(congested)", min_value=0.0, max_value=1.0, format="percent", help=f"P({f.congested}) at {f.when}"),
        "median_kmh": kmh("Median, km/h"),
        "q10_kmh": kmh("80 % band from", help="q10: the speed stays above this with 90 % probability"),
        "q90_kmh": kmh("80 % band to", help="q90: the speed stays below this with 90 % probability"),
        "free_flow_ratio": st.column_config.NumberColumn(
            "Median / free-flow", format="%.2f",
            help=f"The median forecast as a share of the road's free-flow speed ({FREE_FLOW_PERCENTILE}th "
                 "percentile of its training speeds); empty for a road never observed"),
    })


@st.fragment
def scrubbed_map(forecaster: Forecaster, colour_by: str, share: float, basemap: bool) -> None:
    graph = forecaster.dataset.graph
    f = pick_frame(forecaster, share)
    nodes = node_rows(graph, f)
    node_id = state.selected_node(forecaster.dataset)
    headline(f, nodes)
    with st.container(horizontal=True, gap="medium"):
        with st.container(width=MAP_PX):
            map_panel(f, graph, nodes, colour_by, basemap, node_id)
        with st.container(width=SIDE_PX):
            side_panel(f, nodes, graph.index_of[node_id], node_id)
    ranked_roads(f, graph)
    prefetch_neighbours(state.offered_anchors(forecaster))


st.title("Forecast map")
forecaster = state.require_forecaster()
st.caption(f"{md(state.dataset_label())} · {md(state.current_model_choice().label)}. Pick when the forecast is "
           "made and how far ahead to look; colours use fixed scales so frames compare while you scrub. "
           "Hover a node for its forecast.")
scrubbed_map(forecaster, *controls())
