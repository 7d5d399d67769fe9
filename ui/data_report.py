"""The Data page's validation report: the imported data's numbers, a map by mean speed, missing
readings per node and speeds over time, each saying why when it has nothing to draw."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from stmgt.data.importers import validation_report
from ui import state
from ui.maps import SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded
from ui.text import html, md


def show_report(result) -> None:
    report = validation_report(result)
    days = report["days"]
    row = st.columns(4)
    row[0].metric("Span", f"{days:.1f} days" if days >= 2 else f"{days * 24:.1f} hours")
    row[1].metric("Cadence", f"{report['cadence_min']:g} min")
    row[2].metric("Time steps", f"{report['steps']:,}")
    row[3].metric("Missing readings", f"{100 * report['missing_share']:.1f} %")
    row = st.columns(4)
    row[0].metric("Nodes", report["nodes"])
    row[1].metric("Road segments", report["edges"])
    row[2].metric("Speeds look like", report["unit_guess"],
                  help="A guess from their typical values; the dashboard expects km/h.")
    row[3].metric("Weather", "included" if report["has_weather"] else "none")
    st.caption(f"{report['start']:%a %d %b %Y %H:%M} → {report['end']:%a %d %b %Y %H:%M} ({report['start'].tz}) · "
               f"mean speed {report['mean_speed']:.1f} km/h")
    if not report["has_weather"]:
        st.warning("No weather in this data: models will train without weather, and the Weather what-if page "
                   "will be unavailable for it.", icon=":material/cloud_off:")
    if report["notes"]:
        with st.container(border=True):
            st.markdown("**Importer notes**\n\n" + "\n".join(f"- {md(note)}" for note in report["notes"]))

    left, right = st.columns([3, 2])
    with left:
        st.markdown("##### Road graph by mean speed")
        preview_map(result.dataset, report["missing_by_node"])
    with right:
        st.markdown("##### Missing readings per node")
        missing_chart(report["missing_by_node"], result.dataset)
    st.markdown("##### Speed over time")
    speed_chart(result.dataset)


def preview_map(dataset, missing: pd.Series) -> None:
    mean = dataset.speed_frame().mean()
    graph = dataset.graph
    nodes = graph.nodes[["node_id", "name"]].assign(mean_speed=rounded(mean, 1), missing=rounded(100 * missing, 1))
    basemap = graph.has_coordinates and basemap_toggle("data_basemap")
    st.pydeck_chart(road_map(graph, nodes, ramp(mean.to_numpy(), SPEED_STOPS), basemap=basemap,
                             tooltip_html="<b>{name}</b><br/>{node_id}<br/>mean {mean_speed} km/h · "
                                          "{missing} % missing", size=(460, 420)), height=420)
    st.html(legend_html(SPEED_STOPS, "mean speed over the whole span, km/h (grey = never observed)"))
    if not graph.has_coordinates:
        st.caption(":material/scatter_plot: No node locations in this data: the map shows a layout computed "
                   "from the road graph, not geography.")


def missing_chart(missing: pd.Series, dataset, limit: int = 20) -> None:
    if not missing.any():
        st.success("Every node has a reading at every time step.")
        return
    worst = missing.sort_values(ascending=False).head(limit)[::-1]
    names = dict(zip(dataset.graph.node_ids, dataset.graph.nodes["name"]))
    fig = go.Figure(go.Bar(x=100 * worst.to_numpy(), y=[html(n) for n in worst.index], orientation="h",
                           marker_color="#8c6bb1", customdata=[html(names[n]) for n in worst.index],
                           hovertemplate="%{y} · %{customdata}<br>%{x:.1f} % missing<extra></extra>"))
    fig.update_layout(height=max(220, 18 * len(worst) + 70), margin=dict(l=0, r=10, t=10, b=0),
                      xaxis_title="missing readings (%)", yaxis=dict(type="category"))
    st.plotly_chart(fig, width="stretch")
    if len(missing) > limit:
        st.caption(f"The {limit} nodes with the most missing readings, of {len(missing)}.")


def speed_chart(dataset) -> None:
    """Speeds over the whole span of the picked nodes (up to 8), or why there is no line."""
    ids = dataset.graph.node_ids
    default = [ids[i] for i in sorted({0, len(ids) // 2, len(ids) - 1})]
    picked = st.multiselect("Nodes", ids, default=default, key="data_nodes", max_selections=8,
                            format_func=state.node_option(dataset.graph))
    if not picked:
        st.info("Pick one or more nodes above to plot their speeds.", icon=":material/show_chart:")
        return
    frame = dataset.speed_frame()
    unread = [n for n in picked if frame[n].isna().all()]
    if len(unread) == len(picked):
        st.info(f"No line to draw: {', '.join(md(n) for n in unread)} never has a reading in this data. "
                "Pick other nodes.", icon=":material/show_chart:")
        return
    fig = go.Figure([go.Scattergl(x=frame.index, y=frame[n], name=html(n), mode="lines",
                                  hovertemplate=f"{html(n)}<br>%{{x|%a %d %b %H:%M}}<br>%{{y:.1f}} km/h<extra></extra>")
                     for n in picked if n not in unread])
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0), yaxis_title="speed (km/h)",
                      legend=dict(orientation="h", y=1.08), hovermode="x unified")
    st.plotly_chart(fig, width="stretch")
    st.caption("Gaps in a line are missing readings." + (
        f" No line for {', '.join(md(n) for n in unread)}: never a reading in this data." if unread else ""))

