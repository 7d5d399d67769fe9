"""The embedded default data: a calibrated traffic simulator on the HCMC road graph.

Speeds are built multiplicatively from parts that are each drawn once per seed:

    speed = class level × daily profile × exp(city trend + node deviation + noise)
            × incidents × rain

The node deviation spreads congestion upstream (against the edge direction) with a one-step
delay, so neighbours are correlated and the spatial branch has something to learn. Rain enters
last, through a function of precipitation and of how congested the road is when dry, so a
counterfactual (same seed, another weather in a window) changes only what the weather changes:
that is the true effect a what-if forecast is scored against.

Calibration targets (DESIGN §3, measured on real HCMC data) are checked in tests/test_simulate.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.graph import RoadGraph

DEFAULT_START = "2025-07-07T00:00:00+07:00"  # a Monday in the rainy season (May–November)
TIMEZONE = "Asia/Ho_Chi_Minh"
STEPS_PER_DAY = 96
CLASS_LEVEL = {"trunk": 1.105, "primary": 0.855, "secondary": 0.745}
# Network-level speed (km/h) by hour of day before class levels: night ≈ 27, rush minima ≈ 15.5.
WEEKDAY_PROFILE = [(0, 26.0), (1, 27.2), (2, 27.7), (3, 27.8), (4, 27.3), (4.75, 26.2), (5.5, 22.4),
                   (6.5, 17.6), (7.5, 15.5), (8.0, 15.3), (8.75, 15.8), (9.5, 16.6), (11, 17.2),
                   (12.5, 17.9), (14, 17.3), (15.5, 16.6), (16.5, 16.1), (17.5, 16.0), (18.25, 15.9),
                   (19, 16.3), (20, 17.6), (21, 19.2), (22, 22.0), (23, 24.2), (24, 26.0)]
WEEKEND_PROFILE = [(0, 26.6), (2, 28.0), (3, 28.2), (4, 27.8), (5, 26.8), (6.5, 22.8), (8, 19.6),
                   (10, 19.0), (12.5, 19.6), (15, 18.9), (17.5, 18.0), (19, 18.6), (21, 21.0),
                   (22.5, 24.3), (24, 26.6)]
# Rain slowdown (fraction of dry speed) at a road of average congestion, by mm/h.
RAIN_KNOTS = [(0.0, 0.0), (0.2, 0.0), (0.5, 0.13), (5.0, 0.155), (10.0, 0.285), (40.0, 0.33)]


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 0
    weeks: float = 8
    start: str = DEFAULT_START
    missing: bool = True      # sensor gaps, so the masking paths are exercised

    @property
    def num_steps(self) -> int:
        return int(round(self.weeks * 7 * STEPS_PER_DAY))


def simulate(weeks: float = 8, seed: int = 0, graph: RoadGraph | None = None) -> TrafficDataset:
    """The embedded default dataset: `weeks` of 15-minute speeds on the HCMC graph."""
    return TrafficSimulator(SimulationConfig(seed=seed, weeks=weeks), graph).run()


class TrafficSimulator:
    """Draws every random part once for its seed; `run(weather)` renders speeds for any weather."""

    def __init__(self, config: SimulationConfig = SimulationConfig(), graph: RoadGraph | None = None):
        self.config = config
        self.graph = graph or RoadGraph.hcmc()
        self.timestamps = pd.date_range(pd.Timestamp(config.start).tz_convert(TIMEZONE),
                                        periods=config.num_steps, freq="15min")
        rng = np.random.default_rng(config.seed)
        # Independent generators per part: changing one part's draws never shifts another's.
        parts = rng.spawn(6)
        self.weather = _weather(self.timestamps, parts[0])
        self.dry_speed, self.free_flow = self._dry_speed(parts[1], parts[2])
        self.incidents = _incidents(self.graph, len(self.timestamps), parts[3])
        self.missing = _missing(len(self.timestamps), self.graph.num_nodes, parts[4]) if config.missing else None

    def _dry_speed(self, node_rng, dyn_rng) -> tuple[np.ndarray, np.ndarray]:
        T, N = len(self.timestamps), self.graph.num_nodes
        ts = self.timestamps
        hours = (ts.hour + ts.minute / 60).to_numpy()
        weekend = np.asarray(ts.day_of_week >= 5)
        profile = np.where(weekend, _interp_profile(WEEKEND_PROFILE, hours), _interp_profile(WEEKDAY_PROFILE, hours))
        level = self.graph.nodes["road_class"].map(CLASS_LEVEL).fillna(0.9).to_numpy()
        level = level * np.exp(node_rng.normal(0, 0.15, N))
        # Some intersections jam more than others at rush hour: a per-node depth of the daily dips.
        depth = np.exp(node_rng.normal(0, 0.2, N))
        night = max(p for _, p in WEEKDAY_PROFILE)
        shape = (profile[:, None] / night) ** depth[None, :]
        # Upstream spreading: a node's deviation moves towards its downstream neighbours'
        # deviation of the previous step (queues back up against the traffic flow).
        downstream = np.zeros((N, N))
        src, dst = self.graph.edge_index.numpy()
        downstream[src, dst] = 1.0
        downstream /= np.maximum(downstream.sum(1, keepdims=True), 1)
        phi, beta = 0.81, 0.16
        city = np.zeros(T)
        dev = np.zeros((T, N))
        shocks = dyn_rng.normal(0, 0.062, (T, N))
        city_shocks = dyn_rng.normal(0, 0.012, T)
        for t in range(1, T):
            city[t] = 0.97 * city[t - 1] + city_shocks[t]
            dev[t] = phi * dev[t - 1] + beta * (downstream @ dev[t - 1]) + shocks[t]
        noise = dyn_rng.normal(0, 0.035, (T, N))
        dry = level[None, :] * night * shape * np.exp(city[:, None] + dev + noise)
        free_flow = level * night
        return dry, free_flow

    def run(self, weather: np.ndarray | None = None) -> TrafficDataset:
        """Speeds under `weather` ([T, 3]; default: the simulated weather)."""
        weather = self.weather if weather is None else np.asarray(weather, dtype=np.float64)
        speed = self.dry_speed * self.incidents
        speed = speed * (1.0 - rain_slowdown(weather[:, 2], speed / self.free_flow[None, :]))
        # Soft ceiling above 40 km/h: nobody drives 70 in District 1.
        speed = np.where(speed > 40.0, 40.0 + 16.0 * np.tanh((speed - 40.0) / 16.0), speed)
        speed = np.maximum(speed, 3.0).astype(np.float32)
        if self.missing is not None:
            speed[self.missing] = np.nan
        provenance = {"source": "simulator", "seed": self.config.seed, "weeks": self.config.weeks,
                      "units": "km/h"}
        return TrafficDataset(self.timestamps, speed, weather.astype(np.float32), self.graph, provenance)

    def counterfactual(self, start, end, *, temperature_c=None, wind_kmh=None,
                       precipitation_mm=None) -> TrafficDataset:
        """Re-run with the weather between `start` and `end` (inclusive timestamps) replaced;
        every random draw is the same, so the difference to `run()` is the weather's true effect."""
        weather = self.weather.copy()
        window = (self.timestamps >= pd.Timestamp(start)) & (self.timestamps <= pd.Timestamp(end))
        for col, value in enumerate((temperature_c, wind_kmh, precipitation_mm)):
            if value is not None:
                weather[window, col] = value
        return self.run(weather)


