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
    lines = [(p50, "P50", MEDIAN, "solid"), (historical, "historical", OBSERVED, "dash")]
    lines += [] if actual is None else [(actual, "actual", TRUTH, "dot")]
    lines += [] if deadline is None else [(deadline, "deadline", DEADLINE, "dashdot")]
    for x, label, colour, dash in lines:
        fig.add_vline(x=x, line=dict(color=colour, width=2, dash=dash))
        fig.add_annotation(x=x, y=1, yref="paper", text=label, showarrow=False, yanchor="bottom",
                           font=dict(size=11, color=colour))
    fig.update_layout(height=360, barmode="overlay", margin=dict(l=10, r=10, t=40, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0),
                      xaxis=dict(title="Travel time (min) · shaded: the fastest route's 80 % interval"),
                      yaxis=dict(title="Share of draws", tickformat=".0%"))
    return fig
