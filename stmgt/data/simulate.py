"""The embedded default data: a calibrated traffic simulator on the HCMC road graph.

Speeds are built multiplicatively from parts that are each drawn once per seed:

    speed = class level × daily profile × exp(city trend + node deviation + noise)
            × incidents × (1 − weather slowdown)

The node deviation spreads congestion upstream (against the edge direction) with a one-step
delay, so neighbours are correlated and the spatial branch has something to learn.

The weather acts as traffic does (DESIGN §3). Each step sets a per-node *target* slowdown: rain
by its intensity (light 0.5–5 mm/h ≈ −16–18 %, heavy ≥ 10 mm/h ≈ −30–34 % at a road of average
congestion, more on a congested road and less on a free-flowing one), heat −2 % per °C
above 33 °C (at most −8 %) and wind −0.4 % per km/h above 30 km/h (at most −6 %). The slowdown
itself is a state that moves towards the target: by 55 % of the gap per 15-min step while the
weather worsens (≈ 80 % built up after 30 min) and by 30 % per step once it eases (half gone after
30 min, ≈ 12 % left after 90 min: wet roads, queues draining), and it is pulled towards its
downstream neighbours' slowdown of the previous step (15 % per step), so the slowdown of a
congested road backs up to the roads feeding it. Without this the simulated data would teach a
model that rain acts instantly and vanishes the step it stops.

All random draws happen once, in the constructor; `run(weather)` renders speeds for any weather,
so a counterfactual (same seed, another weather) differs from the simulated data only by what
the weather causes, dynamics included: that is the true effect a what-if forecast is scored
against. `weather_forecast` issues the forecast a forecaster would have had at an anchor.

Calibration targets (DESIGN §3, measured on real HCMC data) are checked in tests/data/test_simulate.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from stmgt.data.dataset import TrafficDataset
from stmgt.data.graph import RoadGraph

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
RAIN_KNOTS = [(0.0, 0.0), (0.2, 0.0), (0.5, 0.16), (5.0, 0.18), (10.0, 0.30), (40.0, 0.34)]
# Rain costs more on a congested road: × (RAIN_FREE + RAIN_CONGESTED · (1 − speed / free flow)).
RAIN_FREE, RAIN_CONGESTED = 0.7, 0.9
HEAT_ONSET_C, HEAT_PER_C, HEAT_MAX = 33.0, 0.02, 0.08
WIND_ONSET_KMH, WIND_PER_KMH, WIND_MAX = 30.0, 0.004, 0.06
# Share of the gap to the target slowdown closed per step while it grows / shrinks, and the pull
# towards the downstream neighbours' slowdown of the previous step.
BUILD_UP, RECOVERY, SPREAD = 0.55, 0.30, 0.15
MAX_SLOWDOWN = 0.6


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
        self.downstream = downstream_matrix(self.graph)
        self.weather = simulated_weather(self.timestamps, parts[0])
        self.dry_speed, self.free_flow = self._dry_speed(parts[1], parts[2])
        # incidents: the factor [T, N]; incident_log: each incident's own road, first and last+1 step, severity.
        self.incidents, self.incident_log = _incidents(self.graph, len(self.timestamps), parts[3])
        self.missing = _missing(len(self.timestamps), self.graph.num_nodes, parts[4]) if config.missing else None
        # Weather-forecast errors are keyed by anchor from this seed, not drawn in sequence.
        self._forecast_seed = int(parts[5].integers(2**32))
        self._slowdown: np.ndarray | None = None     # [T, N] under the simulated weather, on first use

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
        phi, beta = 0.81, 0.16
        city = np.zeros(T)
        dev = np.zeros((T, N))
        shocks = dyn_rng.normal(0, 0.062, (T, N))
        city_shocks = dyn_rng.normal(0, 0.012, T)
        for t in range(1, T):
            city[t] = 0.97 * city[t - 1] + city_shocks[t]
            dev[t] = phi * dev[t - 1] + beta * (self.downstream @ dev[t - 1]) + shocks[t]
        noise = dyn_rng.normal(0, 0.035, (T, N))
        dry = level[None, :] * night * shape * np.exp(city[:, None] + dev + noise)
        free_flow = level * night
        return dry, free_flow

    def _slowdown_from(self, steps: slice, weather: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Weather slowdown [len, N] over `steps` under `weather` (its rows for those steps),
        starting from the slowdown `state` [N] of the step before."""
        relative = self.dry_speed[steps] * self.incidents[steps] / self.free_flow[None, :]
        return weather_response(weather_target(weather, relative), self.downstream, state)

    def _render(self, steps: slice, slowdown: np.ndarray) -> np.ndarray:
        speed = self.dry_speed[steps] * self.incidents[steps] * (1.0 - slowdown)
        # Soft ceiling above 40 km/h: nobody drives 70 in District 1.
        speed = np.where(speed > 40.0, 40.0 + 16.0 * np.tanh((speed - 40.0) / 16.0), speed)
        speed = np.maximum(speed, 3.0).astype(np.float32)
        if self.missing is not None:
            speed[self.missing[steps]] = np.nan
        return speed

    def _observed_slowdown(self) -> np.ndarray:
        if self._slowdown is None:
            self._slowdown = self._slowdown_from(slice(None), self.weather, np.zeros(self.graph.num_nodes))
        return self._slowdown

    def run(self, weather: np.ndarray | None = None) -> TrafficDataset:
        """Speeds under `weather` ([T, 3]; default: the simulated weather)."""
        if weather is None:
            weather, slowdown = self.weather, self._observed_slowdown()
        else:
            weather = np.asarray(weather, dtype=np.float64)
            slowdown = self._slowdown_from(slice(None), weather, np.zeros(self.graph.num_nodes))
        provenance = {"source": "simulator", "seed": self.config.seed, "weeks": self.config.weeks,
                      "units": "km/h"}
        return TrafficDataset(self.timestamps, self._render(slice(None), slowdown), weather.astype(np.float32),
                              self.graph, provenance)

    def horizon_speed(self, anchor: int, weather: np.ndarray) -> np.ndarray:
        """Speeds [H, N] at steps anchor+1..anchor+H had their weather been `weather` [H, 3],
        everything up to the anchor as simulated: the counterfactual of one forecast, without
        re-running the whole period."""
        weather = np.asarray(weather, dtype=np.float64)
        if not 0 <= anchor < anchor + len(weather) < len(self.timestamps):
            raise ValueError(f"steps {anchor + 1}..{anchor + len(weather)} are outside the simulated period")
        steps = slice(anchor + 1, anchor + 1 + len(weather))
        slowdown = self._slowdown_from(steps, weather, self._observed_slowdown()[anchor])
        return self._render(steps, slowdown)

    def counterfactual(self, start, end, *, temperature_c=None, wind_kmh=None,
                       precipitation_mm=None) -> TrafficDataset:
        """Re-run with the weather between `start` and `end` (inclusive timestamps) replaced;
        every random draw is the same, so the difference to `run()` is the weather's true effect,
        including the build-up, lingering and spreading it sets off."""
        weather = self.weather.copy()
        window = (self.timestamps >= pd.Timestamp(start)) & (self.timestamps <= pd.Timestamp(end))
        for col, value in enumerate((temperature_c, wind_kmh, precipitation_mm)):
            if value is not None:
                weather[window, col] = value
        return self.run(weather)

    def weather_forecast(self, anchors, horizon: int) -> np.ndarray:
        """The weather forecast issued at each anchor for its next `horizon` steps ([B, H, 3]):
        the simulated weather with errors that grow with lead time, as a forecaster would have had
        it. Rain comes a little early or late (timing error, sd 15 min per hour of lead) and
        stronger or weaker (log-intensity error, sd 0.25 per √hour of lead); temperature is off
        by sd 0.4 °C and wind by sd 1.5 km/h per √hour of lead. Deterministic per anchor."""
        lead_hours = np.arange(1, horizon + 1) / 4.0
        out = []
        for anchor in np.atleast_1d(np.asarray(anchors, dtype=np.int64)):
            rng = np.random.default_rng([self._forecast_seed, int(anchor)])
            steps = anchor + 1 + np.arange(horizon)
            shift = np.rint(rng.normal() * lead_hours).astype(np.int64)
            source = np.clip(steps + shift, 0, len(self.weather) - 1)
            walk = np.sqrt(lead_hours)
            precip = self.weather[source, 2] * np.exp(rng.normal() * 0.25 * walk)
            temperature = self.weather[np.minimum(steps, len(self.weather) - 1), 0] + rng.normal() * 0.4 * walk
            wind = self.weather[np.minimum(steps, len(self.weather) - 1), 1] + rng.normal() * 1.5 * walk
            out.append(np.stack([temperature, np.maximum(wind, 0.0), np.round(precip, 2)], axis=1))
        return np.stack(out).astype(np.float32)


