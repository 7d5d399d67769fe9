"""The Route page's travel-time histogram: the Monte Carlo draws of the fastest and the shortest
route, their 80 % interval and median, and the reference times (historical, actual, deadline)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui.fan_chart import BAND_80, HIGHLIGHT, MEDIAN, OBSERVED, TRUTH

DEADLINE = "rgb(178, 24, 43)"


def travel_time_histogram(fastest: np.ndarray, shortest: np.ndarray | None, p10: float, p50: float, p90: float,
                          historical: float, actual: float | None, deadline: float | None) -> go.Figure:
    """Draws in minutes; `shortest` is None when it is the same route as the fastest."""
    edges = np.histogram_bin_edges(np.concatenate([fastest] + ([] if shortest is None else [shortest])), bins=40)
    bins = dict(start=float(edges[0]), end=float(edges[-1]), size=float(edges[1] - edges[0]))
    fig = go.Figure()
    fig.add_vrect(x0=p10, x1=p90, fillcolor=BAND_80, line_width=0, layer="below")
    fig.add_trace(go.Histogram(x=fastest, xbins=bins, histnorm="probability", name="Fastest route",
                               marker_color=MEDIAN, opacity=0.75,
                               hovertemplate="%{x} min: %{y:.1%}<extra>fastest</extra>"))
    if shortest is not None:
        fig.add_trace(go.Histogram(x=shortest, xbins=bins, histnorm="probability", name="Shortest route",
                                   marker_color=HIGHLIGHT, opacity=0.45,
                                   hovertemplate="%{x} min: %{y:.1%}<extra>shortest</extra>"))
    top = 1.05 * max(np.histogram(draws, edges)[0].max() / len(draws)
                     for draws in [fastest] + ([] if shortest is None else [shortest]))
    lines = [(p50, "P50", MEDIAN, "solid"), (historical, "Historical average", OBSERVED, "dash")]
    lines += [] if actual is None else [(actual, "Actual", TRUTH, "dot")]
    lines += [] if deadline is None else [(deadline, "Deadline", DEADLINE, "dashdot")]
    for x, label, colour, dash in lines:
        fig.add_trace(go.Scatter(x=[x, x], y=[0, top], mode="lines", name=label,
                                 line=dict(color=colour, width=2, dash=dash),
                                 hovertemplate=f"{label}: {x:.1f} min<extra></extra>"))
    fig.update_layout(height=360, barmode="overlay", margin=dict(l=10, r=10, t=50, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      xaxis=dict(title="Travel time (min) · shaded: the fastest route's 80 % interval"),
                      yaxis=dict(title="Share of draws", tickformat=".0%"))
    return fig
