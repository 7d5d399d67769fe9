"""Batch-1 forecast latency: one anchor, all nodes, 12 steps, the five quantiles and the
diagnostics (gate α, GATv2, temporal and weather attention) — what a dashboard scrub computes —
with the bundled model on each GATv2 path (`table` is what `auto` takes for a forecast on a CPU),
taking turns in one process. Prints one JSON object.

    .venv/bin/python benchmarks/forecast_speed.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from datetime import datetime, timezone

import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.data.simulate import simulate
from stmgt.forecasting.forecast import QUANTILE_LEVELS, Forecaster
from stmgt.model import STMGT
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.training.trainer import device_name


def forecaster_on(path: str, loaded, data) -> Forecaster:
    """The bundled model with its GATv2 run on `path` (same weights)."""
    model = STMGT(replace(loaded.config, gat_path=path))
    model.load_state_dict(loaded.model.state_dict())
    return Forecaster(replace(loaded, model=model.eval(), config=model.config), data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    reuse_freed_memory()
    data = simulate()
    loaded = Run(BUNDLED_RUN).load(data.graph)
    forecasters = {path: forecaster_on(path, loaded, data) for path in ("table", "dense", "pyg")}
    anchors = forecasters["table"].test_anchors()
    timings = {name: {"forward_ms": [], "quantiles_ms": []} for name in forecasters}
    for i in range(args.repeats + 3):
        anchor = [int(anchors[(17 * i) % len(anchors)])]
        for name, forecaster in forecasters.items():
            start = time.perf_counter()
            forecast = forecaster.forecast(anchor, diagnostics=True)
            middle = time.perf_counter()
            forecast.quantiles(QUANTILE_LEVELS)
            end = time.perf_counter()
            if i >= 3:                                   # the first calls warm caches and the allocator
                timings[name]["forward_ms"].append(1000 * (middle - start))
                timings[name]["quantiles_ms"].append(1000 * (end - middle))
    result = {"benchmark": "forecast_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": device_name(torch.device("cpu")),
              "torch": torch.__version__, "repeats": args.repeats, "quantile_levels": list(QUANTILE_LEVELS)}
    for name, t in timings.items():
        total = [f + q for f, q in zip(t["forward_ms"], t["quantiles_ms"])]
        result[f"{name}_path"] = {"forecast_with_diagnostics_ms": statistics.median(t["forward_ms"]),
                                  "quantiles_ms": statistics.median(t["quantiles_ms"]),
                                  "total_ms": statistics.median(total)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
