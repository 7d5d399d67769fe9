"""What-if fidelity of a run on the simulator's data (issue 10's targets): for constant rain of
2/5/10/20/30 mm/h, one-hour 20 mm/h rain events starting at steps 1/4/7/9, heat +3 °C and wind
+15 km/h, at evenly spaced test anchors, per horizon step: the mean true change (the simulator
re-run with every other random draw unchanged), the mean model change (scenario − observed-weather
forecast median) and the MAE of the change per node and network-wide, with pass/fail per target.
Prints one JSON object and saves it as `whatif_fidelity.json` in the run folder, where the
Evaluation page shows it.

    .venv/bin/python benchmarks/whatif_fidelity.py [--run assets/model] [--anchors 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone

import torch

from stmgt.evaluation import fidelity
from stmgt.data.simulate import simulator_for
from stmgt.data.sources import load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.training.trainer import device_name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(BUNDLED_RUN))
    parser.add_argument("--anchors", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    run = Run.open(args.run)
    dataset = load_dataset(run.config["data"])
    sim = simulator_for(dataset)
    if sim is None or not run.config.get("model", {}).get("use_weather"):
        print(f"error: {args.run} was not trained with weather on the simulator's data; nothing to compare",
              file=sys.stderr)
        return 2
    forecaster = Forecaster(run.load(dataset.graph, args.device), dataset, args.device)
    started = time.perf_counter()
    result = fidelity.measure(forecaster, sim, args.anchors)
    result.update({"run": run.name, "data": run.config["data"], "device": args.device,
                   "machine": f"{platform.node()} · {device_name(torch.device('cpu'))}",
                   "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "seconds": round(time.perf_counter() - started, 1)})
    result["artifact"] = str(fidelity.save(run.path, result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
