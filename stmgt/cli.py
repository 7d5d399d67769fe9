"""`stmgt ...` (or `python -m stmgt ...`): simulate, import, train, evaluate, forecast, whatif, route, monitor,
replay, ingest, runs.

Bad input ends with one line `error: ...` on stderr and exit status 2, never a traceback; no
command deletes or overwrites what it did not write (`stmgt.storage.outputs`)."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from contextlib import ExitStack, nullcontext, redirect_stdout
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from stmgt.training import distributed
from stmgt.allocator import reuse_freed_memory
from stmgt.data import importers
from stmgt.data.folder import DATASET, read_folder, write_folder
from stmgt.data.live import Replay, append_rows, newest_step, read_rows
from stmgt.data.importers.common import unobserved_note
from stmgt.data.simulate import SimulationConfig, TrafficSimulator, simulate, simulator_for
from stmgt.data.sources import MAX_WEEKS, describe, load_dataset, parse_data_arg
from stmgt.errors import DataError, reason
from stmgt.evaluation.evaluate import evaluate, versus_baselines
from stmgt.storage.exports import csv_bytes
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.alerts import (ALERT_COLUMNS, IncidentMonitor, Surprise, alerts_frame, corroborate,
                                     episodes, steps_between, surprise)
from stmgt.data.scenario import WeatherScenario
from stmgt.storage.jsonfile import atomic_write_bytes, json_text, read_json, write_json
from stmgt.limits import LIMITS
from stmgt.settings import MODEL, OPTIONS, SETTINGS, TRAIN
from stmgt.model import STMGTConfig
from stmgt.storage.lock import FolderLock
from stmgt.storage.outputs import (check_file_target, check_folder_target, locked_target, os_failure, remove_ours,
                           staged_folder)
from stmgt.routing.network import RoadNetwork
from stmgt.storage.runs import CHECKPOINT, CONFIG, RUN, Run, list_runs
from stmgt.training.lifecycle import NO_MODEL, train_and_score
from stmgt.training.recipe import default_sections
from stmgt.training.stopping import Stopped, stop_on_signals
from stmgt.training.trainer import TrainConfig, Trainer, fit, resolve_device
from stmgt.routing.trip import SAMPLES, TripPlanner, check_request
from stmgt.forecasting.what_if import changes_frame, model_change, true_change
from stmgt.storage.workspace import Workspace

DATA_HELP = "dataset: a folder in the generic format, or 'sim' for the embedded simulated HCMC data"
OVERWRITE_HELP = "replace --out if it is a {} this tool wrote (anything else is never replaced)"
TIMEZONE_HELP = "IANA time zone (e.g. Asia/Ho_Chi_Minh) of timestamps written without a UTC offset"
CONFIGURED = "default: the --config file's, else {}"
POLL_S = 2.0                  # monitor --follow: seconds between looks at the dataset's newest step
FORECAST_COLUMNS = "node_id,horizon_step,target_time,mean,"   # how a forecast CSV of ours begins
# The `train` options a resumed run refuses (it keeps its own settings): argparse name -> option.
RESUME_KEEPS = {"config": "--config", "init": "--init", "specification": "--specification",
                **{s.name: s.option for s in OPTIONS if s.name not in ("epochs", "device")}}


def _int_from(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


_positive_int, _seed = _int_from(1), _int_from(0)


def _limited(name: str):
    """An argparse type for a number in the table of limits: refused before any work, naming the limit."""
    limit = LIMITS[name]
    read = _int_from(limit.low) if limit.whole else _finite

    def parse(text: str) -> int | float:
        value = read(text)
        try:
            limit.check(value)
        except DataError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_rate(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _weeks(text: str) -> float:
    value = _finite(text)
    if not 0 < value <= MAX_WEEKS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_WEEKS}, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its complaint on one line like every other error (`--help` shows the usage)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stmgt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write the embedded simulator's data in the generic format")
    p.add_argument("--weeks", type=_weeks, default=8)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("dataset"))

    p = sub.add_parser("import", help="convert a dataset into the generic format")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("generic", help="a generic folder (speed.csv or speed.parquet, edges.csv or adjacency.csv)")
    k.add_argument("folder", type=Path)
    k.add_argument("--timezone", help=TIMEZONE_HELP)
    k = kinds.add_parser("matrix", help="T-GCN-style speed matrix + headerless adjacency")
    k.add_argument("speed", type=Path)
    k.add_argument("adjacency", type=Path)
    k.add_argument("--locations", type=Path)
    k.add_argument("--start", required=True, help="time of the first row, ISO 8601")
    k.add_argument("--freq", default="5min", help="cadence, e.g. 5min or 15min")
    k.add_argument("--units", choices=["kmh", "mph"], default="kmh")
    k.add_argument("--timezone", help="IANA time zone of --start when it has no UTC offset (default UTC)")
    k = kinds.add_parser("metr-la", help="METR-LA / PEMS-BAY: HDF5 speeds + adj_mx.pkl")
    k.add_argument("speed", type=Path)
    k.add_argument("adjacency", type=Path)
    k.add_argument("--locations", type=Path)
    k = kinds.add_parser("snapshots", help="the predecessor project's run_* collection folders")
    k.add_argument("runs", type=Path)
    k.add_argument("--freq", default="15min")
    k.add_argument("--max-gap", default="60min")
    for k in kinds.choices.values():
        k.add_argument("--out", required=True, type=Path)
        k.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("dataset"))

    p = sub.add_parser("train", help="train STMGT; writes a run folder and evaluates it")
    p.add_argument("--data", default="sim", help=DATA_HELP)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="run folder to create")
    target.add_argument("--resume", type=Path, metavar="RUN",
                        help="carry on a cancelled, failed or interrupted run from its last finished epoch, "
                             "with its own data and settings, on the device --device names (default auto); "
                             "--epochs N changes its total to N epochs (more than it has finished): the "
                             "learning-rate restarts and early stopping go on as in a run begun with N")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("run") +
                   "; the old run stays until the new one is complete")
    p.add_argument("--config", type=Path, metavar="FILE.json",
                   help='every model and training setting: {"model": {...}, "train": {...}} with the keys of a '
                        "run's config.json (a run's config.json itself will do); the options below override it")
    p.add_argument("--specification", action="store_true", default=None,
                   help="start a new model from the specification's plain recipe (§9.4) instead of the data's: "
                        "the weather recipe (assets/model/recipe.json) on the simulator's data with weather, "
                        "the small-data recipe on imported data")
    for setting in OPTIONS:
        p.add_argument(setting.option, dest=setting.name,
                       help=f"{setting.help} ({setting.span}; {CONFIGURED.format(setting.shown_default)})",
                       **({"choices": setting.choices} if setting.choices else {"type": _limited(setting.name)}))
    p.add_argument("--init", type=Path, metavar="RUN", help=SETTINGS["init_from"].help)
    p.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json")
    p.add_argument("--progress-json", action="store_true",
                   help="for a program following the training (the dashboard): one JSON object per line on "
                        "stdout for every batch, phase and epoch and for the end of training; the text goes "
                        "to stderr")

    p = sub.add_parser("evaluate", help="score a run against the baselines; writes metrics.json")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")

    p = sub.add_parser("forecast", help="forecast from a timestamp; writes a long-format CSV of quantiles")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--at", required=True, help="the last observed step, ISO 8601")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--precipitation", type=_finite, metavar="MM/H", help="what-if precipitation over the horizon")
    p.add_argument("--temperature", type=_finite, metavar="C", help="what-if temperature over the horizon")
    p.add_argument("--wind", type=_finite, metavar="KMH", help="what-if wind over the horizon")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("forecast CSV"))

    p = sub.add_parser("runs", help="list run folders with their status (complete, cancelled, failed, interrupted…)")
    p.add_argument("folder", nargs="?", type=Path, help="folder of runs (default: the workspace's runs)")

    p = sub.add_parser("whatif", help="the change a weather scenario makes to the forecast (and, on simulated "
                                      "data, the true change); writes a CSV")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--at", required=True, action="append", help="the last observed step, ISO 8601; repeatable")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--precipitation", type=float, metavar="MM/H", help="precipitation over the chosen steps")
    p.add_argument("--temperature", type=float, metavar="C", help="temperature over the chosen steps")
    p.add_argument("--wind", type=float, metavar="KMH", help="wind over the chosen steps")
    p.add_argument("--from-step", type=_positive_int, default=1, metavar="I", help="first horizon step changed")
    p.add_argument("--to-step", type=_positive_int, metavar="J", help="last horizon step changed (default: the last)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.csv")

    p = sub.add_parser("route", help="fastest route and its travel-time distribution; prints or writes JSON")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--from", dest="origin", required=True, metavar="NODE", help="origin node id")
    p.add_argument("--to", dest="destination", required=True, metavar="NODE", help="destination node id")
    p.add_argument("--depart", required=True, metavar="TIME",
                   help="departure, ISO 8601; the forecast is made at the last data step at or before it")
    p.add_argument("--deadline", metavar="TIME", help="arrival deadline, ISO 8601: adds p_on_time")
    p.add_argument("--samples", type=_limited("samples"), default=SAMPLES, help="Monte Carlo draws")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--out", type=Path, help="JSON file to write (default: print the JSON)")

    p = sub.add_parser("monitor", help="incident alerts: observed speeds far in the tail of the forecasts made for "
                                       "them, at a false-alarm rate calibrated on the validation split; writes a CSV")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--since", metavar="TIME", help="first step to watch, ISO 8601 (default: the test split's start)")
    p.add_argument("--until", metavar="TIME", help="last step to watch, ISO 8601 (default: the data's last step)")
    p.add_argument("--false-alarms-per-day", type=_positive_rate, default=1.0, metavar="R",
                   help="false alarms per day over the network the threshold allows (default 1)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("monitor CSV"))
    p.add_argument("--follow", action="store_true",
                   help="after writing the alerts so far, keep watching the dataset folder and rewrite --out as "
                        "steps arrive (a live dataset: see replay and ingest), until Ctrl-C")
    p.add_argument("--poll", type=_positive_rate, default=POLL_S, metavar="SECONDS",
                   help=f"with --follow: how often to look for new steps (default {POLL_S:g})")

    p = sub.add_parser("replay", help="a live feed to watch and test with: writes a recording's history up to its "
                                      "test split as a live dataset, then appends one step every 15 min / --speed")
    p.add_argument("--data", default="sim",
                   help="the recording: 'sim' or 'sim:seed=1,weeks=2' (simulated HCMC, with the simulator's incident "
                        "log beside the data as incidents.csv), or a dataset folder")
    p.add_argument("--into", required=True, type=Path, metavar="DIR", help="the live dataset folder to write")
    p.add_argument("--speed", type=_non_negative, default=60.0,
                   help="how many times faster than real time the steps arrive (default 60: a 15-minute step every "
                        "15 s); 0: as fast as they can be written")
    p.add_argument("--steps", type=_positive_int, metavar="N", help="stop after N steps (default: at the "
                                                                     "recording's end)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP.format("dataset").replace("--out", "--into"))

    p = sub.add_parser("ingest", help="append observations to a dataset folder, checked as an import is; the folder "
                                      "is replaced whole, so a reader never sees half of it")
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="a dataset folder this tool wrote")
    p.add_argument("--rows", required=True, type=Path, metavar="NEW.csv",
                   help="timestamp (ISO 8601 with offset), one km/h column per node_id (empty = no reading), and "
                        "temperature_c, wind_kmh, precipitation_mm when the dataset has weather; the steps that "
                        "follow the dataset's newest, on its cadence")
    return parser


def _run_data_spec(run: Run, data_arg: str | None) -> dict:
    """--data if given, else the data the run was trained on."""
    spec = parse_data_arg(data_arg) if data_arg else run.config.get("data")
    if not spec:
        raise DataError("the run does not record its data; pass --data", str(run.path))
    return spec


def _import(args) -> None:
    check_folder_target(args.out, DATASET, args.overwrite)
    if args.kind == "generic":
        result = importers.import_generic(args.folder, timezone=args.timezone)
    elif args.kind == "matrix":
        result = importers.import_matrix(args.speed, args.adjacency, start=args.start, freq=args.freq,
                                         units=args.units, locations_csv=args.locations, timezone=args.timezone)
    elif args.kind == "metr-la":
        result = importers.import_metr_la(args.speed, args.adjacency, locations_csv=args.locations)
    else:
        result = importers.import_snapshots(args.runs, freq=args.freq, max_gap=args.max_gap)
    for note in result.notes:
        print(f"note: {note}")
    write_folder(result.dataset, args.out, args.overwrite)
    d = result.dataset
    print(f"wrote {args.out}: {d.num_nodes} nodes, {d.graph.num_edges} edges, {d.num_steps} steps "
          f"every {d.freq / pd.Timedelta(minutes=1):g} min, weather {'present' if d.has_weather else 'absent'}")


def _train(args) -> None:
    """Under torchrun every process runs this; rank 0 alone checks and writes --out and prints."""
    configs = _configs(args)
    emit = _json_lines(sys.stdout) if args.progress_json else None
    device = resolve_device(configs[1].device if configs else args.device or "auto")
    with redirect_stdout(sys.stderr) if emit else nullcontext(), distributed.process_group(device) as device:
        _train_here(args, device, configs, emit)


def _configs(args, defaults: dict | None = None) -> tuple[STMGTConfig, TrainConfig] | None:
    """A new run's settings: `defaults` ({"model": {...}, "train": {...}}, the data's recipe), the
    --config file's over them, the options given on top; None for --resume, which carries on with
    the run's own."""
    if args.resume:
        fixed = [option for name, option in RESUME_KEEPS.items() if getattr(args, name) is not None]
        if fixed:
            raise DataError(f"a resumed run keeps its own settings (only --epochs and --device may change); "
                            f"leave {', '.join(fixed)} out", f"--resume {args.resume}")
        return None
    if args.init is not None and not (args.init / CHECKPOINT).is_file():
        raise DataError("not a run folder with a trained model (no checkpoint.pt)", f"--init {args.init}")
    sections = dict(zip((MODEL, TRAIN), ({}, {}) if args.config is None else _config_sections(args.config)))
    sections = {part: {**(defaults or {}).get(part, {}), **values} for part, values in sections.items()}
    for setting in OPTIONS:
        if getattr(args, setting.name) is not None:
            sections[setting.config] = {**sections[setting.config], setting.name: getattr(args, setting.name)}
    model, train = sections[MODEL], sections[TRAIN] | ({} if args.init is None else {"init_from": str(args.init)})
    try:
        return STMGTConfig.from_dict(model), TrainConfig.from_dict(train)
    except ValueError as exc:
        raise DataError(f"these settings cannot be trained: {exc}",
                        None if args.config is None else f"--config {args.config}") from exc


