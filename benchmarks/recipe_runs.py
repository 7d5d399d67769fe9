"""Runs from scratch over seeds for the benchmarks that compare a training choice
(`layout_comparison`, `history_length`: the specification's recipe, `train --specification`) or
check a recipe (`recipe_seeds`: the weather recipe). Each run is `python -m stmgt train` from scratch in its
own process, then calibrated (by the training) and scored on the comparison's test data; every
figure is read back from the run folder.

Resumable: in a kept folder (`--out`) a complete run is not trained again, and a cancelled,
failed or interrupted one carries on from its last finished epoch (`train --resume`). A
comparison longer than one sitting (hours on a CPU; a GPU session's time limit) is finished by
running the same command again; a run folder trained with other settings is refused in words.
`--so-far` trains nothing and scores the runs complete so far: a progress table, no decision.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.data.sources import load_dataset, parse_data_arg
from stmgt.evaluation.evaluate import evaluate
from stmgt.storage.runs import CONFIG, Run, kept_epoch
from stmgt.training.trainer import TRAINING_STATE, TrainConfig, device_name, resolve_device

HOURS = {"+15 min": 0, "+1 h": 3, "+3 h": 11}             # horizon steps reported one by one
FIGURES = ["val_mae", "test_mae", *(f"test_mae {name}" for name in HOURS), "test_crps", "coverage_80"]
RESUMABLE = ("cancelled", "failed", "interrupted")


@dataclass(frozen=True)
class Recipe:
    """One run: its folder name, training data (`--data`), seed and any further `train` options."""

    name: str
    data: str
    seed: int
    options: tuple[str, ...] = ()


def train_all(recipes: list[Recipe], out: Path, device: str, epochs: int, max_batches: int | None,
              jobs: int = 1) -> None:
    """Train (or finish) every recipe's run under `out`, `jobs` at a time (more than one pays on a
    GPU, which one run of this small model leaves mostly idle; on a CPU they share its cores).
    The `train` output goes to `out/NAME.log`."""
    _refuse_other_settings(recipes, out, epochs, max_batches)
    stopped = threading.Event()          # after a failure or Ctrl-C no further run starts

    def train(recipe: Recipe) -> None:
        if not stopped.is_set():
            try:
                _train(recipe, out, device, epochs, max_batches)
            except BaseException:
                stopped.set()
                raise

    with ThreadPoolExecutor(jobs) as pool:
        runs = [pool.submit(train, recipe) for recipe in recipes]
        try:
            for run in runs:
                run.result()
        except BaseException:
            stopped.set()
            raise


def _refuse_other_settings(recipes: list[Recipe], out: Path, epochs: int, max_batches: int | None) -> None:
    """Before anything trains: a kept run must be the one this command would train."""
    for recipe in recipes:
        run = Run(out / recipe.name)
        if not (run.path / CONFIG).is_file():
            continue
        train, data = run.config["train"], run.config["data"]
        if (data != parse_data_arg(recipe.data) or train["seed"] != recipe.seed or train["epochs"] != epochs
                or train.get("max_batches") != max_batches):
            sys.exit(f"error: {run.path} was trained with other settings (data {data}, seed {train['seed']}, "
                     f"{train['epochs']} epochs, max batches {train.get('max_batches')}); give a new --out "
                     "(nothing was trained)")
        if run.status.state == "running":
            sys.exit(f"error: {run.path} is being trained by another process ({run.status.describe()})")


def _train(recipe: Recipe, out: Path, device: str, epochs: int, max_batches: int | None) -> None:
    run = Run(out / recipe.name)
    if finished(run):
        return
    state = run.status.state if (run.path / CONFIG).is_file() else None
    if state in RESUMABLE and (run.path / TRAINING_STATE).is_file():
        command = ["--resume", str(run.path), "--device", device]   # the device may differ from the last sitting's
    else:   # --overwrite: a run stopped before its first epoch ended (train refuses folders not its own)
        command = ["--data", recipe.data, "--out", str(run.path), "--seed", str(recipe.seed),
                   "--epochs", str(epochs), "--device", device, *recipe.options,
                   *(["--max-batches", str(max_batches)] if max_batches else []),
                   *(["--overwrite"] if run.path.exists() else [])]
    log = out / f"{recipe.name}.log"
    with open(log, "a") as output:
        code = subprocess.call([sys.executable, "-m", "stmgt", "train", "--no-evaluate", *command],
                               stdout=output, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"error: training {recipe.name} stopped (exit status {code}); its output is in {log}. "
                         "Run the same command again to carry on from its last finished epoch.")


def finished(run: Run) -> bool:
    """Trained to its end (early stopping or the last epoch), so it can be scored."""
    return (run.path / CONFIG).is_file() and run.status.state in ("complete", "unrecorded")


def score_all(recipes: list[Recipe], out: Path, test_data: str, device: str,
              max_batches: int | None) -> tuple[list[dict], dict]:
    """Each run scored on the test split of `test_data` (the same windows for every run); -> their
    figures, with the recipe's name, data and seed, and the baselines' MAE on those windows."""
    spec = parse_data_arg(test_data)
    dataset = load_dataset(spec)
    figures = []
    for recipe in recipes:
        run = Run(out / recipe.name)
        metrics = evaluate(run, dataset, spec, device, max_batches=max_batches)
        history = run.history()
        best = kept_epoch(history)
        stmgt = metrics["models"]["stmgt"]
        figures.append({
            "run": recipe.name, "data": recipe.data, "seed": recipe.seed,
            "parameters": run.config["parameters"], "epochs_run": len(history), "best_epoch": int(best["epoch"]),
            "stopped": run.status.reason, "train_seconds": round(float(history["seconds"].sum()), 1),
            "val_mae": round(float(best["val_mae"]), 4),
            "test_mae": round(float(np.mean(stmgt["mae"])), 4),
            **{f"test_mae {name}": round(stmgt["mae"][k], 4) for name, k in HOURS.items()},
            "test_crps": round(float(np.mean(stmgt["crps"])), 4),
            "coverage_80": round(stmgt["overall"]["coverage"]["80"], 4),
        })
    baselines = {name: {hour: round(metrics["models"][name]["mae"][k], 4) for hour, k in HOURS.items()}
                 for name in ("persistence", "historical_average")}
    return figures, baselines


def summarise(runs: list[dict], key: str, incumbent: str, challenger: str) -> dict:
    """Per value of `key` (e.g. the layout): the seed mean and spread (max − min) of each figure;
    and whether `challenger` beats `incumbent`: its mean test MAE lower by more than the larger
    seed-to-seed spread of the two, the noise a single seed would not see past."""
    groups = {}
    for value in dict.fromkeys(r[key] for r in runs):
        mine = [r for r in runs if r[key] == value]
        groups[value] = {f: {"mean": round(float(np.mean([r[f] for r in mine])), 4),
                             "spread": round(float(np.ptp([r[f] for r in mine])), 4)} for f in FIGURES}
    gain = groups[incumbent]["test_mae"]["mean"] - groups[challenger]["test_mae"]["mean"]
    noise = max(groups[value]["test_mae"]["spread"] for value in (incumbent, challenger))
    return {"groups": groups, "test_mae_gain": round(gain, 4), "seed_spread": noise,
            "challenger_wins": bool(gain > noise)}


def markdown(summary: dict, baselines: dict, label: str, seeds: dict[str, list[int]]) -> str:
    """The results table (benchmarks/RESULTS.md): one row per group, means ± half the seed range
    (`seeds`: each group's), baselines below."""
    head = f"| {label} | " + " | ".join(["validation MAE", "test MAE", *(f"test MAE {n}" for n in HOURS),
                                          "test CRPS", "80 % coverage"]) + " |"
    rows = [head, "|" + " --- |" * 8]
    for value, figures in summary["groups"].items():
        cells = [f"{v['mean']:.3f} ± {v['spread'] / 2:.3f}" for v in figures.values()]
        rows.append(f"| {value} | " + " | ".join(cells) + " |")
    for name, maes in baselines.items():
        rows.append(f"| {name.replace('_', ' ')} | | | " + " | ".join(f"{v:.3f}" for v in maes.values()) + " | | |")
    listed = {group: ", ".join(map(str, values)) for group, values in seeds.items()}
    over = (f"seeds {next(iter(listed.values()))}" if len(set(listed.values())) == 1
            else "; ".join(f"{group}: seeds {values}" for group, values in listed.items()))
    rows.append(f"\nMeans over {over} ± half the seed-to-seed range; the baselines read the same test windows.")
    return "\n".join(rows)


def comparison(name: str, doc: str, label: str, plan: Callable[[argparse.Namespace, int], list[tuple[str, Recipe]]],
               test_data: Callable[[argparse.Namespace], str], verdicts: tuple[str, str],
               more_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None) -> None:
    """A comparison benchmark's command line: `plan(args, seed)` gives each seed's runs as (group,
    recipe), the first group the incumbent and the second the challenger; every run is trained,
    scored on `test_data(args)`, and one JSON object printed with the decision (`verdicts`: what
    to do if the challenger wins, and if not) and the results table."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--max-batches", type=int, default=None, help="cap per phase, for a smoke test")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (pays on a GPU)")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the runs here; running again carries on from them (default: a temporary folder)")
    parser.add_argument("--so-far", action="store_true",
                        help="train nothing: score the runs in --out that are complete and name those still to "
                             "train (a progress table; the decision waits for every run)")
    more_options(parser)
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("give at least two seeds: their spread is the noise the choice is judged against")
    if args.so_far and args.out is None:
        parser.error("--so-far scores the runs kept in --out: give it")
    reuse_freed_memory()
    device = resolve_device(args.device)
    runs = [pair for seed in args.seeds for pair in plan(args, seed)]
    groups = list(dict.fromkeys(group for group, _ in runs))
    if len(groups) != 2:
        parser.error(f"a comparison needs two different choices, got {', '.join(groups)}")
    pending = [recipe.name for _, recipe in runs if args.so_far and not finished(Run(args.out / recipe.name))]
    runs = [(group, recipe) for group, recipe in runs if recipe.name not in pending]
    if missing := [group for group in groups if group not in {kept for kept, _ in runs}]:
        sys.exit(f"error: no complete run of {' or '.join(missing)} in {args.out} yet (still to train: "
                 f"{', '.join(pending)})")
    recipes, test = [recipe for _, recipe in runs], test_data(args)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        if args.so_far:
            _refuse_other_settings(recipes, out, args.epochs, args.max_batches)
        else:
            train_all(recipes, out, device.type, args.epochs, args.max_batches, args.jobs)
        figures, baselines = score_all(recipes, out, test, device, args.max_batches)
    for (group, _), run in zip(runs, figures):
        run[label] = group
    summary = summarise(figures, label, *groups)
    if pending:   # a spread over fewer seeds than planned decides nothing
        summary["challenger_wins"] = None
        decision = f"none yet: {len(pending)} runs still to train ({', '.join(pending)})"
    else:
        decision = verdicts[0] if summary["challenger_wins"] else verdicts[1]
    seeds = {group: [recipe.seed for g, recipe in runs if g == group] for group in groups}
    print(json.dumps({
        "benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": device_name(device),
        "torch": torch.__version__, "recipe": {"epochs": args.epochs, "max_batches": args.max_batches,
                                               "patience": TrainConfig.patience},
        "test_data": test, "runs_kept_in": None if args.out is None else str(args.out),
        "runs": figures, **summary, "still_to_train": pending, "decision": decision,
        "baselines_test_mae": baselines, "markdown": markdown(summary, baselines, label, seeds),
    }, indent=2))
