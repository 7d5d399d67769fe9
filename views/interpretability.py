"""Interpretability: what the model looked at for one forecast — the gate α between its spatial
and temporal branches, GATv2 attention between roads (as a matrix and on the map), and its
temporal and weather attention for the selected road, with a sentence that says it plainly."""

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from stmgt.forecasting.explain import describe_reading, road_reading
from ui import state
from ui.heatmaps import (ATTENTION_STOPS, attention_among, attention_matrix, gate_figure, neighbourhood,
                         step_attention)
from ui.layout import flex_columns
from ui.maps import basemap_toggle, fitted_view, legend_html, ramp, road_map
from ui.text import md

MAP_KEY = "interp_map"
ARROW_MAX_PX = 24          # arrow width in pixels for an attention weight of 1
SEGMENT_GREY = 205
ZOOM_IN = 1.0              # map zoom steps closer than the whole network
# Above this many roads the charts and the map zoom to the selected road's neighbourhood (HOPS links either
# way): a heatmap column per road, or a matrix cell per pair, would no longer be legible or quick to draw.
ZOOM_ABOVE = 150
HOPS = 2
GLOSSARY = """
- **Block** — the model reads the recent past in a few rounds, one after another. In each round every road
  mixes what it saw itself with what its neighbours saw, and hands the result to the next round; the last
  block is the one closest to the forecast.
- **Gate α** — in each block, a number from 0 to 1 per road and input step that sets that mix: near 0 the
  block's output comes from the road's own recent history (the *temporal* branch), near 1 from the roads
  around it (the *spatial* branch).
- **GATv2** — graph attention, the spatial branch: each road gives each of its upstream neighbours, and
  itself, a weight (together they sum to 1) and takes their weighted mix. GATv2 is the name of the method.
- **Head** — attention is worked out several times side by side, each *head* free to look for something
  different; *mean* averages them.
- **Query / key step** — in the temporal branch each input step (the *query*) looks back over the input
  steps (the *keys*) and takes a weighted mix of them: a row of that chart shows where one step looks.
- **Input step / forecast step** — the observed times before the forecast was made / the times forecast.
"""


@dataclass(frozen=True)
class View:
    """What the attention views show: one road, one block, one head (0 = their mean), one input step,
    and the roads near it (`near`: indices of the roads within HOPS links, the road itself included)."""
    node: str
    target: int
    block: int
    head: int
    step: int
    near: np.ndarray

    def pick_head(self, weights: np.ndarray) -> np.ndarray:
        """[..., heads] -> [...] for the chosen head (or their mean)."""
        return weights.mean(-1) if self.head == 0 else weights[..., self.head - 1]


