"""Counterfactual-weather augmentation for training on simulated data (opt-in).

Heavy rain is rare in eight weeks, and the simulated weather never crosses the heat and wind
thresholds, so a model sees too few examples to learn the weather's effect. On the simulator's
data the same training period can be re-simulated under other weather with every other random
draw unchanged: the traffic differs only by what the weather causes, which is exactly the signal
the weather attention should learn. Each copy draws fresh weather from the simulator's own
weather model, rainier (COPY_RAIN_PER_DAY events a day instead of 0.9, most of them at any hour,
so rain starts and stops in every part of the day's traffic) and with a per-day shift of
temperature (−2…+4 °C) and wind (−3…+15 km/h) so that heat above 33 °C and wind above 30 km/h
occur. Only the weather's marginal changes; how traffic answers it is the simulator's, as in
the observed weeks. The copies are appended to the training windows; the
validation and test windows stay the observed data."""

from __future__ import annotations

import numpy as np

from stmgt.data.dataset import Windows
from stmgt.data.simulate import STEPS_PER_DAY, TrafficSimulator, _weather, simulator_for
from stmgt.errors import DataError

COPY_RAIN_PER_DAY, COPY_AFTERNOON_SHARE = 2.5, 0.25


def sampled_weather(sim: TrafficSimulator, rng: np.random.Generator) -> np.ndarray:
    """[T, 3] weather for the simulator's period: a fresh, rainier draw of its weather model, with
    hotter and windier days mixed in."""
    weather = _weather(sim.timestamps, rng, COPY_RAIN_PER_DAY, COPY_AFTERNOON_SHARE)
    days = np.arange(len(weather)) // STEPS_PER_DAY
    count = days[-1] + 1
    weather[:, 0] += rng.uniform(-2.0, 4.0, count)[days]
    weather[:, 1] = np.maximum(weather[:, 1] + rng.uniform(-3.0, 15.0, count)[days], 0.0)
    return weather


def with_weather_copies(dataset, windows: Windows, train_anchors: np.ndarray, copies: int,
                        seed: int) -> tuple[Windows, np.ndarray]:
    """`windows` followed by `copies` re-simulations of the data under sampled weather, and the
    training anchors of all of them (the copies' anchors offset by their place in the series).
    The original series come first, so validation and test anchors index what they did."""
    sim = simulator_for(dataset)
    if sim is None:
        raise DataError("counterfactual weather needs the simulator's own data (this dataset was not simulated, "
                        "or was changed since)", "weather_copies")
    rng = np.random.default_rng([seed, 10])
    parts = [windows] + [Windows(sim.run(sampled_weather(sim, rng)), windows.scaler, windows.seq_len,
                                 windows.horizon) for _ in range(copies)]
    T = len(windows.speed)
    anchors = np.concatenate([np.asarray(train_anchors) + k * T for k in range(copies + 1)])
    return Windows.joined(parts), anchors