def _config_sections(path: Path) -> tuple[dict, dict]:
    """The "model" and "train" sections of a --config file; its other keys (a run's config.json
    has many) are not read, but a file with neither section is refused."""
    try:
        document = read_json(path)
    except DataError as exc:
        raise DataError(exc.problem, f"--config {path}") from exc
    sections = document.get("model", {}), document.get("train", {})
    if not {"model", "train"} & set(document) or not all(isinstance(s, dict) for s in sections):
        raise DataError('needs a "model" and/or a "train" object, e.g. {"train": {"epochs": 5}}', f"--config {path}")
    return sections


def _json_lines(stream):
    """--progress-json: `emit(event, record)` writes {"event": event, **record} as one line on
    `stream` and flushes it, so a parent process sees each batch as it ends. A value that is not a
    number (epoch 0's training loss: the model before any training step) is null, as JSON has no NaN."""
    def emit(event: str, record) -> None:
        fields = record if isinstance(record, dict) else asdict(record)
        fields = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}
        stream.write(json.dumps({"event": event, **fields}, allow_nan=False) + "\n")
        stream.flush()
    return emit


def _train_here(args, device, configs, emit) -> None:
    """Every check that needs no training (the folder, the data and its length, the settings, what
    a resume needs) comes before the run is marked running, so a refused run leaves nothing behind.
    SIGINT/SIGTERM stop
    the work after the current batch (`stmgt.training.stopping`) from when the data is loaded; before that
    there is nothing to keep, and under torchrun a rank that dies then lets the launcher end cleanly."""
    if args.resume:
        run_dir, spec, config, train_config = distributed.on_main(lambda: _resumable(args.resume, args.epochs))
        train_config = replace(train_config, device=device.type)   # a run may finish on another machine
        args.out = run_dir
    else:
        distributed.on_main(lambda: check_folder_target(args.out, RUN, args.overwrite))   # before any work
        spec = parse_data_arg(args.data)
        config, train_config = configs[0], replace(configs[1], device=device.type)
    dataset = load_dataset(spec)
    recipe = None
    if not args.resume and args.init is None:   # a new model starts from the data's recipe (stmgt.training.recipe)
        recipe = default_sections(spec, dataset, plain=bool(args.specification))
        config, train_config = _configs(args, recipe)
        train_config = replace(train_config, device=device.type)
        recipe = None if train_config.init_from else recipe        # a --config file's fine-tune: none
    with stop_on_signals() as cancel:
        _train_loaded(args, device, spec, dataset, config, train_config, recipe, emit, cancel)
    if cancel is not None and cancel.signum:
        raise Stopped(cancel.signum, f"stopped by {cancel.name} after the current batch; the run is marked "
                                     f"cancelled and `train --resume {args.out}` carries it on")


