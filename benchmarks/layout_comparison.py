"""Which GATv2 head layout should be the default? The specification's recipe (AdamW, cosine
restarts, early stopping on validation MAE, up to 100 epochs) for `mean` (96-wide averaged heads,
the default) and `concat` (the specification's own code), on the same seeds and the embedded data;
each run calibrated and scored on the test split with the realistic weather forecast, as the
README's headline. `mean` stays the default only if its test MAE, averaged over seeds, beats
concat's by more than the larger seed-to-seed spread (issue 9, item 4). Prints one JSON object
with a Markdown table for the README.

    PYTHONPATH=. .venv/bin/python benchmarks/layout_comparison.py [--seeds 0 1 2] [--device cuda] [--out DIR]

Six runs to convergence take hours on a 2-core CPU; `--epochs 1 --max-batches 2` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.data.sources import load_dataset
from stmgt.evaluate import evaluate
from stmgt.model import STMGTConfig
from stmgt.runs import Run
from stmgt.train import TrainConfig, fit, resolve_device

LAYOUTS = ("mean", "concat")
DATA = {"kind": "simulator", "seed": 0, "weeks": 8}       # the embedded data
HOURS = {"+15 min": 0, "+1 h": 3, "+3 h": 11}             # horizon steps reported one by one


def one_run(data, layout: str, seed: int, device: str, out: Path, epochs: int, max_batches: int | None) -> dict:
    """Train, calibrate and score one layout and seed; -> its figures."""
    run_dir = out / f"{layout}-seed{seed}"
    train = TrainConfig(seed=seed, device=device, epochs=epochs, max_batches=max_batches)
    result = fit(data, STMGTConfig(gat_layout=layout), train, run_dir, DATA)
    stmgt = evaluate(Run(run_dir), data, DATA, device, max_batches=max_batches)["models"]["stmgt"]
    return {"layout": layout, "seed": seed, "parameters": result.model.count_parameters(),
            "epochs_run": len(result.history), "best_epoch": result.best_epoch, "stopped": result.stopped,
            "train_seconds": round(float(result.history["seconds"].sum()), 1),
            "val_mae": round(result.best_val_mae, 4),
            "test_mae": round(float(np.mean(stmgt["mae"])), 4),
            **{f"test_mae {name}": round(stmgt["mae"][k], 4) for name, k in HOURS.items()},
            "test_crps": round(float(np.mean(stmgt["crps"])), 4),
            "coverage_80": round(stmgt["overall"]["coverage"]["80"], 4)}


def summarise(runs: list[dict]) -> dict:
    """Per layout: the seed mean and spread (max − min) of each score, and the decision."""
    figures = ["val_mae", "test_mae", *(f"test_mae {name}" for name in HOURS), "test_crps", "coverage_80"]
    layouts = {}
    for layout in LAYOUTS:
        mine = [r for r in runs if r["layout"] == layout]
        layouts[layout] = {f: {"mean": round(float(np.mean([r[f] for r in mine])), 4),
                               "spread": round(float(np.ptp([r[f] for r in mine])), 4)} for f in figures}
    gain = layouts["concat"]["test_mae"]["mean"] - layouts["mean"]["test_mae"]["mean"]
    noise = max(layouts[layout]["test_mae"]["spread"] for layout in LAYOUTS)
    return {"layouts": layouts, "mean_minus_concat_test_mae": round(-gain, 4), "seed_spread": noise,
            "keep_mean_as_default": bool(gain > noise)}


def markdown(summary: dict, seeds: list[int]) -> str:
    head = "| layout | " + " | ".join(["validation MAE", "test MAE", *(f"test MAE {n}" for n in HOURS),
                                        "test CRPS", "80 % coverage"]) + " |"
    rows = [head, "|" + " --- |" * 8]
    for layout, figures in summary["layouts"].items():
        cells = [f"{v['mean']:.3f} ± {v['spread'] / 2:.3f}" for v in figures.values()]
        rows.append(f"| `{layout}` | " + " | ".join(cells) + " |")
    rows.append(f"\nMeans over seeds {', '.join(map(str, seeds))} ± half the seed-to-seed range.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--max-batches", type=int, default=None, help="cap per phase, for a smoke test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("give at least two seeds: their spread is the noise the layouts are judged against")
    if args.out is not None:
        taken = [f"{layout}-seed{seed}" for seed in args.seeds for layout in LAYOUTS
                 if (args.out / f"{layout}-seed{seed}").exists()]
        if taken:
            parser.error(f"{args.out} already holds {', '.join(taken)}; give a new folder (nothing was written)")
    reuse_freed_memory()
    device = resolve_device(args.device)
    data = load_dataset(DATA)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        runs = [one_run(data, layout, seed, device.type, out, args.epochs, args.max_batches)
                for seed in args.seeds for layout in LAYOUTS]
    summary = summarise(runs)
    print(json.dumps({
        "benchmark": "layout_comparison", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": (torch.cuda.get_device_name(device) if device.type == "cuda"
                    else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"),
        "torch": torch.__version__, "recipe": {"epochs": args.epochs, "max_batches": args.max_batches,
                                               "patience": TrainConfig.patience},
        "runs_kept_in": None if args.out is None else str(args.out), "runs": runs, **summary,
        "markdown": markdown(summary, args.seeds),
    }, indent=2))


if __name__ == "__main__":
    main()
