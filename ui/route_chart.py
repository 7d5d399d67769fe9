"""The Route page's travel-time histogram: the Monte Carlo draws of the fastest and the shortest
route, their 80 % interval and median, the reference times (historical, actual, deadline) and,
with a deadline, the fastest route's on-time draws hatched."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui.fan_chart import BAND_80, HIGHLIGHT, MEDIAN, OBSERVED, TRUTH

DEADLINE = "rgb(178, 24, 43)"
ON_TIME = "rgb(26, 152, 80)"
ON_TIME_TRACE = "On time"


def travel_time_histogram(fastest: np.ndarray, shortest: np.ndarray | None, p10: float, p50: float, p90: float,
                          historical: float, actual: float | None, deadline: float | None) -> go.Figure:
    """Draws in minutes; `shortest` is None when it is the same route as the fastest; `deadline` in
    minutes after departure, or None."""
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
    if deadline is not None:
        # Each bin's share of all the draws that arrive in it by the deadline: the bin the deadline
        # cuts holds only its early draws, so the hatched bars add up to P(on time) exactly.
        early = np.histogram(fastest[fastest <= deadline], edges)[0] / len(fastest)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=early, width=float(edges[1] - edges[0]),
                             name=f"{ON_TIME_TRACE} ({early.sum():.0%})", marker=dict(
                                 color="rgba(0, 0, 0, 0)", line=dict(width=0),
                                 pattern=dict(shape="/", fgcolor=ON_TIME, size=6, solidity=0.4)),
                             hovertemplate="%{x:.1f} min: %{y:.1%} on time<extra>fastest</extra>"))
    top = 1.05 * max(np.histogram(draws, edges)[0].max() / len(draws)
                     for draws in [fastest] + ([] if shortest is None else [shortest]))
    # The deadline first, the actual time last and widest: where they meet, the actual time shows.
    lines = [] if deadline is None else [(deadline, "Deadline", DEADLINE, "dashdot", 2)]
    lines += [(p50, "P50", MEDIAN, "solid", 2), (historical, "Historical average", OBSERVED, "dash", 2)]
    lines += [] if actual is None else [(actual, "Actual", TRUTH, "dot", 3)]
    for x, label, colour, dash, width in lines:
        fig.add_trace(go.Scatter(x=[x, x], y=[0, top], mode="lines", name=label,
                                 line=dict(color=colour, width=width, dash=dash),
                                 hovertemplate=f"{label}: {x:.1f} min<extra></extra>"))
    fig.update_layout(height=360, barmode="overlay", margin=dict(l=10, r=10, t=50, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      xaxis=dict(title="Travel time (min) · shaded: the fastest route's 80 % interval"),
                      yaxis=dict(title="Share of draws", tickformat=".0%"))
    return fig
