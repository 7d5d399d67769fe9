"""Plotly figures for the Interpretability and Weather what-if pages: attention heatmaps on fixed
[0, 1] colour ranges, so frames compare while scrubbing (node axes carry ids as ticks and street
names on hover), the gate α on a range fitted to its spread, and the what-if's weather,
speed-change and baseline-overlay charts."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stmgt.forecasting.forecast import QUANTILE_LEVELS
from ui.text import html

# Gate α: orange = temporal branch (0), white = even mix, blue = spatial branch (1).
GATE_SCALE = [[0.0, "#b35806"], [0.25, "#f1a340"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]
# Attention: white = none (including "no edge"), dark blue = all of it; for plotly and for maps.
ATTENTION_STOPS = [(0.0, (255, 255, 255)), (0.1, (222, 235, 247)), (0.3, (158, 202, 225)), (0.6, (49, 130, 189)),
                   (1.0, (8, 48, 107))]
ATTENTION_SCALE = [[x, f"rgb{c}"] for x, c in ATTENTION_STOPS]
SELECTED_LINE = dict(color="#d62728", width=2)
BASELINE = "rgb(110, 110, 110)"
FONT = dict(size=11)


def attention_among(weights: np.ndarray, edge_index: np.ndarray, keep: np.ndarray, num_nodes: int) -> np.ndarray:
    """Per-edge weights [E'] over `edge_index` [2, E'] (source row, target row) -> the [target,
    source] matrix over the nodes `keep` (indices, in that order), zero where there is no edge;
    self loops land on the diagonal. Edges with an end outside `keep` are left out, so a big
    graph's neighbourhood costs its edges, not N²."""
    position = np.full(num_nodes, -1)
    position[keep] = np.arange(len(keep))
    source, target = position[edge_index[0]], position[edge_index[1]]
    inside = (source >= 0) & (target >= 0)
    matrix = np.zeros((len(keep), len(keep)))
    np.add.at(matrix, (target[inside], source[inside]), weights[inside])
    return matrix


def _layout(fig: go.Figure, height: int, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=FONT,
                      plot_bgcolor="white", **kwargs)
    return fig


def gate_range(alpha: np.ndarray) -> tuple[float, float]:
    """A colour range centred on α = 0.5 (an even mix stays white) just wide enough for every value,
    so a gate that sits in 0.3–0.5 spans the whole orange half instead of one pale shade."""
    half = max(float(np.nanmax(np.abs(alpha - 0.5))), 0.05)
    half = min(np.ceil(half * 20) / 20, 0.5)                     # out to the next 0.05
    return 0.5 - half, 0.5 + half


def gate_figure(alpha: np.ndarray, node_ids: list[str], names: list[str], step_labels: list[str],
                selected: str) -> go.Figure:
    """α [blocks, T, N] as one node × input-step heatmap per block, sharing one colour axis. Ids
    and names are user text: plotly reads tags in ticks and hover labels, so they go in escaped."""
    blocks = alpha.shape[0]
    fig = make_subplots(rows=blocks, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"Block {k + 1}" for k in range(blocks)])
    hover_names = np.broadcast_to(np.asarray([html(n) for n in names], dtype=object), alpha.shape[1:])
    for k in range(blocks):
        fig.add_trace(go.Heatmap(
            z=alpha[k], x=[html(i) for i in node_ids], y=step_labels, customdata=hover_names, coloraxis="coloraxis",
            name=f"Block {k + 1}", xgap=1, ygap=1,
            hovertemplate="<b>%{x}</b> %{customdata}<br>input step %{y}<br>α = %{z:.2f}"
                          "<extra>%{fullData.name}</extra>"),
            row=k + 1, col=1)
        fig.add_vrect(x0=node_ids.index(selected) - 0.5, x1=node_ids.index(selected) + 0.5, line=SELECTED_LINE,
                      row=k + 1, col=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=9))
    fig.update_xaxes(tickangle=-90, tickfont=dict(size=9), dtick=1)
    lo, hi = gate_range(alpha)
    return _layout(fig, 150 + 170 * blocks, coloraxis=dict(
        colorscale=GATE_SCALE, cmin=lo, cmax=hi,
        colorbar=dict(title=dict(text=f"α<br><sub>scale {lo:.2f}–{hi:.2f},<br>centred on 0.5</sub>", side="top"),
                      tickvals=[lo, 0.5, hi], ticktext=[f"{lo:.2f} temporal", "0.5 even", f"{hi:.2f} spatial"],
                      len=0.6, thickness=12)))


def neighbourhood(edge_index: np.ndarray, node: int, num_nodes: int, hops: int = 2) -> np.ndarray:
    """Indices of the nodes within `hops` links (either way) of `node`, in graph order; a pass over
    the edges per hop, so it holds on a graph of any size."""
    keep = np.zeros(num_nodes, dtype=bool)
    keep[node] = True
    source, target = edge_index
    for _ in range(hops):
        touched = keep[source] | keep[target]
        keep[source[touched]] = True
        keep[target[touched]] = True
    return np.flatnonzero(keep)