def _valid(key: str, options: list, default) -> None:
    """Reset a selector whose remembered value the current model does not offer."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def choose(input_labels: list[str]) -> View:
    """The road, then the block, head and input step the attention views follow."""
    picker, note = flex_columns([2, 3], 260, key="interp_pick_row", vertical_alignment="bottom")
    with picker:
        node = state.node_picker(dataset, "Road (node)")
    note.caption("The selected road is outlined in red in every chart below; clicking a road on the map selects "
                 "it too.")
    blocks, steps, heads = diag.spatial_attention.shape[0], diag.spatial_attention.shape[2], \
        diag.spatial_attention.shape[-1]
    head_options = list(range(heads + 1))                 # 0 = mean over heads
    _valid("interp_block", list(range(blocks)), blocks - 1)
    _valid("interp_head", head_options, 0)
    _valid("interp_step", list(range(steps)), steps - 1)
    cols = flex_columns([0.9, 1.7, 2.4], 150, key="interp_view_row")
    block = cols[0].radio("Block", list(range(blocks)), format_func=lambda k: str(k + 1), horizontal=True,
                          key="interp_block", help="Which spatio-temporal block's attention to show.")
    head = cols[1].radio("Attention head", head_options, format_func=lambda h: "mean" if h == 0 else str(h),
                         horizontal=True, key="interp_head",
                         help="Each head attends on its own; 'mean' averages them.")
    step = cols[2].select_slider("Input step (spatial attention)", list(range(steps)), key="interp_step",
                                 format_func=lambda t: input_labels[t],
                                 help="GATv2 attends anew at every observed input step.")
    target = dataset.graph.index_of[node]
    near = neighbourhood(diag.attention_edge_index.numpy(), target, dataset.graph.num_nodes, HOPS)
    return View(node, target, block, head, step, near)


def in_plain_words(view: View, input_labels: list[str]) -> None:
    """One sentence for the selected road from the same diagnostics the charts draw, and the glossary."""
    ids = dataset.graph.node_ids
    reading = road_reading(diag, view.target, block=view.block, step=view.step,
                           head=None if view.head == 0 else view.head - 1)
    sentence = describe_reading(reading, lambda j: f"**{md(dataset.graph.label(ids[j]))}**")
    heads = "the mean of the heads" if view.head == 0 else f"head {view.head}"
    with st.container(border=True, key="interp_plain"):
        st.markdown(f"**{md(dataset.graph.label(view.node))}** — {sentence}")
        st.caption(f"Block {view.block + 1}; attention at {input_labels[view.step]}, {heads}; α is the block's "
                   "mean over the input steps. Change them above.")
    with st.expander("What these words mean"):
        st.markdown(GLOSSARY)


def gate_section(view: View, input_labels: list[str]) -> None:
    st.subheader("Spatial or temporal? The fusion gate α")
    alpha = diag.alpha[:, 0].numpy()                      # [blocks, T, N]
    st.caption("Each cell is one road at one input step: blue (α above 0.5) means the block took more of its "
               "output from the neighbouring roads (spatial GATv2 branch), orange (below 0.5) from the road's own "
               "recent history (temporal branch). The colour scale is centred on 0.5 and fitted to the values "
               "shown (its range is on the legend). The red outline marks the selected road. Hover for street "
               "names.")
    names = dataset.graph.nodes["name"].fillna("").tolist()
    shown = view.near if zoomed() else np.arange(len(names))
    if zoomed():
        st.caption(f"The network has {len(names):,} roads: the chart shows the {len(shown)} within {HOPS} links of "
                   "the selected road.")
    st.plotly_chart(gate_figure(alpha[:, :, shown], [dataset.graph.node_ids[k] for k in shown],
                                [names[k] for k in shown], input_labels, view.node), key="interp_gate")
    lean = ", ".join(f"block {k + 1}: **{a:.2f}**" for k, a in enumerate(alpha[:, :, view.target].mean(axis=1)))
    st.markdown(f"Mean α for **{md(dataset.graph.label(view.node))}** — {lean} "
                f"(network: {', '.join(f'{a:.2f}' for a in alpha.mean(axis=(1, 2)))}).")


def spatial_section(view: View, input_labels: list[str]) -> None:
    st.subheader("Who listens to whom: GATv2 attention between roads")
    ids = dataset.graph.node_ids
    weights = view.pick_head(diag.spatial_attention[view.block, 0, view.step].numpy())           # [E']
    edges = diag.attention_edge_index.numpy()
    left, right = flex_columns([3, 2], 300, key="interp_attention_row")
    with left:
        attention_matrix_view(view, weights, edges, input_labels)
    with right:
        near = attention_among(weights, edges, view.near, len(ids))
        row = np.zeros(len(ids))
        row[view.near] = near[np.searchsorted(view.near, view.target)]     # every source of the road is near it
        attention_map(view, row)


def attention_matrix_view(view: View, weights: np.ndarray, edges: np.ndarray, input_labels: list[str]) -> None:
    ids, names = dataset.graph.node_ids, dataset.graph.nodes["name"].fillna("").tolist()
    st.caption(f"Row = the road attending (target), column = the road it draws on (source), at "
               f"{input_labels[view.step]} in block {view.block + 1}. Each row sums to 1 over the road's upstream "
               "neighbours and itself (diagonal); white = no road segment between them.")
    if zoomed():
        whole = False
        st.caption(f"The selected road and the {len(view.near) - 1} roads within {HOPS} attention links of it "
                   f"(the whole network's {len(ids):,} roads would not be legible as a matrix).")
    else:
        whole = st.toggle("All roads", key="interp_matrix_all",
                          help="Off: the selected road and the roads within two attention links of it, so the "
                               "ticks can be read. On: the whole network.")
    keep = np.arange(len(ids)) if whole else view.near
    st.plotly_chart(attention_matrix(attention_among(weights, edges, keep, len(ids)), [ids[k] for k in keep],
                                     [names[k] for k in keep], view.node), key="interp_attention")


def attention_map(view: View, row: np.ndarray) -> None:
    """Arrows from each upstream neighbour into the selected road, as wide as its attention."""
    graph, node, target = dataset.graph, view.node, view.target
    sources = [j for j in np.flatnonzero(row) if j != target]
    pos = graph.positions()
    arrows = pd.DataFrame({
        "from_lon": pos.lon.to_numpy()[sources], "from_lat": pos.lat.to_numpy()[sources],
        "to_lon": pos.lon.iloc[target], "to_lat": pos.lat.iloc[target],
        "width": ARROW_MAX_PX * row[sources], "r": ATTENTION_STOPS[-1][1][0], "g": ATTENTION_STOPS[-1][1][1],
        "b": ATTENTION_STOPS[-1][1][2]})
    st.caption(f"Arrows point from each upstream neighbour into **{md(graph.label(node))}**; "
               "width ∝ attention. Click a road to select it.")
    basemap = basemap_toggle("interp_basemap")
    nodes = graph.nodes[["node_id", "name"]].assign(
        attention=[f"{w:.2f}" if w > 0 else "—" for w in row], attending=node)
    deck = road_map(graph, nodes, ramp(row, ATTENTION_STOPS), highlight=node, arrows=arrows,
                    node_layer=state.node_layer(MAP_KEY), basemap=basemap,
                    edge_colour=np.full((graph.num_edges, 3), SEGMENT_GREY),
                    tooltip_html="<b>{name}</b><br/>{node_id}<br/>weight given by {attending}: {attention}")
    map_view = deck.initial_view_state          # closer in, centred on the selected road, so its arrows read
    if zoomed():                                # on the roads near it
        near = fitted_view(pos.lat.to_numpy()[view.near], pos.lon.to_numpy()[view.near], 440, 440)
        map_view.latitude, map_view.longitude, map_view.zoom = near.latitude, near.longitude, near.zoom
    else:
        map_view.latitude, map_view.longitude = float(pos.lat.iloc[target]), float(pos.lon.iloc[target])
        map_view.zoom += ZOOM_IN
    st.pydeck_chart(deck, height=440, key=MAP_KEY, on_select=partial(state.select_clicked_node, MAP_KEY))
    st.html(legend_html(ATTENTION_STOPS, f"attention weight {node} gives each road", fmt=lambda w: f"{w:.1f}"))
    order = sorted(np.flatnonzero(row), key=lambda j: -row[j])
    listed = " · ".join(f"{'itself' if j == target else md(graph.label(graph.node_ids[j]))} **{row[j]:.2f}**"
                        for j in order)
    st.caption(f"Weights: {listed}" if sources else
               f"{md(node)} has no upstream neighbour: it attends only to itself ({row[target]:.2f}).")


def step_sections(view: View, input_labels: list[str]) -> None:
    """Temporal attention over the input steps, and weather attention over the horizon's weather."""
    target_labels = forecast.target_times(0).strftime("%H:%M").tolist()
    left, right = flex_columns(2, 300, key="interp_steps_row")
    with left:
        st.subheader("Which past steps matter")
        st.caption(f"Temporal attention of {md(view.node)} in block {view.block + 1}: row = the input step being "
                   "updated (query), column = the step it draws on (key); rows sum to 1.")
        matrix = view.pick_head(diag.temporal_attention[view.block, 0, view.target].numpy().transpose(1, 2, 0))
        st.plotly_chart(step_attention(matrix, input_labels, input_labels, query_title="query step",
                                       key_title="key step"), key="interp_temporal")
    with right:
        st.subheader("Which forecast weather matters")
        if diag.weather_attention is None:
            st.info("This model was trained without weather (use_weather off), so it has no weather attention. "
                    "Train one with weather on **Train & load** to see it.")
            return
        st.caption(f"Weather attention of {md(view.node)}: row = the forecast step, column = the horizon's weather "
                   "step it reads; rows sum to 1. Edit that weather on **Weather what-if**.")
        matrix = view.pick_head(diag.weather_attention[0, view.target].numpy().transpose(1, 2, 0))
        st.plotly_chart(step_attention(matrix, target_labels, target_labels, query_title="forecast step",
                                       key_title="weather step"), key="interp_weather")


def zoomed() -> bool:
    """Whether the charts show the selected road's neighbourhood rather than every road."""
    return dataset.graph.num_nodes > ZOOM_ABOVE


@st.fragment
def views() -> None:
    """Everything that follows the selected road and the block / head / step selectors; a
    fragment, so scrubbing them redraws only this part."""
    input_labels = forecast.input_times(0).strftime("%H:%M").tolist()
    view = choose(input_labels)
    in_plain_words(view, input_labels)
    gate_section(view, input_labels)
    st.divider()
    spatial_section(view, input_labels)
    step_sections(view, input_labels)


st.title("Interpretability")
forecaster = state.require_forecaster()
dataset = forecaster.dataset
st.caption("What the model looked at when it made one forecast. Pick the time the forecast was made and a "
           "road; the charts below update together.")
anchor = state.anchor_picker(forecaster)
forecast = state.forecast(anchor, diagnostics=True)
diag = forecast.diagnostics
views()