def simulator_for(dataset: TrafficDataset) -> TrafficSimulator | None:
    """The simulator that generated `dataset`, built back from its provenance (seed, weeks) on its
    graph; None when the data did not come from the simulator or the rebuilt one does not
    reproduce its time steps and weather (another span, or data edited since; weather read back
    from CSV may differ in the last digits)."""
    provenance = dataset.provenance or {}
    if provenance.get("source") != "simulator" or dataset.weather is None:
        return None
    try:
        config = SimulationConfig(seed=int(provenance["seed"]), weeks=float(provenance["weeks"]))
    except (KeyError, TypeError, ValueError):
        return None
    if config.num_steps != dataset.num_steps:
        return None
    sim = TrafficSimulator(config, dataset.graph)
    if not sim.timestamps.equals(dataset.timestamps) or \
            not np.allclose(sim.weather, dataset.weather, atol=0.01):
        return None
    return sim


def weather_effects() -> dict[str, str]:
    """Each weather variable's true effect in the simulator, in words, from the constants above
    (so what the What-if page says is what the simulator does)."""
    rain = dict(RAIN_KNOTS)
    half = next(k for k in range(1, 20) if (1 - RECOVERY) ** k <= 0.5) * 15
    tail = next(k for k in range(1, 40) if (1 - RECOVERY) ** k <= 0.15) * 15
    return {
        "Precipitation": (f"slows traffic by about {100 * rain[0.5]:.0f}–{100 * rain[5.0]:.0f} % in light rain "
                          f"(0.5–5 mm/h) and {100 * rain[10.0]:.0f}–{100 * rain[40.0]:.0f} % in heavy rain "
                          f"(10–40 mm/h) on a road of average congestion; × {RAIN_FREE:g} on a free-flowing road, "
                          f"up to × {RAIN_FREE + RAIN_CONGESTED:g} on a jammed one (at most {100 * MAX_SLOWDOWN:g} %). "
                          f"The slowdown builds up ({100 * BUILD_UP:.0f} % of it in the first 15 min, "
                          f"{100 * (1 - (1 - BUILD_UP) ** 2):.0f} % within 30 min), lingers after the rain stops "
                          f"(half of it after {half} min, under 15 % left after {tail} min) and spreads to the roads "
                          "feeding a slowed one."),
        "Temperature": (f"none up to {HEAT_ONSET_C:g} °C; above it {100 * HEAT_PER_C:g} % slower per °C "
                        f"(at most {100 * HEAT_MAX:g} %), building up and fading like rain."),
        "Wind": (f"none up to {WIND_ONSET_KMH:g} km/h; above it {100 * WIND_PER_KMH:g} % slower per km/h "
                 f"(at most {100 * WIND_MAX:g} %), building up and fading like rain."),
    }


