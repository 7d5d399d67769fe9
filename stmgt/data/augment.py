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
validation and test windows stay the observed data.

What-if pairs go one step further: a training window's horizon weather is edited as an analyst
would on the What-if page, and the simulator re-runs only that horizon from the same state with
the same draws. The true change is then free of traffic noise, so a model can be taught the
answer to the what-if question itself, including that a wind or heat change below the
simulator's thresholds changes nothing."""

from __future__ import annotations

import numpy as np

from stmgt.data.dataset import Windows
from stmgt.data.simulate import RAIN_KNOTS, STEPS_PER_DAY, TrafficSimulator, simulated_weather, simulator_for
from stmgt.errors import DataError
from stmgt.data.scenario import WeatherScenario

COPY_RAIN_PER_DAY, COPY_AFTERNOON_SHARE = 2.5, 0.25
# What-ifs drawn for pairs: which variable changes, and over how much of the horizon.
PAIR_RAIN_SHARE, PAIR_HEAT_SHARE, PAIR_WHOLE_HORIZON_SHARE, PAIR_DRY_SHARE = 0.6, 0.2, 0.4, 0.15
PAIR_RAIN_MM = (0.5, 40.0)          # split at the simulator's rain knots (`sampled_rain`)
PAIR_TEMPERATURE_SHIFT, PAIR_WIND_SHIFT = (-3.0, 6.0), (-10.0, 25.0)


def sampled_weather(sim: TrafficSimulator, rng: np.random.Generator) -> np.ndarray:
    """[T, 3] weather for the simulator's period: a fresh, rainier draw of its weather model, with
    hotter and windier days mixed in."""
    weather = simulated_weather(sim.timestamps, rng, COPY_RAIN_PER_DAY, COPY_AFTERNOON_SHARE)
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


def sampled_rain(rng: np.random.Generator) -> float:
    """A what-if pair's rain in mm/h: one stretch of `PAIR_RAIN_MM` between the simulator's rain knots
    (0.5–5, 5–10, 10–40 mm/h) drawn evenly, then log-uniform inside it. Log-uniform over the whole
    range put a sixth of the pairs where the slowdown bends from light to heavy rain, and every
    model overshot 5 mm/h and undershot 10 mm/h: its answer grows smoothly where the truth bends."""
    low, high = PAIR_RAIN_MM
    bounds = [low, *(mm for mm, _ in RAIN_KNOTS if low < mm < high), high]
    stretch = int(rng.integers(len(bounds) - 1))
    return float(np.exp(rng.uniform(np.log(bounds[stretch]), np.log(bounds[stretch + 1]))))


def sampled_whatif(rng: np.random.Generator, horizon: int) -> WeatherScenario:
    """A what-if as the What-if page sets one: rain of 0.5–40 mm/h (or none: a dry spell), a
    temperature shift of −3…+6 °C or a wind shift of −10…+25 km/h, over the whole horizon or a
    span of it."""
    first = int(rng.integers(1, horizon + 1))
    span = dict(first_step=1, last_step=horizon) if rng.random() < PAIR_WHOLE_HORIZON_SHARE else \
        dict(first_step=first, last_step=int(rng.integers(first, horizon + 1)))
    kind = rng.random()
    if kind < PAIR_RAIN_SHARE:
        dry = rng.random() < PAIR_DRY_SHARE
        rain = 0.0 if dry else sampled_rain(rng)
        return WeatherScenario(precipitation_mm=round(rain, 2), **span)
    if kind < PAIR_RAIN_SHARE + PAIR_HEAT_SHARE:
        return WeatherScenario(temperature_shift=float(rng.uniform(*PAIR_TEMPERATURE_SHIFT)), **span)
    return WeatherScenario(wind_shift=float(rng.uniform(*PAIR_WIND_SHIFT)), **span)


def whatif_pairs(sim: TrafficSimulator, anchors: np.ndarray, horizon: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sampled what-if per anchor -> (observed [B, H, 3], edited [B, H, 3] horizon weather in
    raw units, true change [B, H, N] km/h, NaN where a reading is missing). The anchors' whole
    horizons must lie inside the simulated period."""
    observed = np.stack([sim.weather[a + 1:a + 1 + horizon] for a in anchors]).astype(np.float32)
    edited = np.stack([sampled_whatif(rng, horizon).apply(w) for w in observed])
    change = np.stack([sim.horizon_speed(a, e) - sim.horizon_speed(a, o) for a, o, e in zip(anchors, observed, edited)])
    return observed, edited, change