def attention_matrix(dense: np.ndarray, node_ids: list[str], names: list[str], selected: str) -> go.Figure:
    """GATv2 attention as target (rows) × source (columns); the selected target's row is outlined.
    Pass a sub-matrix and its ids to zoom on a neighbourhood: ticks then stay legible. Ids and
    names are user text, escaped for plotly's tags."""
    names = np.asarray([html(n) for n in names], dtype=object)
    custom = np.stack(np.broadcast_arrays(names[:, None], names[None, :]), axis=-1)
    ticks = [html(i) for i in node_ids]
    fig = go.Figure(go.Heatmap(
        z=dense, x=ticks, y=ticks, customdata=custom, zmin=0.0, zmax=1.0, colorscale=ATTENTION_SCALE,
        xgap=0.5, ygap=0.5, colorbar=dict(title=dict(text="weight", side="top"), thickness=12, len=0.6),
        hovertemplate="target <b>%{y}</b> %{customdata[0]}<br>source <b>%{x}</b> %{customdata[1]}"
                      "<br>attention %{z:.2f}<extra></extra>"))
    row = node_ids.index(selected)
    fig.add_hrect(y0=row - 0.5, y1=row + 0.5, line=SELECTED_LINE)
    tick = dict(size=11 if len(node_ids) <= 30 else 8)
    fig.update_xaxes(title="source (attended to)", tickangle=-90, tickfont=tick, dtick=1)
    fig.update_yaxes(title="target (attending)", autorange="reversed", tickfont=tick, dtick=1)
    return _layout(fig, min(720, 220 + 22 * len(node_ids)))


def step_attention(matrix: np.ndarray, query_labels: list[str], key_labels: list[str], *, query_title: str,
                   key_title: str) -> go.Figure:
    """A query × key attention matrix (rows sum to 1) on the fixed [0, 1] range."""
    fig = go.Figure(go.Heatmap(
        z=matrix, x=key_labels, y=query_labels, zmin=0.0, zmax=1.0, colorscale=ATTENTION_SCALE, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="weight", side="top"), thickness=12, len=0.8),
        hovertemplate=f"{query_title} %{{y}}<br>{key_title} %{{x}}<br>attention %{{z:.2f}}<extra></extra>"))
    fig.update_xaxes(title=key_title, tickangle=-45, type="category")
    fig.update_yaxes(title=query_title, autorange="reversed", type="category")
    return _layout(fig, 420)


WEATHER_PANELS = (("Temperature", "°C"), ("Wind", "km/h"), ("Precipitation", "mm/h"))


def weather_comparison(times, baseline: np.ndarray, scenario: np.ndarray) -> go.Figure:
    """The horizon weather [H, 3] of the baseline (dashed) and the scenario (solid), one panel per variable."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{n} ({u})" for n, u in WEATHER_PANELS],
                        horizontal_spacing=0.07)
    for col, (name, unit) in enumerate(WEATHER_PANELS):
        for label, values, dash, colour in (("Baseline", baseline, "dash", "#7f7f7f"),
                                            ("Scenario", scenario, "solid", "#1f77b4")):
            fig.add_trace(go.Scatter(x=times, y=values[:, col], name=label, legendgroup=label, showlegend=col == 0,
                                     mode="lines+markers", line=dict(dash=dash, color=colour), marker=dict(size=4),
                                     hovertemplate=f"%{{x|%H:%M}} · %{{y:.1f}} {unit}<extra>{label}</extra>"),
                          row=1, col=col + 1)
    fig.update_xaxes(tickformat="%H:%M", showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee", rangemode="tozero")
    fig.update_yaxes(rangemode="normal", row=1, col=1)
    return _layout(fig, 260, legend=dict(orientation="h", y=-0.2))


def change_comparison(times, series: dict[str, np.ndarray], colours: dict[str, str]) -> go.Figure:
    """Speed changes (km/h) over the horizon, one line per named series, with the zero line."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=times, y=values, name=name, mode="lines+markers", line=dict(color=colours[name]),
                                 hovertemplate=f"%{{x|%H:%M}} · %{{y:+.2f}} km/h<extra>{name}</extra>"))
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.update_xaxes(tickformat="%H:%M", showgrid=True, gridcolor="#eee")
    fig.update_yaxes(title="change in speed (km/h)", showgrid=True, gridcolor="#eee", zeroline=False)
    return _layout(fig, 320, legend=dict(orientation="h", y=-0.2))


def add_baseline(fig: go.Figure, target_times, quantiles: np.ndarray, levels=QUANTILE_LEVELS) -> go.Figure:
    """Overlay a baseline forecast (quantiles [H, L] at `levels`) on a `ui.fan_chart.fan_chart`
    figure: its median dashed and its 80 % interval dotted, in grey."""
    at = {round(100 * level): i for i, level in enumerate(levels)}
    lines = ((50, "Baseline median (actual weather)", "dash", 2.0), (10, "Baseline 80 % interval", "dot", 1.2),
             (90, "Baseline 80 % interval", "dot", 1.2))
    for q, name, dash, width in lines:
        fig.add_trace(go.Scatter(x=target_times, y=quantiles[:, at[q]], mode="lines", name=name, legendgroup=name,
                                 showlegend=q != 90, line=dict(color=BASELINE, dash=dash, width=width),
                                 hovertemplate=f"baseline q{q}: %{{y:.1f}} km/h<extra></extra>"))
    return fig
