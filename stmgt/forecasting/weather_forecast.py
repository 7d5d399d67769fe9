"""The weather forecast a forecaster has at an anchor time, for honest scores.

The model reads the weather of the next three hours. Scoring it with the observed weather gives
it a perfect weather forecast the baselines never get; in deployment it has a forecast. So the
headline scores use the forecast that would have been issued at each anchor: the simulator's own
(errors growing with lead time, `TrafficSimulator.weather_forecast`) on simulated data, and on
imported data, which has no archived forecasts, the last observed weather carried forward."""

from __future__ import annotations

import numpy as np

from stmgt.data.dataset import TrafficDataset
from stmgt.data.simulate import TrafficSimulator

SIMULATED = "the simulator's weather forecast issued at the forecast time (errors grow with lead time)"
CARRIED_FORWARD = "the last observed weather carried forward"


def issued_forecast(dataset: TrafficDataset, sim: TrafficSimulator | None, anchors,
                    horizon: int) -> tuple[np.ndarray | None, str]:
    """[B, H, 3] weather forecast for each anchor's horizon, and a phrase that says which kind."""
    anchors = np.atleast_1d(np.asarray(anchors, dtype=np.int64))
    if dataset.weather is None:
        return None, "no weather"
    if sim is not None:
        return sim.weather_forecast(anchors, horizon), SIMULATED
    last = dataset.weather[anchors][:, None, :]
    return np.repeat(last, horizon, axis=1), CARRIED_FORWARD
