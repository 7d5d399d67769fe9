"""What a weather what-if changes: the model's answer and, on simulated data, the true one.

Both are changes in km/h against the forecast (or the simulation) with the weather as observed,
per anchor, horizon step and node, so they can be put side by side: on the What-if page, in
`python -m stmgt whatif` and in the fidelity benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stmgt.data.simulate import TrafficSimulator
from stmgt.forecasting.forecast import Forecaster
from stmgt.data.scenario import WeatherScenario

MEDIAN = 0.5


def true_change(sim: TrafficSimulator, anchors, horizon: int, scenario: WeatherScenario) -> np.ndarray:
    """The simulator's true effect of `scenario` on each anchor's `horizon` target steps,
    [B, H, N] km/h: counterfactual − actual speed, every random draw the same (NaN where a
    sensor reading is missing or the step lies past the simulated period)."""
    changes = np.full((len(np.atleast_1d(anchors)), horizon, sim.graph.num_nodes), np.nan, dtype=np.float32)
    for b, anchor in enumerate(np.atleast_1d(anchors)):
        observed = sim.weather[anchor + 1:anchor + 1 + horizon]
        edited = scenario.apply(np.concatenate([observed, np.zeros((horizon - len(observed), 3))]))
        if len(observed):
            changes[b, :len(observed)] = (sim.horizon_speed(anchor, edited[:len(observed)])
                                          - sim.horizon_speed(anchor, observed))
    return changes


def median_changes(forecaster: Forecaster, anchors, scenarios: list[WeatherScenario]) -> np.ndarray:
    """Median forecast under each scenario − median forecast with the observed weather,
    [S, B, H, N] km/h, all from one pass of the model (Forecaster.under_scenarios)."""
    observed, *under = (m.quantiles([MEDIAN])[..., 0].numpy()
                        for m in forecaster.under_scenarios(anchors, [None, *scenarios]))
    return np.stack(under) - observed


def model_change(forecaster: Forecaster, anchors, scenario: WeatherScenario) -> np.ndarray:
    """Median forecast under `scenario` − median forecast with the observed weather, [B, H, N] km/h."""
    return median_changes(forecaster, anchors, [scenario])[0]


def changes_frame(forecaster: Forecaster, anchors, model: np.ndarray, true: np.ndarray | None) -> pd.DataFrame:
    """One row per anchor, node and step: anchor, node_id, horizon_step, target_time,
    model_change, true_change in km/h to 4 decimals, so float rounding (~10⁻⁶) reads as the 0 it
    is (NaN where unknown, and throughout on data not simulated)."""
    anchors = np.atleast_1d(anchors)
    B, H, N = model.shape
    times = forecaster.dataset.timestamps[anchors]
    step = np.tile(np.repeat(np.arange(1, H + 1), N), B)
    anchor_time = np.repeat(times, H * N)
    return pd.DataFrame({
        "anchor": [t.isoformat() for t in anchor_time],
        "node_id": np.tile(np.array(forecaster.dataset.graph.node_ids, dtype=object), B * H),
        "horizon_step": step,
        "target_time": [t.isoformat() for t in anchor_time + step * forecaster.dataset.freq],
        "model_change": np.round(model.ravel(), 4) + 0.0,      # + 0.0: no "-0.0"
        "true_change": np.full(model.size, np.nan) if true is None else np.round(true.ravel(), 4) + 0.0,
    })
