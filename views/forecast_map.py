"""Forecast map: every node's predictive speed (or congestion probability) at one horizon step of
one forecast. The two scrubbers live in a fragment, so moving them redraws only the map."""

import threading
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
import torch
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from stmgt.data.dataset import FREE_FLOW_PERCENTILE
from stmgt.errors import DataError
from ui import pages, state
from ui.fan_chart import horizon_bars, horizon_label
from ui.maps import PROB_STOPS, SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded
from ui.text import code, md

MEDIAN, PROBABILITY = "Median speed", "Congestion probability"
PICK_KEY = "forecast_map_pick"
PREFETCH_KEY = "forecast_map_prefetch"
PREFETCH_THREAD = "stmgt-prefetch"
PREFETCH_STEPS = (1, -1, 2, -2)     # neighbouring forecast times computed in the background
INTERVAL = (0.1, 0.5, 0.9)          # q10, median, q90: the 80 % interval shown in tooltips
MAP_PX, SIDE_PX = 600, 300          # the side panel moves under the map where both do not fit


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


@st.fragment
def scrubbed_map(forecaster, colour_by: str, share: float, basemap: bool) -> None:
    dataset = forecaster.dataset
    graph = dataset.graph
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
    h = step - 1
    target = targets[h]

    # One forecast (cached); the frame only slices it: quantiles for this step, P(congested) for all steps.
    mixture = forecast.mixture[0, h]
    q10, median, q90 = mixture.quantiles(INTERVAL).numpy().T
    limit = share / 100 * state.free_flow()                                  # [N] km/h, NaN: never observed
    p_all = forecast.mixture[0].prob_below(torch.as_tensor(limit, dtype=mixture.means.dtype)).double().numpy()
    p_congested = p_all[h]
    congested = f"speed < {share:g} % of free-flow"
    nodes = graph.nodes[["node_id", "road_class"]].assign(
        name=list(graph.names.values()), median=rounded(median, 1), q10=rounded(q10, 1), q90=rounded(q90, 1),
        p_congested=p_congested.round(3), limit=[f"{x:.1f} km/h" if np.isfinite(x) else "unknown" for x in limit],
        p_text=[f"{100 * p:.0f} %" if np.isfinite(p) else "—" for p in p_congested])

    if colour_by == MEDIAN:
        colour = ramp(median, SPEED_STOPS)
        legend = legend_html(SPEED_STOPS, f"Median forecast speed, km/h · {target:%a %d %b %H:%M}")
    else:
        colour = ramp(p_congested, PROB_STOPS)
        legend = legend_html(PROB_STOPS, f"P({congested}) · {target:%a %d %b %H:%M}", fmt=lambda p: f"{p:.0%}")
    tooltip = ("<b>{name}</b><br/>{node_id} · {road_class}<br/>"
               f"{target:%H:%M} ({horizon_label(step, forecast.freq)}): median <b>{{median}} km/h</b><br/>"
               "80 % interval {q10}–{q90} km/h<br/>"
               "P(speed &lt; {limit}): <b>{p_text}</b>")
    node_id = state.selected_node(dataset)
    i = graph.index_of[node_id]

    now = np.nanmedian(forecast.history[0, -1])
    network = float(np.median(median))
    likely = (p_all > 0.5).sum(-1)
    slowest = int(np.argmin(median))
    with st.container(horizontal=True, key="map_metrics"):
        st.metric("Network median speed", f"{network:.1f} km/h", width="content",
                  delta=f"{network - now:+.1f} km/h vs {forecast.anchor_times[0]:%H:%M}" if np.isfinite(now) else None,
                  help="Median over nodes of each node's median forecast; the change is against the median "
                       "speed observed when the forecast was made.")
        st.metric("Likely congested", f"{likely[h]} of {graph.num_nodes} nodes", width="content",
                  help=f"Nodes whose forecast gives P({congested}) above 50 %.")
        st.metric("Slowest node", f"{median[slowest]:.1f} km/h", delta=md(nodes["name"][slowest]), delta_color="off",
                  delta_arrow="off", width="content")

    deck = road_map(graph, nodes, colour, basemap=basemap, tooltip_html=tooltip, highlight=node_id, size=(600, 520),
                    node_layer=state.node_layer(PICK_KEY))
    with st.container(horizontal=True, gap="medium"):
        with st.container(width=MAP_PX):
            st.pydeck_chart(deck, height=520, on_select=partial(state.select_clicked_node, PICK_KEY),
                            selection_mode="single-object", key=PICK_KEY)
            st.html(legend)
        with st.container(width=SIDE_PX):
            with st.container(border=True, key="map_node_card"):
                st.markdown(f"**{md(nodes['name'][i])}** · {code(node_id)}  \n"
                            f"{target:%H:%M} ({horizon_label(step, forecast.freq)}): median **{median[i]:.1f} km/h**, "
                            f"80 % interval {q10[i]:.1f}–{q90[i]:.1f} km/h  \n"
                            f"P(speed < {nodes['limit'][i]}): **{nodes['p_text'][i]}**")
                pages.link(pages.NODE_FORECAST, "Open its forecast")
                st.caption("Selected node (ringed) · click another on the map to change it.")
            minutes = (np.arange(1, forecast.horizon + 1) * (forecast.freq / pd.Timedelta(minutes=1))).astype(int)
            st.plotly_chart(horizon_bars(minutes, likely, h, "Likely congested nodes by horizon", "nodes"),
                            config={"displayModeBar": False}, key="map_congested_bars")
    prefetch_neighbours(forecaster.test_anchors())


st.title("Forecast map")
forecaster = state.require_forecaster()
st.caption(f"{md(state.dataset_label())} · {md(state.current_model_choice().label)}. Pick when the forecast is "
           "made and how far ahead to look; colours use fixed scales so frames compare while you scrub. "
           "Hover a node for its forecast.")
with st.container(horizontal=True, gap="medium", vertical_alignment="bottom"):
    colour_by = st.radio("Colour nodes and roads by", [MEDIAN, PROBABILITY], horizontal=True, key="map_layer",
                         width="content")
    share = st.number_input(
        "Congested below (% of free-flow speed)", min_value=5.0, max_value=100.0, value=50.0, step=5.0, format="%g",
        key="map_threshold", width=260,
        help=f"A node counts as congested while its speed is below this share of its own free-flow speed: the "
             f"{FREE_FLOW_PERCENTILE}th percentile of its speeds in the training period (hover a node for its limit "
             "in km/h). 50 % is a common line for heavy congestion.")
    basemap = basemap_toggle("map_basemap")
scrubbed_map(forecaster, colour_by, share, basemap)
