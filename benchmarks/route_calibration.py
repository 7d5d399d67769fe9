"""Route travel-time calibration and answer latency with the bundled model on the embedded data
(targets: 80 % interval coverage 0.75–0.85 with the dependent sampler; P50 MAE at least 15 % below
the historical-average travel time's; a route answer in < 300 ms). Prints one JSON object.

Trips are random (forecast time in the test split, departure 0–75 min after it, origin and
destination distinct nodes); each is answered by the dependent sampler (the error copula estimated
from training residuals) and by independent draws, from the same forecast and the same seed, and
scored against the true travel time driven through the simulator's speeds. Latency is
`TripPlanner.plan` alone (fastest and shortest route, 2,000 joint draws, historical and true times)
with the forecast already computed, as the Route page calls it.

    .venv/bin/python benchmarks/route_calibration.py [--trips 720] [--seed 0]

720 trips because a coverage figure from n trips is uncertain by ±sqrt(0.16 / n): ±0.026 at 240,
as wide as a third of the target band (240 trips gave 0.863, 0.838 and 0.812 for seeds 0–2 of
one model), ±0.015 at 720 (~50 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.routing.copula import ErrorCopula
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.routing.trip import SAMPLES, TripPlanner
from stmgt.training.trainer import device_name

MAX_DEPART_STEPS = 6        # departures 0, 15, …, 75 min after the forecast was made
LATENCY_REPEATS = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=720)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reuse_freed_memory()
    dataset = load_dataset(EMBEDDED)
    forecaster = Forecaster(Run(BUNDLED_RUN).load(dataset.graph), dataset)
    started = time.perf_counter()
    planner = TripPlanner.for_forecaster(forecaster)
    estimate_s = time.perf_counter() - started
    independent = ErrorCopula.independent(dataset.num_nodes, forecaster.horizon)

    rng = np.random.default_rng(args.seed)
    anchors = rng.choice(forecaster.test_anchors(), args.trips, replace=False)
    rows, latency_ms = [], []
    for i, anchor in enumerate(anchors):
        origin, destination = rng.choice(dataset.graph.node_ids, 2, replace=False)
        forecast = forecaster.forecast(anchor)
        depart = forecast.anchor_times[0] + int(rng.integers(MAX_DEPART_STEPS)) * dataset.freq
        started = time.perf_counter()
        trip = planner.plan(forecast, origin, destination, depart, seed=i)
        if i < LATENCY_REPEATS:
            latency_ms.append(1000 * (time.perf_counter() - started))
        alone = planner.plan(forecast, origin, destination, depart, seed=i, copula=independent).fastest.travel
        answer = trip.fastest
        rows.append((answer.true_min, answer.travel.p10, answer.travel.p50, answer.travel.p90,
                     alone.p10, alone.p90, answer.historical_min, len(answer.route.edges)))
    truth, p10, p50, p90, alone10, alone90, historical, segments = np.array(rows, dtype=float).T

    mae_p50, mae_historical = np.abs(p50 - truth).mean(), np.abs(historical - truth).mean()
    print(json.dumps({
        "trips": len(rows),
        "data": "embedded simulator, seed 0, 8 weeks (test split)", "model": "assets/model",
        "coverage80_dependent": round(float(((p10 <= truth) & (truth <= p90)).mean()), 3),
        "coverage80_independent": round(float(((alone10 <= truth) & (truth <= alone90)).mean()), 3),
        "width80_dependent_min": round(float((p90 - p10).mean()), 3),
        "width80_independent_min": round(float((alone90 - alone10).mean()), 3),
        "mae_p50_min": round(float(mae_p50), 3),
        "mae_historical_min": round(float(mae_historical), 3),
        "mae_p50_vs_historical": round(float(mae_p50 / mae_historical - 1), 3),
        "mean_true_min": round(float(truth.mean()), 2), "mean_segments": round(float(segments.mean()), 1),
        "samples": SAMPLES,
        "route_answer_ms": {"median": round(float(np.median(latency_ms)), 1),
                            "p90": round(float(np.percentile(latency_ms, 90)), 1), "n": len(latency_ms)},
        "copula_estimate_s": round(estimate_s, 1),
        "machine": {"platform": platform.platform(), "processor": device_name(torch.device("cpu")),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2))


if __name__ == "__main__":
    main()