def _train_loaded(args, device, spec, dataset, config, train_config, recipe, emit, cancel) -> None:
    """Rank 0 holds the run folder's lock and runs the run's lifecycle (`stmgt.training.lifecycle`:
    train, score, record); other ranks train. `recipe`: what a new model's settings were laid over."""
    main = distributed.is_main()
    ranks = distributed.world_size()
    held = ExitStack()
    replacing = distributed.on_main(lambda: _hold(held, args))
    if not main:
        fit(dataset, config, train_config, cancel=cancel)
        return
    # A run replacing an old one trains beside it and takes its place only when complete.
    with held, staged_folder(args.out, RUN) if replacing else nullcontext(args.out) as run_dir:
        # The trainer checks the data's length and the settings before it writes anything.
        trainer = Trainer(dataset, config, train_config, run_dir=run_dir, data_spec=spec, cancel=cancel,
                          resume=bool(args.resume), recipe=recipe)
        print(f"training on {describe(spec)}: {dataset.num_nodes} nodes, {dataset.num_steps} steps; device {device}"
              + (f"; {ranks} processes, global batch {train_config.batch_size * ranks}" if ranks > 1 else ""))
        if emit:
            bar = None
            trainer.on_batch, trainer.on_epoch, trainer.on_phase = (partial(emit, event)
                                                                     for event in ("batch", "epoch", "phase"))
        else:
            bar = tqdm(unit="batch", dynamic_ncols=True)
            trainer.on_batch, trainer.on_epoch = partial(_bar_batch, bar), partial(_bar_epoch, bar)
        outcome = train_and_score(trainer, score=not args.no_evaluate, on_trained=partial(_trained, bar, emit),
                                  bars=emit is None)
        if outcome.metrics is not None:
            _print_metrics(outcome.metrics)
        if outcome.state == NO_MODEL:           # stopped before the first epoch ended: nothing kept
            if not replacing:                    # (a replacing run's staged folder goes with the exception)
                remove_ours(run_dir, RUN)
            if cancel is not None and cancel.signum:
                raise Stopped(cancel.signum, f"stopped by {cancel.name} before the first epoch ended; no run was kept")
            raise DataError("training stopped before the first epoch ended; no run was kept", f"--out {args.out}")


