"""Plotly figures for the Evaluation and Train pages. They draw what `metrics.json` and
`history.csv` hold (or a live job's copy of them); nothing here computes a score."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stmgt.storage.runs import kept_epoch

MODEL_NAMES = {"stmgt": "STMGT", "stmgt_perfect_weather": "STMGT (perfect weather forecast)",
               "persistence": "Persistence", "historical_average": "Historical average",
               "linear_autoregressive": "Linear autoregression"}
# Column headers of tables with a column per model: five fit side by side in a narrow table.
MODEL_HEADERS = {"stmgt": "STMGT", "stmgt_perfect_weather": "Perfect weather", "persistence": "Persistence",
                 "historical_average": "Hist. average", "linear_autoregressive": "Linear AR"}
MODEL_COLOURS = {"stmgt": "rgb(8, 81, 156)", "stmgt_perfect_weather": "rgb(107, 174, 214)",
                 "persistence": "rgb(150, 150, 150)",
                 "historical_average": "rgb(230, 133, 30)", "linear_autoregressive": "rgb(49, 163, 84)"}
METRICS = {"mae": ("MAE", "km/h"), "rmse": ("RMSE", "km/h"), "mape": ("MAPE", "%"), "crps": ("CRPS", "km/h")}
LEVEL_COLOURS = {"50": "rgb(107, 174, 214)", "80": "rgb(33, 113, 181)", "90": "rgb(8, 48, 107)"}
REFERENCE = "rgb(178, 24, 43)"


def _layout(fig: go.Figure, title: str, height: int = 360, **kwargs) -> go.Figure:
    """Title top left, the legend in its own row between the title and the plot: both push the top
    margin, so a legend that wraps onto more rows in a narrow chart moves the plot down, not over the title."""
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), hovermode="x unified",
                      title=dict(text=title, x=0.01, xanchor="left", y=0.97, yanchor="top", yref="container",
                                 font=dict(size=15), automargin=True),
                      legend=dict(orientation="h", yanchor="bottom", y=1.03, x=0))
    return fig.update_layout(**kwargs)


def horizon_figure(metrics: dict, metric: str) -> go.Figure:
    """One metric per forecast horizon, for STMGT and the baselines the metrics hold."""
    name, unit = METRICS[metric]
    minutes = metrics["horizon_minutes"]
    fig = go.Figure()
    for key, scores in metrics["models"].items():
        fig.add_trace(go.Scatter(x=minutes, y=scores[metric], mode="lines+markers", name=MODEL_NAMES.get(key, key),
                                 line=dict(color=MODEL_COLOURS.get(key), width=3 if key == "stmgt" else 2),
                                 hovertemplate=f"%{{y:.2f}} {unit}"))
    fig.update_xaxes(title="forecast horizon (minutes ahead)", tickvals=minutes)
    fig.update_yaxes(title=f"{name} ({unit})", rangemode="tozero")
    return _layout(fig, f"{name} by horizon — lower is better", height=420)


def reliability_figure(stmgt: dict) -> go.Figure:
    """Observed share inside each central interval against its nominal level; on the diagonal is
    perfectly calibrated, below it the intervals are too narrow."""
    rel = stmgt["reliability"]
    nominal = [100 * v for v in rel["nominal"]]
    observed = [100 * v for v in rel["observed"]]
    lo, hi = min(nominal + observed) - 5, max(nominal + observed) + 3
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect calibration",
                             line=dict(color=REFERENCE, dash="dash", width=1.5), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=nominal, y=observed, mode="lines+markers", name="STMGT",
                             line=dict(color=MODEL_COLOURS["stmgt"], width=3),
                             hovertemplate="nominal %{x:.0f} %: observed %{y:.1f} %<extra></extra>"))
    fig.update_xaxes(title="nominal interval level (%)", range=[lo, hi])
    fig.update_yaxes(title="observed coverage (%)", range=[lo, hi], scaleanchor="x")
    return _layout(fig, "Reliability of central intervals (all horizons)", height=400, hovermode="closest")


def coverage_figure(metrics: dict) -> go.Figure:
    """Prediction-interval coverage (PICP) per horizon, with each nominal level as a dotted line."""
    stmgt, minutes = metrics["models"]["stmgt"], metrics["horizon_minutes"]
    fig = go.Figure()
    for level, values in stmgt["coverage"].items():
        colour = LEVEL_COLOURS.get(level)
        fig.add_trace(go.Scatter(x=minutes, y=[100 * v for v in values], mode="lines+markers",
                                 name=f"{level} % interval", line=dict(color=colour, width=2.5),
                                 legendgroup=level, hovertemplate="%{y:.1f} %"))
        fig.add_trace(go.Scatter(x=[minutes[0], minutes[-1]], y=[float(level)] * 2, mode="lines",
                                 line=dict(color=colour, dash="dot", width=1), legendgroup=level,
                                 showlegend=False, hoverinfo="skip"))
    fig.update_xaxes(title="forecast horizon (minutes ahead)", tickvals=minutes)
    fig.update_yaxes(title="observed coverage (%)")
    return _layout(fig, "Interval coverage by horizon (dotted: nominal level)", height=400)


def pit_figure(stmgt: dict) -> go.Figure:
    """PIT histogram: flat at 1 when calibrated; U-shaped = too narrow, hump = too wide,
    tilted = biased."""
    pit = stmgt["pit_histogram"]
    edges, density = pit["edges"], pit["density"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=centres, y=density, width=[b - a for a, b in zip(edges[:-1], edges[1:])],
                           marker=dict(color=MODEL_COLOURS["stmgt"], line=dict(color="white", width=1)),
                           name="STMGT", customdata=list(zip(edges[:-1], edges[1:])),
                           hovertemplate="PIT %{customdata[0]:.1f}–%{customdata[1]:.1f}: density %{y:.2f}"
                                         "<extra></extra>"))
    fig.add_hline(y=1, line=dict(color=REFERENCE, dash="dash", width=1.5),
                  annotation_text="uniform (calibrated)", annotation_position="top left")
    fig.update_xaxes(title="PIT = predicted CDF at the observed speed", range=[0, 1], dtick=0.1)
    fig.update_yaxes(title="density", rangemode="tozero")
    return _layout(fig, "PIT histogram (all horizons)", hovermode="closest", showlegend=False)


def width_figure(metrics: dict) -> go.Figure:
    """Mean width of each central interval per horizon: how uncertainty grows with lead time."""
    stmgt, minutes = metrics["models"]["stmgt"], metrics["horizon_minutes"]
    fig = go.Figure()
    for level, values in stmgt["width"].items():
        fig.add_trace(go.Scatter(x=minutes, y=values, mode="lines+markers", name=f"{level} % interval",
                                 line=dict(color=LEVEL_COLOURS.get(level), width=2.5),
                                 hovertemplate="%{y:.2f} km/h"))
    fig.update_xaxes(title="forecast horizon (minutes ahead)", tickvals=minutes)
    fig.update_yaxes(title="mean interval width (km/h)", rangemode="tozero")
    return _layout(fig, "Interval width by horizon")


def fidelity_figure(scenario: dict, minutes: list[int]) -> go.Figure:
    """One what-if scenario of the fidelity benchmark: mean true and model change per horizon step,
    and the per-node MAE of the change."""
    fig = go.Figure()
    for key, name, colour in (("mean_true_change_kmh", "Simulator (true change)", "rgb(217, 72, 1)"),
                              ("mean_model_change_kmh", "Model (predicted change)", MODEL_COLOURS["stmgt"])):
        fig.add_trace(go.Scatter(x=minutes, y=scenario[key], mode="lines+markers", name=name,
                                 line=dict(color=colour, width=2.5), hovertemplate="%{y:+.2f} km/h"))
    fig.add_trace(go.Bar(x=minutes, y=scenario["mae_per_node_kmh"], name="MAE of the change per node",
                         marker=dict(color="rgba(150, 150, 150, 0.45)"), hovertemplate="%{y:.2f} km/h"))
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.update_xaxes(title="forecast horizon (minutes ahead)", tickvals=minutes)
    fig.update_yaxes(title="change in network mean speed (km/h)")
    return _layout(fig, "Mean change per horizon step: model against the simulator")


def training_figure(history: pd.DataFrame, batches: pd.DataFrame | None = None,
                    whatif_weight: float = 0.0) -> go.Figure:
    """Training loss (per batch when given, and the epoch mean) above validation MAE per epoch, the
    best epoch marked. One above the other, so that each title, long with the loss's name, has the
    chart's whole width. `whatif_weight`: the run's, so the loss is named as it was trained."""
    loss = "mixture NLL + regularisers" + (f" + {whatif_weight:g} × what-if loss" if whatif_weight else "")
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.2,
                        subplot_titles=(f"Training loss ({loss})", "Validation MAE (km/h)"))
    if batches is not None and len(batches):
        fig.add_trace(go.Scatter(x=batches["epoch"], y=batches["loss"], mode="lines", name="loss per batch",
                                 line=dict(color="rgba(107, 174, 214, 0.7)", width=1),
                                 hovertemplate="epoch %{x:.2f}: %{y:.3f}<extra></extra>"), row=1, col=1)
    if not len(history):
        fig.add_annotation(text="appears when the first epoch is validated", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=sum(fig.layout.yaxis2.domain) / 2, font=dict(color="grey"))
    else:
        fig.add_trace(go.Scatter(x=history["epoch"], y=history["train_loss"], mode="lines+markers",
                                 name="epoch mean loss", line=dict(color=MODEL_COLOURS["stmgt"], width=2.5),
                                 hovertemplate="epoch %{x}: %{y:.3f}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=history["epoch"], y=history["val_mae"], mode="lines+markers",
                                 name="validation MAE", line=dict(color="rgb(230, 133, 30)", width=2.5),
                                 hovertemplate="epoch %{x}: %{y:.3f} km/h<extra></extra>"), row=2, col=1)
        best = kept_epoch(history)
        fig.add_trace(go.Scatter(x=[best["epoch"]], y=[best["val_mae"]], mode="markers", name="best (kept)",
                                 marker=dict(color=REFERENCE, size=13, symbol="star"),
                                 hovertemplate="best: epoch %{x}, %{y:.3f} km/h<extra></extra>"), row=2, col=1)
    epochs = int(history["epoch"].max()) if len(history) else 1
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(epochs / 10)))   # whole epochs only
    fig.update_xaxes(title="epoch", row=2, col=1)
    fig.update_annotations(font=dict(size=13))
    return _layout(fig, "", height=520, hovermode="closest", margin=dict(l=10, r=10, t=40, b=10),
                   legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
