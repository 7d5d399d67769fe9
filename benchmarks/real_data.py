"""STMGT on real traffic against the three baselines (issue 31): import a data set given by path,
train with the default `train` (on imported data the small-data recipe, stmgt.training.recipe),
score the validation split, then the test split once, and print one JSON object per split and
horizon for STMGT, persistence, the historical average and the linear autoregression, with
STMGT's 80 % coverage, the training time, the kept epoch, the machine, the date and the load.

    .venv/bin/python benchmarks/real_data.py PATH [--format matrix|generic] [--start ISO] [--freq 5min]
        [--units kmh|mph] [--timezone TZ] [--config FILE.json] [--seed N] [--out DIR] [--validation-only]

A matrix folder holds one `*speed*.csv` (a header of sensor ids, one row per step), one `*adj*.csv`
(the headerless N × N adjacency) and optionally one `*location*.csv`; a generic folder is what
`stmgt import generic` reads. The import and the training are the command line's own (`stmgt
import`, `stmgt train --no-evaluate`, with `--config` laid over the recipe), the test scoring is
`stmgt evaluate`'s (metrics.json). Figures are in the data's units (`--units`).

`--validation-only` scores the validation split alone, which is what choices are made on; with
`--out` the imported data and the trained run are kept, and running again with the same `--out`
scores the kept run instead of training again (also one stopped with Ctrl-C after an epoch: its best
epoch so far, uncalibrated), so the test split is scored once, at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import torch

from stmgt.cli import main as stmgt
from stmgt.data.folder import PROVENANCE_FILE, read_folder
from stmgt.data.importers.common import MPH_TO_KMH
from stmgt.data.sources import parse_data_arg
from stmgt.errors import DataError
from stmgt.evaluation.evaluate import BASELINES, best_baseline_verdicts, evaluate, score_split
from stmgt.forecasting.forecast import Forecaster
from stmgt.storage.runs import CHECKPOINT, Run
from stmgt.training.trainer import device_name

MODELS = ("stmgt", *BASELINES)
MATRIX_FILES = {"speed": "*speed*.csv", "adjacency": "*adj*.csv", "locations": "*location*.csv"}
LEAD_AT_60_MIN = 0.05              # the target: 5 % below the best baseline at +60 min
COVERAGE_80 = (0.75, 0.85)         # and 80 % coverage within this band at every horizon


def matrix_files(folder: Path) -> dict[str, Path]:
    """The speed, adjacency and (optional) locations CSV of a matrix folder, by name."""
    found = {}
    for role, pattern in MATRIX_FILES.items():
        matches = sorted(folder.glob(pattern))
        if len(matches) > 1 or (not matches and role != "locations"):
            raise DataError(f"needs exactly one {pattern} file for the {role}, found "
                            f"{', '.join(m.name for m in matches) or 'none'}", str(folder))
        if matches:
            found[role] = matches[0]
    return found


def run_command(argv: list[str]) -> None:
    """One `stmgt` command, its output on stderr (stdout is this benchmark's JSON); a failure raises."""
    with redirect_stdout(sys.stderr):
        status = stmgt(argv)
    if status:
        raise SystemExit(f"stmgt {' '.join(argv[:2])} failed with status {status}")


def import_data(args, folder: Path) -> None:
    if (folder / PROVENANCE_FILE).is_file():
        return
    if args.format == "generic":
        argv = ["import", "generic", str(args.path)] + (["--timezone", args.timezone] if args.timezone else [])
    else:
        if not args.start:
            raise SystemExit("--start (the time of the first row) is needed for a matrix data set")
        files = matrix_files(args.path)
        argv = ["import", "matrix", str(files["speed"]), str(files["adjacency"]), "--start", args.start,
                "--freq", args.freq, "--units", args.units]
        argv += ["--locations", str(files["locations"])] if "locations" in files else []
        argv += ["--timezone", args.timezone] if args.timezone else []
    run_command(argv + ["--out", str(folder)])


KEPT = ("complete", "cancelled")      # a run in --out in one of these states is scored as it is


def train(args, data: Path, run: Path) -> float | None:
    """The default `train` on `data` into `run` -> wall-clock seconds; None, training nothing, when
    `run` holds a model already (complete, or cancelled after an epoch: the JSON says which)."""
    if (run / CHECKPOINT).is_file() and Run(run).status.state in KEPT:
        return None
    began = time.perf_counter()
    argv = ["train", "--data", str(data), "--out", str(run), "--overwrite", "--no-evaluate", "--seed", str(args.seed)]
    run_command(argv + (["--config", str(args.config)] if args.config else []))
    return time.perf_counter() - began


def figures(metrics: dict, per_kmh: float) -> dict:
    """Per horizon: each model's MAE and RMSE in the data's units, STMGT's 80 % coverage and CRPS,
    and the issue's targets met or not."""
    models = metrics["models"]
    out = {"horizon_minutes": metrics["horizon_minutes"], "windows": metrics["windows"]}
    for name in MODELS:
        out[name] = {"mae": [round(v / per_kmh, 3) for v in models[name]["mae"]],
                     "rmse": [round(v / per_kmh, 3) for v in models[name]["rmse"]]}
    out["stmgt"]["crps"] = [round(v / per_kmh, 3) for v in models["stmgt"]["crps"]]
    coverage = models["stmgt"]["coverage"]["80"]
    out["stmgt"]["coverage_80"] = [round(v, 3) for v in coverage]
    best = [min(models[name]["mae"][k] for name in BASELINES) for k in range(len(coverage))]
    ours = models["stmgt"]["mae"]
    hour = min(range(len(coverage)), key=lambda k: abs(metrics["horizon_minutes"][k] - 60))
    out["targets"] = {
        "mae_at_most_best_baseline": [bool(o <= b) for o, b in zip(ours, best)],
        "lead_at_60_min": round(1 - ours[hour] / best[hour], 4),
        "lead_at_60_min_met": bool(ours[hour] <= (1 - LEAD_AT_60_MIN) * best[hour]),
        "coverage_80_in_band": [bool(COVERAGE_80[0] <= c <= COVERAGE_80[1]) for c in coverage],
    }
    out["verdicts"] = best_baseline_verdicts(metrics)      # in km/h, as the Evaluation page says it
    return out


def training_summary(run: Run, seconds: float | None) -> dict:
    history = run.history()
    kept = int(history.loc[history["best"].astype(bool), "epoch"].iloc[-1])    # 0: the anchored start, persistence
    return {"run_state": run.status.describe(), "kept_epoch": kept, "epochs_run": int(history["epoch"].max()),
            "seconds_to_kept_epoch": round(float(history.loc[history["epoch"] <= kept, "seconds"].sum()), 1),
            "seconds_all_epochs": round(float(history["seconds"].sum()), 1),
            "seconds_train_command": None if seconds is None else round(seconds, 1),
            "val_mae_kmh_per_epoch": [round(v, 3) for v in history["val_mae"]],
            "parameters": run.config.get("parameters"), "model": run.config.get("model"),
            "train": run.config.get("train")}


def benchmark(args, work: Path) -> dict:
    data, run_path = work / "dataset", work / "run"
    import_data(args, data)
    seconds = train(args, data, run_path)
    dataset, run = read_folder(data), Run(run_path)
    per_kmh = MPH_TO_KMH if args.units == "mph" else 1.0
    forecaster = Forecaster(run.load(dataset.graph), dataset, "cpu")
    result = {"data": str(args.path), "units": "mph" if args.units == "mph" else "km/h",
              "nodes": dataset.num_nodes, "steps": dataset.num_steps,
              "cadence_min": dataset.freq.total_seconds() / 60, "training": training_summary(run, seconds),
              "validation": figures(score_split(forecaster, None, "val"), per_kmh)}
    if not args.validation_only:
        result["test"] = figures(evaluate(run, dataset, parse_data_arg(str(data))), per_kmh)
    result.update({
        "machine": {"platform": platform.platform(), "processor": device_name(torch.device("cpu")),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="the data set's folder")
    parser.add_argument("--format", choices=["matrix", "generic"], default="matrix")
    parser.add_argument("--start", help="matrix: the time of the first row, ISO 8601")
    parser.add_argument("--freq", default="5min", help="matrix: the cadence (default 5min)")
    parser.add_argument("--units", choices=["kmh", "mph"], default="kmh", help="matrix: the speeds' units")
    parser.add_argument("--timezone", help="IANA time zone of timestamps without a UTC offset")
    parser.add_argument("--config", type=Path, metavar="FILE.json",
                        help="settings laid over the default recipe, as `stmgt train --config` takes them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the imported data and the run here (default: a temporary "
                                                 "folder); a run completed there is scored, not trained again")
    parser.add_argument("--validation-only", action="store_true", help="score the validation split only")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result = benchmark(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="real_data_") as work:
            result = benchmark(args, Path(work))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    try:
        main()
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from exc