def _trained(bar, emit, result, scoring: bool) -> None:
    """Training ended: its summary line, and with --progress-json the event saying whether scoring follows."""
    if bar is not None:
        bar.close()
    print(f"{result.stopped.replace('_', ' ')}; best epoch {result.best_epoch}, val MAE "
          f"{result.best_val_mae:.3f} km/h; {result.model.count_parameters():,} parameters")
    if emit:
        emit("trained", {"stopped": result.stopped, "best_epoch": result.best_epoch, "scoring": scoring})


def _hold(held: ExitStack, args) -> bool:
    """Rank 0: take the run folder's lock into `held` and check the folder again under it (another
    writer may have finished with it meanwhile); -> whether an old run of ours is replaced."""
    with ExitStack() as stack:
        if args.resume:
            stack.enter_context(FolderLock(args.out, f"--resume {args.out}"))
            _resumable(args.out, args.epochs)
            replacing = False
        else:
            replacing = stack.enter_context(locked_target(args.out, RUN, args.overwrite))
        held.enter_context(stack.pop_all())
    return replacing


def _bar_batch(bar, p) -> None:
    if p.batch == 1:
        bar.reset(total=p.num_batches)
        bar.set_description(f"epoch {p.epoch}")
    bar.update()
    if p.loss is not None:
        bar.set_postfix(loss=f"{p.loss:.3f}")


