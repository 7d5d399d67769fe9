"""Node forecast: one node's predictive distribution over the next 12 steps — fan chart of the exact
mixture quantiles, the full density at one step, and the numbers as a table and CSV."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from stmgt.data.importers.common import unobserved_note
from stmgt.forecasting.forecast import QUANTILE_LEVELS
from ui import state
from ui.downloads import csv_download
from ui.fan_chart import density_chart, fan_chart, horizon_label
from ui.text import code, md

QUANTILE_COLUMNS = [f"q{round(100 * level)}" for level in QUANTILE_LEVELS]
DENSITY_GRID = 400
DENSITY_TAILS = (0.001, 0.999)     # the density plot spans these quantiles, plus a margin
TABLE_ROW_PX = 35                  # st.dataframe's row height: the table shows all steps unscrolled
DENSITY_PX, TABLE_PX = 440, 500    # side by side where they fit, else stacked: the table is never cut
COLUMN_PX = 44                     # a speed column: "88.8" and its header, no wider


@st.fragment
def density_section(forecast, n: int, quantiles: np.ndarray) -> None:
    """The mixture density at one horizon step; the slider redraws only this."""
    freq, targets = forecast.freq, forecast.target_times(0)
    step = state.horizon_picker(forecast.horizon, "Horizon",
                                lambda s: f"{horizon_label(s, freq)} · {targets[s - 1]:%H:%M}")
    mixture = forecast.mixture[0, step - 1, n]
    lo, hi = mixture.quantiles(DENSITY_TAILS).tolist()
    margin = 0.1 * (hi - lo)
    grid = torch.linspace(lo - margin, hi + margin, DENSITY_GRID, dtype=mixture.means.dtype)
    dist = mixture.distribution()
    density = dist.log_prob(grid).exp()
    components = dist.component_distribution.log_prob(grid[:, None]).exp() * mixture.weights   # [G, K]
    truth = float(forecast.truth[0, step - 1, n])
    st.plotly_chart(density_chart(grid.numpy(), density.numpy(), components.T.numpy(), QUANTILE_LEVELS,
                                  quantiles[step - 1], truth), key="node_density")
    weights = ", ".join(f"{w:.2f}" for w in sorted(mixture.weights.tolist(), reverse=True))
    st.caption(f"Predictive density at {targets[step - 1]:%a %d %b %H:%M}, a mixture of "
               f"{mixture.num_components} Gaussians (weights {weights}). Vertical lines: quantiles q10…q90 "
               "(solid: the median)."
               + ("" if np.isnan(truth) else f" Dotted: the actual speed, {truth:.1f} km/h."))


st.title("Node forecast")
forecaster = state.require_forecaster()
dataset = forecaster.dataset
node_id = state.node_picker(dataset)            # a row of its own: long street names stay whole
anchor = state.anchor_picker(forecaster)

forecast = state.forecast(anchor)
n = dataset.graph.index_of[node_id]
node = dataset.graph.nodes.iloc[n]
mixture = forecast.mixture[0, :, n]                       # this node's 12 horizon steps
quantiles = mixture.quantiles(QUANTILE_LEVELS).numpy()    # [H, L], exact
mean = mixture.mean().numpy()
history, truth = forecast.history[0, :, n], forecast.truth[0, :, n]
targets, median = forecast.target_times(0), quantiles[:, QUANTILE_LEVELS.index(0.5)]
st.caption(f"{md(dataset.graph.names[node_id])} · {code(node_id)} · {md(node['road_class'])} road · forecast made "
           f"at {forecast.anchor_times[0]:%a %d %b %Y %H:%M} with {md(state.current_model_choice().label)}. "
           "Speeds in km/h; bands are exact quantiles of the predicted Gaussian mixture.")
if node_id in dataset.unobserved_nodes:
    st.warning(md(unobserved_note([node_id])), icon="⚠️")

last = history[-1]
with st.container(horizontal=True, gap="medium", key="node_metrics"):    # wraps rather than cutting units
    st.metric(f"Observed at {forecast.anchor_times[0]:%H:%M}", "—" if np.isnan(last) else f"{last:.1f} km/h",
              help="The last speed the model saw.", width="content")
    for step in sorted({1, min(4, forecast.horizon), forecast.horizon}):
        i = step - 1
        st.metric(f"{horizon_label(step, forecast.freq)} · {targets[i]:%H:%M}", f"{median[i]:.1f} km/h",
                  delta=None if np.isnan(last) else f"{median[i] - last:+.1f} km/h", width="content",
                  help=f"Median forecast; 80 % interval {quantiles[i, 0]:.1f}–{quantiles[i, -1]:.1f} km/h.")

st.plotly_chart(fan_chart(forecast.input_times(0), history, targets, quantiles, truth, forecast.anchor_times[0]),
                key="node_fan")

with st.container(horizontal=True, gap="large"):      # the table moves under the density where both do not fit
    with st.container(width=DENSITY_PX):
        st.subheader("Distribution at one step")
        density_section(forecast, n, quantiles)
    with st.container(width=TABLE_PX):
        st.subheader("Forecast table")
        table = pd.DataFrame({"target_time": targets,
                              "horizon": [horizon_label(s, forecast.freq) for s in range(1, forecast.horizon + 1)],
                              "mean": mean, **dict(zip(QUANTILE_COLUMNS, quantiles.T)), "truth": truth})
        speed = st.column_config.NumberColumn(format="%.1f", width=COLUMN_PX)
        st.dataframe(table, hide_index=True, key="node_table", height=TABLE_ROW_PX * (len(table) + 1) + 3,
                     column_config={"target_time": st.column_config.DatetimeColumn("Time", format="HH:mm"),
                                    "horizon": "Horizon",
                                    "mean": st.column_config.NumberColumn("Mean", format="%.1f", width=COLUMN_PX),
                                    "truth": st.column_config.NumberColumn("Actual", format="%.1f", width=COLUMN_PX,
                                                                           help="Observed speed; empty when unknown"),
                                    **dict.fromkeys(QUANTILE_COLUMNS, speed)})
        csv_download(table.assign(target_time=[t.isoformat() for t in targets]).round(3),
                     f"forecast_{node_id}_{forecast.anchor_times[0]:%Y%m%dT%H%M}.csv", "node_csv")
        st.caption("km/h. q10…q90: the speed stays below this with 10…90 % probability.")
