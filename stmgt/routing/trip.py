"""A trip question answered: "leaving A for B at 17:30, when will I get there, and how sure is that?"

The fastest and the shortest route, each with a Monte Carlo travel-time distribution drawn through
the forecast mixtures and the error copula (both routes from the same joint draws, so they compare
draw by draw), the historical-average travel time and, on simulated data, the true one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stmgt.evaluation.baselines import HistoricalAverage
from stmgt.routing.copula import ErrorCopula, mixture_draws, saved_copula
from stmgt.data.dataset import TrafficDataset
from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecast, Forecaster
from stmgt.limits import LIMITS, check_memory, memory_budget
from stmgt.routing.network import RoadNetwork, Route, TravelTime, segments_table

SAMPLES = 2000
# float64 arrays of [samples, H, nodes on the routes] that drawing holds at once (the copula's
# noise and its two products, then the quantile table lookup's positions, indices and bounds).
DRAW_ARRAYS = 10
REFERENCE_STEPS = 48    # the historical and true speeds a trip may use: 12 h at 15 min, far above any trip


@dataclass(frozen=True, eq=False)
class RouteAnswer:
    route: Route
    length_m: float
    travel: TravelTime
    segments: pd.DataFrame          # driven on the expected speeds
    historical_min: float
    true_min: float | None


@dataclass(frozen=True, eq=False)
class Trip:
    anchor_time: pd.Timestamp       # when the forecast was made
    depart: pd.Timestamp
    deadline: pd.Timestamp | None
    fastest: RouteAnswer
    shortest: RouteAnswer

    @property
    def p_on_time(self) -> float | None:
        """P(arriving by the deadline) on the fastest route."""
        return self.on_time(self.fastest)

    def on_time(self, answer: RouteAnswer) -> float | None:
        """P(arriving by the deadline) on one of the trip's routes; None without a deadline."""
        if self.deadline is None:
            return None
        return answer.travel.p_on_time((self.deadline - self.depart) / pd.Timedelta(minutes=1))

    def summary(self) -> dict:
        """The JSON answer of `python -m stmgt route`."""
        def times(answer: RouteAnswer) -> dict:
            t = answer.travel
            return {"path": answer.route.nodes, "length_m": round(answer.length_m, 1),
                    "p10_min": round(t.p10, 2), "p50_min": round(t.p50, 2), "p90_min": round(t.p90, 2),
                    "mean_min": round(t.mean, 2), "historical_min": round(answer.historical_min, 2),
                    "true_min": None if answer.true_min is None else round(answer.true_min, 2),
                    "p_on_time": None if self.deadline is None else round(self.on_time(answer), 4)}

        segments = self.fastest.segments.assign(entry_time=[t.isoformat() for t in self.fastest.segments.entry_time])
        return {**times(self.fastest), "depart": self.depart.isoformat(),
                "deadline": None if self.deadline is None else self.deadline.isoformat(),
                "forecast_made_at": self.anchor_time.isoformat(), "samples": len(self.fastest.travel.samples),
                "segments": segments.round(2).to_dict("records"), "shortest": times(self.shortest)}


def check_request(network: RoadNetwork, origin: str, destination: str, depart: pd.Timestamp,
                  deadline: pd.Timestamp | None, options=("origin", "destination")) -> None:
    """What a trip needs no model for, so a caller can refuse it before loading one: known,
    distinct and connected nodes (`options` name them in messages) and a deadline after departure."""
    for node_id, option in zip((origin, destination), options):
        network.check_node(node_id, option)
    if origin == destination:
        raise DataError(f"origin and destination are the same node ({origin}); give two different nodes",
                        "/".join(options))
    network.shortest(origin, destination)          # unreachable: a DataError in words
    if deadline is not None and deadline <= depart:
        raise DataError(f"the deadline {deadline.isoformat()} is not after the departure {depart.isoformat()}")


def actual_speeds(dataset: TrafficDataset) -> np.ndarray | None:
    """The speeds a trip is truly driven through: on simulated data the simulator's own, without
    the sensor gaps of the dataset; None for other data, whose gaps would have to be guessed."""
    sim = simulator_for(dataset)
    if sim is None:
        return None
    speed = TrafficSimulator(replace(sim.config, missing=False), dataset.graph).run().speed
    observed = dataset.mask
    if speed.shape != dataset.speed.shape or not np.allclose(speed[observed], dataset.speed[observed]):
        return None             # not this simulator's output after all
    return speed


