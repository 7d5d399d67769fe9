"""Interpretability: what the model looked at for one forecast — the gate α between its spatial
and temporal branches, GATv2 attention between roads (as a matrix and on the map), and its
temporal and weather attention for the selected road."""

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from ui import state
from ui.heatmaps import (ATTENTION_STOPS, attention_matrix, dense_attention, gate_figure, neighbourhood,
                         step_attention)
from ui.maps import basemap_toggle, legend_html, ramp, road_map
from ui.text import md

MAP_KEY = "interp_map"
ARROW_MAX_PX = 24          # arrow width in pixels for an attention weight of 1
SEGMENT_GREY = 205
ZOOM_IN = 1.0              # map zoom steps closer than the whole network


def _valid(key: str, options: list, default) -> None:
    """Reset a selector whose remembered value the current model does not offer."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


st.title("Interpretability")
forecaster = state.require_forecaster()
dataset = forecaster.dataset
st.caption("What the model looked at when it made one forecast. Pick the time the forecast was made and a "
           "road; the charts below update together.")
anchor = state.anchor_picker(forecaster)
forecast = state.forecast(anchor, diagnostics=True)
diag = forecast.diagnostics


@st.fragment
def views() -> None:
    """Everything that follows the selected road and the block / head / step selectors; a
    fragment, so scrubbing them redraws only this part."""
    picker, note = st.columns([2, 3], vertical_alignment="bottom")
    with picker:
        node = state.node_picker(dataset, "Road (node)")
    note.caption("The selected road is outlined in red in every chart below; clicking a road on the map selects "
                 "it too.")
    ids = dataset.graph.node_ids
    names = dataset.graph.nodes["name"].fillna("").tolist()
    target = dataset.graph.index_of[node]
    input_labels = forecast.input_times(0).strftime("%H:%M").tolist()

    # ---- gate α ---------------------------------------------------------------------------
    st.subheader("Spatial or temporal? The fusion gate α")
    alpha = diag.alpha[:, 0].numpy()                      # [blocks, T, N]
    st.caption("Each cell is one road at one input step: blue (α above 0.5) means the block took more of its "
               "output from the neighbouring roads (spatial GATv2 branch), orange (below 0.5) from the road's own "
               "recent history (temporal branch). The colour scale is centred on 0.5 and fitted to the values "
               "shown (its range is on the legend). The red outline marks the selected road. Hover for street "
               "names.")
    st.plotly_chart(gate_figure(alpha, ids, names, input_labels, node), key="interp_gate")
    lean = ", ".join(f"block {k + 1}: **{a:.2f}**" for k, a in enumerate(alpha[:, :, target].mean(axis=1)))
    st.markdown(f"Mean α for **{md(dataset.graph.label(node))}** — {lean} "
                f"(network: {', '.join(f'{a:.2f}' for a in alpha.mean(axis=(1, 2)))}).")

    # ---- selectors shared by the attention views -------------------------------------------
    st.divider()
    blocks, steps, heads = diag.spatial_attention.shape[0], diag.spatial_attention.shape[2], \
        diag.spatial_attention.shape[-1]
    head_options = list(range(heads + 1))                 # 0 = mean over heads
    _valid("interp_block", list(range(blocks)), blocks - 1)
    _valid("interp_head", head_options, 0)
    _valid("interp_step", list(range(steps)), steps - 1)
    cols = st.columns([0.9, 1.7, 2.4])
    block = cols[0].radio("Block", list(range(blocks)), format_func=lambda k: str(k + 1), horizontal=True,
                          key="interp_block", help="Which spatio-temporal block's attention to show.")
    head = cols[1].radio("Attention head", head_options, format_func=lambda h: "mean" if h == 0 else str(h),
                         horizontal=True, key="interp_head",
                         help="Each head attends on its own; 'mean' averages them.")
    step = cols[2].select_slider("Input step (spatial attention)", list(range(steps)), key="interp_step",
                                 format_func=lambda t: input_labels[t],
                                 help="GATv2 attends anew at every observed input step.")

    def pick_head(weights):
        """[..., heads] -> [...] for the chosen head (or their mean)."""
        return weights.mean(-1) if head == 0 else weights[..., head - 1]

    # ---- spatial attention: matrix and map ---------------------------------------------------
    st.subheader("Who listens to whom: GATv2 attention between roads")
    weights = pick_head(diag.spatial_attention[block, 0, step].numpy())           # [E']
    dense = dense_attention(weights, diag.attention_edge_index.numpy(), len(ids))
    left, right = st.columns([3, 2])
    with left:
        st.caption(f"Row = the road attending (target), column = the road it draws on (source), at "
                   f"{input_labels[step]} in block {block + 1}. Each row sums to 1 over the road's upstream "
                   "neighbours and itself (diagonal); white = no road segment between them.")
        whole = st.toggle("All roads", key="interp_matrix_all",
                          help="Off: the selected road and the roads within two attention links of it, so the "
                               "ticks can be read. On: the whole network.")
        keep = np.arange(len(ids)) if whole else neighbourhood(dense, target)
        st.plotly_chart(attention_matrix(dense[np.ix_(keep, keep)], [ids[k] for k in keep], [names[k] for k in keep],
                                         node), key="interp_attention")
    with right:
        row = dense[target]
        sources = [j for j in np.flatnonzero(row) if j != target]
        pos = dataset.graph.positions()
        arrows = pd.DataFrame({
            "from_lon": pos.lon.to_numpy()[sources], "from_lat": pos.lat.to_numpy()[sources],
            "to_lon": pos.lon.iloc[target], "to_lat": pos.lat.iloc[target],
            "width": ARROW_MAX_PX * row[sources], "r": ATTENTION_STOPS[-1][1][0], "g": ATTENTION_STOPS[-1][1][1],
            "b": ATTENTION_STOPS[-1][1][2]})
        st.caption(f"Arrows point from each upstream neighbour into **{md(dataset.graph.label(node))}**; "
                   "width ∝ attention. Click a road to select it.")
        basemap = basemap_toggle("interp_basemap")
        nodes = dataset.graph.nodes[["node_id", "name"]].assign(
            attention=[f"{w:.2f}" if w > 0 else "—" for w in row], attending=node)
        deck = road_map(dataset.graph, nodes, ramp(row, ATTENTION_STOPS), highlight=node, arrows=arrows,
                        node_layer=state.node_layer(MAP_KEY), basemap=basemap,
                        edge_colour=np.full((dataset.graph.num_edges, 3), SEGMENT_GREY),
                        tooltip_html="<b>{name}</b><br/>{node_id}<br/>weight given by {attending}: {attention}")
        view = deck.initial_view_state          # closer in, centred on the selected road, so its arrows read
        view.latitude, view.longitude = float(pos.lat.iloc[target]), float(pos.lon.iloc[target])
        view.zoom += ZOOM_IN
        st.pydeck_chart(deck, height=440, key=MAP_KEY, on_select=partial(state.select_clicked_node, MAP_KEY))
        st.html(legend_html(ATTENTION_STOPS, f"attention weight {node} gives each road",
                            fmt=lambda w: f"{w:.1f}"))
        order = sorted(np.flatnonzero(row), key=lambda j: -row[j])
        listed = " · ".join(f"{'itself' if j == target else md(dataset.graph.label(ids[j]))} **{row[j]:.2f}**"
                            for j in order)
        st.caption(f"Weights: {listed}" if sources else
                   f"{md(node)} has no upstream neighbour: it attends only to itself ({row[target]:.2f}).")

    # ---- temporal and weather attention ------------------------------------------------------
    target_labels = forecast.target_times(0).strftime("%H:%M").tolist()
    left, right = st.columns(2)
    with left:
        st.subheader("Which past steps matter")
        st.caption(f"Temporal attention of {md(node)} in block {block + 1}: row = the input step being updated "
                   "(query), column = the step it draws on (key); rows sum to 1.")
        matrix = pick_head(diag.temporal_attention[block, 0, target].numpy().transpose(1, 2, 0))
        st.plotly_chart(step_attention(matrix, input_labels, input_labels, query_title="query step",
                                       key_title="key step"), key="interp_temporal")
    with right:
        st.subheader("Which forecast weather matters")
        if diag.weather_attention is None:
            st.info("This model was trained without weather (use_weather off), so it has no weather attention. "
                    "Train one with weather on **Train & load** to see it.")
        else:
            st.caption(f"Weather attention of {md(node)}: row = the forecast step, column = the horizon's weather "
                       "step it reads; rows sum to 1. Edit that weather on **Weather what-if**.")
            matrix = pick_head(diag.weather_attention[0, target].numpy().transpose(1, 2, 0))
            st.plotly_chart(step_attention(matrix, target_labels, target_labels, query_title="forecast step",
                                           key_title="weather step"), key="interp_weather")


views()
