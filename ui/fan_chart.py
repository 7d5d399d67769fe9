"""Plotly figures for the forecast pages: one node's fan chart over the horizon, its mixture density
at one step, and the map's per-step bar strip. They only draw arrays computed by `stmgt`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

BAND_80 = "rgba(49, 130, 189, 0.18)"
BAND_50 = "rgba(49, 130, 189, 0.38)"
MEDIAN = "rgb(8, 81, 156)"
OBSERVED = "rgb(90, 90, 90)"
TRUTH = "rgb(217, 72, 1)"
HIGHLIGHT = "rgb(84, 39, 143)"
MUTED = "rgb(200, 200, 215)"


def horizon_label(step: int, freq: pd.Timedelta) -> str:
    """'+15 min', '+1 h', '+1 h 15 min' for horizon step `step` (1-based)."""
    minutes = int(step * freq / pd.Timedelta(minutes=1))
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"+{rest} min"
    return f"+{hours} h" + (f" {rest} min" if rest else "")


def _layout(fig: go.Figure, height: int, hovermode: str = "x unified") -> go.Figure:
    """The legend goes under the plot (above it, plotly's toolbar covers it on hover), at the foot of
    the figure: the bottom margin grows to hold it under the x-axis title however many rows it wraps to."""
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), hovermode=hovermode,
                      legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0))
    return fig


def fan_chart(input_times: pd.DatetimeIndex, history: np.ndarray, target_times: pd.DatetimeIndex,
              quantiles: np.ndarray, truth: np.ndarray, anchor_time: pd.Timestamp,
              threshold: float | None = None) -> go.Figure:
    """`history` [S] observed inputs, `quantiles` [H, 5] at levels 10/25/50/75/90 %, `truth` [H]
    (NaN where unknown, then not drawn). Bands are the exact mixture quantiles; they start from the
    last observation (a known value, so every quantile equals it) so the fan opens from the data."""
    fan_times = target_times
    if np.isfinite(history[-1]):
        fan_times = target_times.insert(0, input_times[-1])
        quantiles = np.vstack([np.full(quantiles.shape[1], history[-1]), quantiles])
    q10, q25, q50, q75, q90 = quantiles.T
    hover = "%{y:.1f} km/h"
    fig = go.Figure()
    for lo, hi, colour, name in ((q10, q90, BAND_80, "80 % interval (q10–q90)"),
                                 (q25, q75, BAND_50, "50 % interval (q25–q75)")):
        fig.add_trace(go.Scatter(x=fan_times, y=hi, mode="lines", line=dict(width=0), showlegend=False,
                                 legendgroup=name, name=f"{name} upper", hovertemplate=hover))
        fig.add_trace(go.Scatter(x=fan_times, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=colour, name=name, legendgroup=name, hovertemplate=hover))
    fig.add_trace(go.Scatter(x=fan_times, y=q50, mode="lines+markers", name="Median forecast (q50)",
                             line=dict(color=MEDIAN, width=2.5), marker=dict(size=5), hovertemplate=hover))
    fig.add_trace(go.Scatter(x=input_times, y=history, mode="lines+markers", name="Observed (model input)",
                             line=dict(color=OBSERVED, width=2), marker=dict(size=5), hovertemplate=hover))
    if np.isfinite(truth).any():
        fig.add_trace(go.Scatter(x=target_times, y=truth, mode="lines+markers", name="Actual speed",
                                 line=dict(color=TRUTH, width=1.5, dash="dot"), marker=dict(size=6, symbol="x"),
                                 hovertemplate=hover))
    fig.add_vline(x=anchor_time, line=dict(color="rgb(150,150,150)", dash="dash", width=1))
    fig.add_annotation(x=anchor_time, y=1, yref="paper", text="forecast made", showarrow=False,
                       xanchor="right", yanchor="top", font=dict(size=11, color="rgb(120,120,120)"))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="rgb(178,24,43)", dash="dot", width=1),
                      annotation_text=f"congestion < {threshold:g} km/h", annotation_position="bottom left",
                      annotation_font=dict(size=11, color="rgb(178,24,43)"))
    fig.update_xaxes(title=None, tickformat="%H:%M\n%a %d %b")
    fig.update_yaxes(title="Speed (km/h)")         # fitted to the data: from 0 the bands would be squeezed
    return _layout(fig, 460)


def density_chart(grid: np.ndarray, density: np.ndarray, components: np.ndarray, levels, quantiles: np.ndarray,
                  truth: float | None) -> go.Figure:
    """The predictive density on `grid` (km/h), its weighted components [K, G], the quantiles at
    `levels` as vertical lines and, when known, the actual speed."""
    fig = go.Figure()
    for k, comp in enumerate(components):
        fig.add_trace(go.Scatter(x=grid, y=comp, mode="lines", line=dict(color="rgb(160,160,160)", width=1, dash="dot"),
                                 name="Mixture components (weighted)", legendgroup="components", showlegend=k == 0,
                                 hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=grid, y=density, mode="lines", name="Predictive density", fill="tozeroy",
                             line=dict(color=MEDIAN, width=2.5), fillcolor=BAND_80,
                             hovertemplate="%{x:.1f} km/h: %{y:.3f} per km/h<extra></extra>"))
    top = float(np.nanmax(density)) if len(density) else 1.0
    for k, (level, value) in enumerate(zip(levels, quantiles)):
        strong = abs(level - 0.5) < 1e-9
        label_y = top * (1.05 if k % 2 == 0 else 1.16)          # alternate heights: close quantiles stay legible
        fig.add_trace(go.Scatter(x=[value, value], y=[0, top * 1.05], mode="lines", showlegend=False,
                                 name=f"q{round(100 * level)}", line=dict(color=MEDIAN, width=1.8 if strong else 1,
                                                                          dash="solid" if strong else "dash"),
                                 hovertemplate=f"q{round(100 * level)}: {value:.1f} km/h<extra></extra>"))
        fig.add_annotation(x=value, y=label_y, text=f"q{round(100 * level)}", showarrow=False, yanchor="bottom",
                           font=dict(size=10, color=MEDIAN))
    if truth is not None and np.isfinite(truth):
        fig.add_trace(go.Scatter(x=[truth, truth], y=[0, top * 1.05], mode="lines", name="Actual speed",
                                 line=dict(color=TRUTH, width=2, dash="dot"),
                                 hovertemplate=f"actual: {truth:.1f} km/h<extra></extra>"))
    fig.update_xaxes(title="Speed (km/h)")
    fig.update_yaxes(title="Density (per km/h)", range=[0, top * 1.3])      # room for the quantile labels
    return _layout(fig, 400, hovermode="closest")


def horizon_bars(minutes: np.ndarray, values: np.ndarray, selected: int, title: str, unit: str) -> go.Figure:
    """A small bar per horizon step (x: minutes ahead) with the selected step (0-based) highlighted.
    Built in one constructor call: plotly's update_* methods add a visible share to every scrubber move
    (benchmarks/RESULTS.md, *Dashboard latency*)."""
    colours = [HIGHLIGHT if i == selected else MUTED for i in range(len(values))]
    return go.Figure(
        go.Bar(x=minutes, y=values, marker_color=colours, hovertemplate=f"+%{{x}} min: %{{y}} {unit}<extra></extra>"),
        layout=dict(title=dict(text=title, font=dict(size=13)), height=190, margin=dict(l=10, r=10, t=35, b=10),
                    showlegend=False, bargap=0.2,
                    xaxis=dict(title=dict(text="minutes ahead", font=dict(size=11)),
                               tickvals=minutes[minutes % 60 == 0], tickfont=dict(size=10)),
                    yaxis=dict(title=dict(text=unit), rangemode="tozero")))