def _bar_epoch(bar, r) -> None:
    whatif = "" if r.val_whatif_error is None else f"  what-if error {r.val_whatif_error:.3f} km/h"
    loss = "(before training)" if math.isnan(r.train_loss) else f"{r.train_loss:.4f}"
    bar.write(f"epoch {r.epoch:3d}  loss {loss}  val MAE {r.val_mae:.3f} km/h{whatif}  "
              f"{r.seconds:.1f}s{'  *best' if r.best else ''}")


def _resumable(path: Path, epochs: int | None = None) -> tuple[Path, dict, STMGTConfig, TrainConfig]:
    """The run folder, data spec and configs of a run that `train --resume` may carry on, its
    total changed to `epochs` when given (the trainer records it in config.json)."""
    run = Run(path)
    if not (run.path / CONFIG).is_file():
        raise DataError("not a run folder (no config.json)", f"--resume {path}")
    status = run.status
    if status.state not in ("cancelled", "failed", "interrupted"):
        raise DataError(f"only a cancelled, failed or interrupted run can be resumed; this one is "
                        f"{status.describe()}", f"--resume {path}")
    config = run.config
    try:
        resumed = (run.path, config["data"], STMGTConfig.from_dict(config["model"]),
                   TrainConfig.from_dict(config["train"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"its config.json is incomplete or from another version ({reason(exc)})",
                        f"--resume {path}") from exc
    if epochs is None:
        return resumed
    history = run.history()
    finished = int(history["epoch"].max()) if "epoch" in history and len(history) else 0
    if epochs <= finished:
        raise DataError(f"the run has already trained {finished} epochs, so --epochs {epochs} leaves nothing to "
                        f"do; give more than {finished}, or leave --epochs out to train to its own "
                        f"{resumed[3].epochs}", f"--resume {path}")
    return (*resumed[:3], replace(resumed[3], epochs=epochs))


def _print_metrics(metrics: dict) -> None:
    models = metrics["models"]
    minutes = metrics["horizon_minutes"]
    print(f"test split, {metrics['windows']} windows — MAE km/h (CRPS for STMGT)"
          + (f"; a quick look: {metrics['windows']} of its {metrics['windows_in_split']} windows, spread "
             "evenly" if metrics.get("quick_look") else ""))
    print("horizon   " + "  ".join(f"{m:>6d}m" for m in minutes[3::4]))
    for name, scores in models.items():
        print(f"{name:<18}" + "  ".join(f"{v:7.3f}" for v in scores["mae"][3::4]))
    print(f"{'stmgt crps':<18}" + "  ".join(f"{v:7.3f}" for v in models["stmgt"]["crps"][3::4]))
    print(f"80% interval coverage: {models['stmgt']['overall']['coverage']['80']:.3f}")
    if "stmgt_perfect_weather" in models:
        print(f"stmgt reads {metrics['weather_forecast']}; stmgt_perfect_weather the observed weather")
    print(versus_baselines(metrics))


def _scenario(args, **steps) -> WeatherScenario | None:
    """The --precipitation/--temperature/--wind values as a scenario; None if none is given."""
    if all(v is None for v in (args.precipitation, args.temperature, args.wind)):
        return None
    for name, value in (("precipitation", args.precipitation), ("wind", args.wind)):
        if value is not None and value < 0:
            raise DataError(f"--{name} must not be negative, got {value}")
    return WeatherScenario(temperature_c=args.temperature, wind_kmh=args.wind, precipitation_mm=args.precipitation,
                           **steps)


def _forecaster(args) -> Forecaster:
    run = Run.open(args.run)
    dataset = load_dataset(_run_data_spec(run, args.data))
    return Forecaster(run.load(dataset.graph), dataset)


def _forecast(args) -> None:
    check_file_target(args.out, args.overwrite, _begins_with(FORECAST_COLUMNS), "forecast CSV")
    forecaster = _forecaster(args)
    dataset = forecaster.dataset
    anchor = forecaster.anchor_at(args.at)
    scenario = _scenario(args)
    frame = forecaster.forecast(anchor, scenario).to_frame().drop(columns="anchor_time")
    frame["target_time"] = frame["target_time"].map(lambda t: t.isoformat())
    atomic_write_bytes(args.out, csv_bytes(frame, float_format="%.3f"))
    print(f"wrote {args.out}: {len(frame)} rows, {dataset.num_nodes} nodes × {forecaster.horizon} steps "
          f"after {dataset.timestamps[anchor].isoformat()}")
    if dataset.unobserved_nodes:
        print(f"warning: {unobserved_note(dataset.unobserved_nodes)}")


def _begins_with(header: str):
    """Whether a file is a CSV of ours, by the header it begins with (`check_file_target`'s test)."""
    def ours(path: Path) -> bool:
        with open(path, "rb") as f:
            return f.read(len(header)) == header.encode()
    return ours


def _list_runs(folder: Path | None) -> None:
    folder = folder or Workspace.default().runs_dir
    if not folder.is_dir():
        raise DataError("folder not found", str(folder))
    runs = list_runs(folder)
    if not runs:
        print(f"no runs in {folder}")
    for run in runs:
        print(f"{run.name:<32} {run.status.describe()}")


def _whatif(args) -> None:
    forecaster = _forecaster(args)
    horizon = forecaster.horizon
    last = horizon if args.to_step is None else args.to_step
    if not args.from_step <= last <= horizon:
        raise DataError(f"--from-step {args.from_step} --to-step {last} must satisfy 1 ≤ I ≤ J ≤ {horizon}")
    scenario = _scenario(args, first_step=args.from_step, last_step=last)
    if scenario is None:
        raise DataError("give at least one of --precipitation, --temperature, --wind")
    if not forecaster.loaded.config.use_weather:
        raise DataError("the run was trained without weather, so a weather what-if cannot change its forecast",
                        str(args.run))
    anchors = np.array([forecaster.anchor_at(at) for at in args.at])
    sim = simulator_for(forecaster.dataset)
    true = None if sim is None else true_change(sim, anchors, horizon, scenario)
    frame = changes_frame(forecaster, anchors, model_change(forecaster, anchors, scenario), true)
    atomic_write_bytes(args.out, csv_bytes(frame, float_format="%.3f"))
    note = "true_change from the simulator" if sim is not None else "no true_change (not the simulator's data)"
    print(f"wrote {args.out}: {len(frame)} rows, {len(anchors)} anchor(s) × {forecaster.dataset.num_nodes} nodes "
          f"× {horizon} steps; weather changed at steps {args.from_step}–{last}; {note}")


def _timestamp(text: str, option: str, tz) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise DataError(f"{text!r} is not a time (use ISO 8601, e.g. 2025-08-20T17:30+07:00)", option) from None
    return ts.tz_localize(tz) if ts.tz is None else ts.tz_convert(tz)


def _route(args) -> None:
    """Everything that needs no model is checked before the model loads and the error model is
    fitted (the slow part, most of a minute on a CPU, the first time only: it is saved in the run folder)."""
    run = Run.open(args.run)
    dataset = load_dataset(_run_data_spec(run, args.data))
    steps = dataset.timestamps
    depart = _timestamp(args.depart, "--depart", steps.tz)
    deadline = None if args.deadline is None else _timestamp(args.deadline, "--deadline", steps.tz)
    check_request(RoadNetwork(dataset.graph), args.origin, args.destination, depart, deadline, ("--from", "--to"))
    forecaster = Forecaster(run.load(dataset.graph), dataset)
    latest = steps[-1] + forecaster.horizon * dataset.freq
    if not steps[forecaster.seq_len - 1] <= depart < latest:
        raise DataError(f"{depart.isoformat()} is outside the data: departures run from "
                        f"{steps[forecaster.seq_len - 1].isoformat()} to before {latest.isoformat()}", "--depart")
    forecast = forecaster.forecast(forecaster.anchor_at(steps[steps.searchsorted(depart, side="right") - 1]))
    trip = TripPlanner.for_forecaster(forecaster, run.path).plan(forecast, args.origin, args.destination, depart,
                                                                 deadline, samples=args.samples)
    if args.out is None:
        print(json_text(trip.summary()), end="")
        return
    write_json(args.out, trip.summary())
    print(f"wrote {args.out}: {len(trip.fastest.route.nodes)} nodes, {trip.fastest.length_m / 1000:.2f} km, "
          f"P50 {trip.fastest.travel.p50:.1f} min (80 % interval {trip.fastest.travel.p10:.1f}–"
          f"{trip.fastest.travel.p90:.1f})")


def _monitor(args) -> None:
    check_file_target(args.out, args.overwrite, _begins_with(",".join(ALERT_COLUMNS)), "alerts CSV")
    run = Run.open(args.run)
    spec = _run_data_spec(run, args.data)
    if args.follow and spec["kind"] != "folder":
        raise DataError("watches a dataset folder that grows (stmgt replay and stmgt ingest write one); give it "
                        "with --data DIR", "--follow")
    if args.follow and args.until is not None:
        raise DataError("--follow watches until it is stopped, so --until does not apply", "--until")
    dataset = load_dataset(spec)
    tz = dataset.timestamps.tz
    since = None if args.since is None else _timestamp(args.since, "--since", tz)
    until = None if args.until is None else _timestamp(args.until, "--until", tz)
    loaded = run.load(dataset.graph)
    forecaster = Forecaster(loaded, dataset)
    if args.follow and since is None and not len(dataset.splits()["test"]):     # a live dataset just started
        first, last = dataset.num_steps, dataset.num_steps - 1
    else:
        first, last = steps_between(forecaster, since, until)          # refused before the calibration's work
    monitor = IncidentMonitor(forecaster, args.false_alarms_per_day)
    calibrated = (f"at {args.false_alarms_per_day:g} false alarm(s) per day (threshold {monitor.threshold:.2f}, "
                  f"calibrated on {monitor.calibration_days:.1f} validation days)")
    if not args.follow:
        frame = monitor.alerts(first, last)
        atomic_write_bytes(args.out, csv_bytes(frame))
        times = dataset.timestamps
        print(f"wrote {args.out}: {len(frame)} alert(s) over {times[first].isoformat()} … {times[last].isoformat()} "
              f"{calibrated}")
        return
    _follow(args, Path(spec["path"]), monitor, loaded, first, last, calibrated)


def _follow(args, folder: Path, monitor: IncidentMonitor, loaded, first: int, last: int, calibrated: str) -> None:
    """monitor --follow: score the steps that arrive, each once, and rewrite --out with every alert
    since `first` (one still open grows with its road's new steps); Ctrl-C ends it."""
    dataset = monitor.forecaster.dataset
    evidence = None if first > last else surprise(monitor.forecaster, first, last, monitor.batch_size)
    scored = _write_alerts(args.out, monitor, evidence, dataset)
    print(f"wrote {args.out}: {scored}, {calibrated}; following {folder} (Ctrl-C stops)", flush=True)
    with stop_on_signals() as stop:
        stop = stop or threading.Event()      # outside the main thread (a test) no signal reaches it anyway
        while not stop.wait(args.poll):
            newest = newest_step(folder)
            if newest is None or newest <= dataset.timestamps[-1]:
                continue
            grown = read_folder(folder)
            if not grown.timestamps[:dataset.num_steps].equals(dataset.timestamps):
                raise DataError("was replaced by another dataset while it was followed; start monitor again",
                                f"--data {folder}")
            start, dataset = last + 1, grown
            last = dataset.num_steps - 1
            more = surprise(Forecaster(loaded, dataset), start, last, monitor.batch_size)
            evidence = more if evidence is None else Surprise(*(np.concatenate([getattr(evidence, f), getattr(more, f)])
                                                                for f in ("steps", "tails", "observed", "expected")))
            print(f"{args.out}: {_write_alerts(args.out, monitor, evidence, dataset)}", flush=True)
    raise Stopped(stop.signum, f"stopped following {folder} by {stop.name}; {args.out} holds the alerts up to "
                               f"{dataset.timestamps[last].isoformat()}")


def _write_alerts(out: Path, monitor: IncidentMonitor, evidence: Surprise | None, dataset) -> str:
    """Write the alerts in `evidence` (none before a step arrives) atomically; -> what was written, in words."""
    if evidence is None:
        atomic_write_bytes(out, csv_bytes(pd.DataFrame(columns=ALERT_COLUMNS)))
        return f"no step to watch yet (the newest is {dataset.timestamps[-1].isoformat()})"
    score = corroborate(evidence.score(), monitor.neighbours)
    frame = alerts_frame(episodes(score, monitor.threshold), evidence, dataset)
    atomic_write_bytes(out, csv_bytes(frame))
    times = dataset.timestamps[evidence.steps[[0, -1]]]
    current = int((score[-1] > monitor.threshold).sum())
    return (f"{len(frame)} alert(s) over {times[0].isoformat()} … {times[1].isoformat()}, {current} still open "
            "at the newest step")


def _replay(args) -> None:
    spec = parse_data_arg(args.data)
    if spec["kind"] == "folder" and Path(spec["path"]) == args.into.resolve():
        raise DataError("is the recording itself; give another folder for the live dataset", f"--into {args.into}")
    check_folder_target(args.into, DATASET, args.overwrite, "--into")
    incidents = None
    if spec["kind"] == "simulator":
        sim = TrafficSimulator(SimulationConfig(seed=spec["seed"], weeks=spec["weeks"]))
        recording, incidents = sim.run(), sim.incident_log
    else:
        recording = load_dataset(spec)
    # Not the simulator's dataset: forecasts on it read the weather carried forward, as on any live feed.
    replay = Replay(recording, args.into, {"source": "replay", "replay_of": spec, "units": "km/h"}, incidents)
    history = replay.start(args.overwrite)
    count = min(args.steps or replay.remaining, replay.remaining)
    every = recording.freq.total_seconds() / args.speed if args.speed else 0.0
    print(f"wrote {args.into}: {history.num_steps} steps of history up to {history.timestamps[-1].isoformat()}; "
          f"replaying {count} step(s)" + (f", one every {every:g} s" if every else ", as fast as they can be written")
          + (f", incidents in {args.into / 'incidents.csv'}" if incidents is not None else ""), flush=True)
    began = time.monotonic()
    with stop_on_signals() as stop:
        stop = stop or threading.Event()
        for done in range(1, count + 1):
            if stop.wait(max(0.0, began + done * every - time.monotonic())):
                break
            at = replay.step()
            step = replay.next - 1
            line = f"{at.isoformat()}  step {done}/{count}: mean speed {np.nanmean(recording.speed[step]):.1f} km/h"
            if recording.weather is not None:
                line += f", precipitation {recording.weather[step, 2]:.1f} mm/h"
            if incidents is not None:
                line += f", {sum(i.start <= step < i.stop for i in incidents)} incident(s) under way"
            print(line, flush=True)
    if stop.is_set():
        raise Stopped(stop.signum, f"replay stopped by {stop.name} after {replay.next - history.num_steps} step(s); "
                                   f"{args.into} ends at {recording.timestamps[replay.next - 1].isoformat()}")


def _ingest(args) -> None:
    rows = read_rows(args.rows)
    count = append_rows(args.data, rows, where=str(args.rows))
    print(f"appended {count} step(s) to {args.data}; its newest step is now {newest_step(args.data).isoformat()}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    reuse_freed_memory()
    try:
        if args.command == "simulate":
            check_folder_target(args.out, DATASET, args.overwrite)
            dataset = simulate(weeks=args.weeks, seed=args.seed)
            write_folder(dataset, args.out, args.overwrite)
            print(f"wrote {args.out}: {dataset.num_nodes} nodes, {dataset.num_steps} steps "
                  f"({dataset.timestamps[0].isoformat()} … {dataset.timestamps[-1].isoformat()})")
        elif args.command == "import":
            _import(args)
        elif args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            run = Run.open(args.run)
            spec = _run_data_spec(run, args.data)
            with FolderLock(run.path, f"--run {args.run}"), stop_on_signals() as stop:   # it writes metrics.json
                metrics = evaluate(run, load_dataset(spec), spec, args.device, progress=True, cancel=stop)
            if metrics is None:
                raise Stopped(stop.signum, f"evaluation stopped by {stop.name}; metrics.json was not written")
            _print_metrics(metrics)
        elif args.command == "forecast":
            _forecast(args)
        elif args.command == "runs":
            _list_runs(args.folder)
        elif args.command == "whatif":
            _whatif(args)
        elif args.command == "route":
            _route(args)
        elif args.command == "monitor":
            _monitor(args)
        elif args.command == "replay":
            _replay(args)
        elif args.command == "ingest":
            _ingest(args)
    except DataError as exc:
        _error(str(exc))
        return 2
    except OSError as exc:        # disk full, permissions changed under us: still one line, naming the file
        _error(f"{exc.filename}: {os_failure(exc)}" if exc.filename else os_failure(exc))
        return 2
    except KeyboardInterrupt as exc:         # Ctrl-C, or a long command's stop signal (stmgt.training.stopping)
        _error(str(exc) or "interrupted")
        return 128 + getattr(exc, "signum", signal.SIGINT)
    return 0


def _error(text: str) -> None:
    """`error: text` in one write: under torchrun (unbuffered, one stderr for all ranks) a print's
    separate newline would let another rank's line run into this one."""
    sys.stderr.write(f"error: {text}\n")