def weather_target(weather: np.ndarray, relative_speed: np.ndarray) -> np.ndarray:
    """The slowdown [T, N] each step's weather ([T, 3]) would settle at: rain by intensity,
    stronger on a road already congested (low speed relative to its free flow; see RAIN_FREE,
    RAIN_CONGESTED), plus heat above 33 °C and wind above 30 km/h (a few %)."""
    weather = np.asarray(weather, dtype=np.float64)
    knots_x, knots_y = zip(*RAIN_KNOTS)
    rain = np.interp(weather[:, 2], knots_x, knots_y)[:, None]
    congestion = np.clip(1.0 - relative_speed, 0.0, 1.0)
    heat = np.clip(HEAT_PER_C * (weather[:, 0] - HEAT_ONSET_C), 0.0, HEAT_MAX)[:, None]
    wind = np.clip(WIND_PER_KMH * (weather[:, 1] - WIND_ONSET_KMH), 0.0, WIND_MAX)[:, None]
    return np.clip(rain * (RAIN_FREE + RAIN_CONGESTED * congestion) + heat + wind, 0.0, MAX_SLOWDOWN)


def weather_response(target: np.ndarray, downstream: np.ndarray, state: np.ndarray) -> np.ndarray:
    """The slowdown [T, N] that follows `target` [T, N] from `state` [N]: it closes BUILD_UP of
    the gap per step while the target is above it and RECOVERY while below, and moves SPREAD
    of the way towards its downstream neighbours' slowdown (row-normalised `downstream`) of the
    step before. A convex combination per step, so it stays within the targets' range."""
    out = np.empty_like(target)
    for t in range(len(target)):
        rate = np.where(target[t] > state, BUILD_UP, RECOVERY)
        state = state + rate * (target[t] - state) + SPREAD * (downstream @ state - state)
        out[t] = state
    return out