class TripPlanner:
    """Answers trips for one dataset: the network, the error copula, the historical average over
    the training split and (simulated data) the actual speeds."""

    def __init__(self, dataset: TrafficDataset, copula: ErrorCopula, actual: np.ndarray | None = None):
        self.dataset, self.copula, self.actual = dataset, copula, actual
        self.network = RoadNetwork(dataset.graph)
        self.historical = HistoricalAverage(dataset, dataset.splits()["train"])
        self.step_min = dataset.freq / pd.Timedelta(minutes=1)

    @classmethod
    def for_forecaster(cls, forecaster: Forecaster, run_dir: Path | None = None) -> TripPlanner:
        """With the model's `run_dir`, the error copula saved there is used (estimated and saved
        on first use); without, it is estimated now."""
        dataset = forecaster.dataset
        copula = ErrorCopula.estimate(forecaster) if run_dir is None else saved_copula(forecaster, run_dir)
        return cls(dataset, copula, actual_speeds(dataset))

    def plan(self, forecast: Forecast, origin: str, destination: str, depart, deadline=None,
             samples: int = SAMPLES, seed: int = 0, copula: ErrorCopula | None = None) -> Trip:
        """The trip leaving at `depart` (within the horizon of `forecast`, a one-anchor forecast)."""
        LIMITS["samples"].check(samples)
        anchor_time = forecast.anchor_times[0]
        depart, deadline = pd.Timestamp(depart), None if deadline is None else pd.Timestamp(deadline)
        depart_min = (depart - anchor_time) / pd.Timedelta(minutes=1)
        if not 0 <= depart_min < forecast.horizon * self.step_min:
            last = forecast.target_times(0)[-1] - forecast.freq
            raise DataError(f"departure {depart.isoformat()} is outside the forecast made at "
                            f"{anchor_time.isoformat()} (depart between then and {last.isoformat()})")
        check_request(self.network, origin, destination, depart, deadline)

        expected = forecast.mean()[0]                                                # [H, N]
        fastest = self.network.fastest(origin, destination, expected, depart_min, self.step_min)
        shortest = self.network.shortest(origin, destination)
        draws = self._draws(forecast, np.concatenate([fastest.edges, shortest.edges]), samples, seed,
                            copula or self.copula)
        anchor = self.dataset.timestamps.get_loc(anchor_time)
        steps = anchor + np.arange(1, REFERENCE_STEPS + 1)
        historical = self.historical.predict(torch.from_numpy(steps)[None]).numpy()
        known = steps[steps < (0 if self.actual is None else len(self.actual))]
        truth = self.actual[known][None] if len(known) else None
        answers = [self._answer(route, expected, draws, historical, truth, depart_min, anchor_time)
                   for route in (fastest, shortest)]
        return Trip(anchor_time, depart, deadline, *answers)

    def _draws(self, forecast: Forecast, edges: np.ndarray, samples: int, seed: int,
               copula: ErrorCopula) -> np.ndarray:
        """Joint speed draws [samples, H, N] at the nodes the routes touch (other columns 0)."""
        nodes = np.unique(np.concatenate([self.network.source[edges], self.network.target[edges]]))
        need = 8 * samples * forecast.horizon * (self.dataset.num_nodes + DRAW_ARRAYS * len(nodes))
        check_memory(need, memory_budget(), f"{samples:,} samples of the trip ({forecast.horizon} steps × "
                     f"{self.dataset.num_nodes} nodes, {len(nodes)} of them on the routes)", "ask for fewer samples")
        z = copula.sample(nodes, samples, np.random.default_rng(seed))
        draws = np.zeros((samples, forecast.horizon, self.dataset.num_nodes))
        draws[:, :, nodes] = mixture_draws(forecast.mixture[0][:, torch.from_numpy(nodes)], z)
        return draws

    def _answer(self, route: Route, expected, draws, historical, truth, depart_min, anchor_time) -> RouteAnswer:
        drive = self.network.drive
        sampled = drive(route, draws, depart_min, self.step_min)[:, -1] - depart_min
        planned = drive(route, expected[None], depart_min, self.step_min)[0]
        historical_min = float(drive(route, historical, depart_min, self.step_min)[0, -1] - depart_min)
        true_min = None
        if truth is not None:
            arrival = drive(route, truth, depart_min, self.step_min)[0, -1]
            # Only when the trip ends within the actual speeds there are: past them the last would stand in.
            if np.rint(arrival / self.step_min) <= truth.shape[1]:
                true_min = float(arrival - depart_min)
        return RouteAnswer(route, float(self.network.length_m[route.edges].sum()), TravelTime(sampled),
                           segments_table(self.network, route, planned, anchor_time), historical_min, true_min)