def rain_slowdown(precipitation_mm, relative_speed) -> np.ndarray:
    """Fractional slowdown from rain; on a road already congested (low speed relative to its free
    flow) the same rain costs up to ~1.3× more, on a free-flowing one ~0.7×."""
    knots_x, knots_y = zip(*RAIN_KNOTS)
    base = np.interp(np.asarray(precipitation_mm)[:, None], knots_x, knots_y)
    congestion = np.clip(1.0 - relative_speed, 0.0, 1.0)
    return np.clip(base * (0.7 + 0.9 * congestion), 0.0, 0.6)


def _interp_profile(knots, hours) -> np.ndarray:
    x, y = zip(*knots)
    return np.interp(hours, x, y)


def _weather(timestamps: pd.DatetimeIndex, rng) -> np.ndarray:
    """Temperature with a daily cycle, gusty wind, and afternoon-leaning rain events."""
    T = len(timestamps)
    hours = (timestamps.hour + timestamps.minute / 60).to_numpy()
    precip = np.zeros(T)
    day_count = int(np.ceil(T / STEPS_PER_DAY))
    for day in range(day_count):
        for _ in range(rng.poisson(0.9)):
            # Start hour: mostly 13–19 h, sometimes at night or in the morning.
            hour = rng.normal(16.0, 2.2) if rng.random() < 0.75 else rng.uniform(0, 24)
            start = day * STEPS_PER_DAY + int(np.clip(hour, 0, 23.75) * 4)
            duration = int(rng.integers(2, 13))                   # 30 min – 3 h
            peak = float(np.exp(rng.normal(1.6, 0.95)))           # median ≈ 5 mm/h, heavy tail
            shape = np.sin(np.linspace(0.15, np.pi - 0.15, duration)) ** 0.6
            stop = min(start + duration, T)
            precip[start:stop] = np.maximum(precip[start:stop], peak * shape[: stop - start])
    precip = np.round(precip, 2)
    raining = precip > 0.2
    temperature = (29.0 + 4.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
                   + np.cumsum(rng.normal(0, 0.08, T)) * 0.2 - 2.5 * np.tanh(precip / 5.0))
    temperature = np.clip(temperature, 24.0, 34.0)
    wind = np.clip(8.0 + 3.0 * np.sin(2 * np.pi * (hours - 11.0) / 24.0) + rng.gamma(2.0, 1.5, T)
                   + 6.0 * raining, 3.0, 25.0)
    return np.stack([temperature, wind, precip], axis=1)


def _incidents(graph: RoadGraph, T: int, rng) -> np.ndarray:
    """Multiplicative factor [T, N]: random incidents of 30–120 min whose slowdown reaches
    1–3 hops upstream, one step later per hop, weaker with distance."""
    factor = np.ones((T, graph.num_nodes))
    upstream = {i: [] for i in range(graph.num_nodes)}
    src, dst = graph.edge_index.numpy()
    for s, d in zip(src, dst):
        upstream[int(d)].append(int(s))
    count = rng.poisson(T / STEPS_PER_DAY * 1.5)
    for _ in range(count):
        node, start = int(rng.integers(graph.num_nodes)), int(rng.integers(T))
        duration = int(rng.integers(2, 9))
        severity = rng.uniform(0.3, 0.6)
        frontier, seen = [node], {node}
        for hop in range(int(rng.integers(1, 4)) + 1):
            hit = severity * 0.5 ** hop
            a, b = min(start + hop, T), min(start + hop + duration, T)
            for n in frontier:
                factor[a:b, n] = np.minimum(factor[a:b, n], 1.0 - hit)
            frontier = [u for n in frontier for u in upstream[n] if u not in seen]
            seen.update(frontier)
    return factor


def _missing(T: int, N: int, rng) -> np.ndarray:
    """Sensor gaps: scattered single readings plus a few multi-hour outages."""
    missing = rng.random((T, N)) < 0.004
    for _ in range(max(1, T // 600)):
        node, start = int(rng.integers(N)), int(rng.integers(T))
        missing[start:start + int(rng.integers(8, 33)), node] = True
    return missing