def downstream_matrix(graph: RoadGraph) -> np.ndarray:
    """[N, N] row-normalised: row i averages over the nodes that i's out-edges lead to."""
    N = graph.num_nodes
    downstream = np.zeros((N, N))
    src, dst = graph.edge_index.numpy()
    downstream[src, dst] = 1.0
    return downstream / np.maximum(downstream.sum(1, keepdims=True), 1)


def _interp_profile(knots, hours) -> np.ndarray:
    x, y = zip(*knots)
    return np.interp(hours, x, y)


def simulated_weather(timestamps: pd.DatetimeIndex, rng, rain_per_day: float = 0.9,
             afternoon_share: float = 0.75) -> np.ndarray:
    """Temperature with a daily cycle, gusty wind, and afternoon-leaning rain events
    (`rain_per_day` on average, `afternoon_share` of them starting around 16 h)."""
    T = len(timestamps)
    hours = (timestamps.hour + timestamps.minute / 60).to_numpy()
    precip = np.zeros(T)
    day_count = int(np.ceil(T / STEPS_PER_DAY))
    for day in range(day_count):
        for _ in range(rng.poisson(rain_per_day)):
            # Start hour: mostly 13–19 h, sometimes at night or in the morning.
            hour = rng.normal(16.0, 2.2) if rng.random() < afternoon_share else rng.uniform(0, 24)
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


class Incident(NamedTuple):
    """One simulated incident at its own road: steps start..stop-1, speed × (1 − severity) there."""
    node: int
    start: int
    stop: int
    severity: float


def _incidents(graph: RoadGraph, T: int, rng) -> tuple[np.ndarray, list[Incident]]:
    """Multiplicative factor [T, N]: random incidents of 30–120 min whose slowdown reaches
    1–3 hops upstream, one step later per hop, weaker with distance; and the incidents' log."""
    factor = np.ones((T, graph.num_nodes))
    log = []
    upstream = {i: [] for i in range(graph.num_nodes)}
    src, dst = graph.edge_index.numpy()
    for s, d in zip(src, dst):
        upstream[int(d)].append(int(s))
    count = rng.poisson(T / STEPS_PER_DAY * 1.5)
    for _ in range(count):
        node, start = int(rng.integers(graph.num_nodes)), int(rng.integers(T))
        duration = int(rng.integers(2, 9))
        severity = rng.uniform(0.3, 0.6)
        log.append(Incident(node, start, min(start + duration, T), float(severity)))
        frontier, seen = [node], {node}
        for hop in range(int(rng.integers(1, 4)) + 1):
            hit = severity * 0.5 ** hop
            a, b = min(start + hop, T), min(start + hop + duration, T)
            for n in frontier:
                factor[a:b, n] = np.minimum(factor[a:b, n], 1.0 - hit)
            frontier = [u for n in frontier for u in upstream[n] if u not in seen]
            seen.update(frontier)
    return factor, log


def _missing(T: int, N: int, rng) -> np.ndarray:
    """Sensor gaps: scattered single readings plus a few multi-hour outages."""
    missing = rng.random((T, N)) < 0.004
    for _ in range(max(1, T // 600)):
        node, start = int(rng.integers(N)), int(rng.integers(T))
        missing[start:start + int(rng.integers(8, 33)), node] = True
    return missing
