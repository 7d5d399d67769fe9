"""`python -m stmgt ...`: simulate, import, train, evaluate, forecast, route."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from stmgt.allocator import reuse_freed_memory
from stmgt.data import importers
from stmgt.data.folder import write_folder
from stmgt.data.simulate import simulate
from stmgt.data.sources import describe, load_dataset, parse_data_arg
from stmgt.errors import DataError
from stmgt.evaluate import evaluate
from stmgt.forecast import Forecaster, WeatherScenario
from stmgt.jsonfile import write_json
from stmgt.model import STMGTConfig
from stmgt.routing import RoadNetwork
from stmgt.runs import Run
from stmgt.train import TrainConfig, fit, resolve_device
from stmgt.trip import SAMPLES, TripPlanner

DATA_HELP = "dataset: a folder in the generic format, or 'sim' for the embedded simulated HCMC data"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stmgt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write the embedded simulator's data in the generic format")
    p.add_argument("--weeks", type=float, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("import", help="convert a dataset into the generic format")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("generic", help="a generic folder (speed.csv or speed.parquet, edges.csv or adjacency.csv)")
    k.add_argument("folder", type=Path)
    k = kinds.add_parser("matrix", help="T-GCN-style speed matrix + headerless adjacency")
    k.add_argument("speed", type=Path)
    k.add_argument("adjacency", type=Path)
    k.add_argument("--locations", type=Path)
    k.add_argument("--start", required=True, help="time of the first row, ISO 8601")
    k.add_argument("--freq", default="5min", help="cadence, e.g. 5min or 15min")
    k.add_argument("--units", choices=["kmh", "mph"], default="kmh")
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

    p = sub.add_parser("train", help="train STMGT; writes a run folder and evaluates it")
    p.add_argument("--data", default="sim", help=DATA_HELP)
    p.add_argument("--out", required=True, type=Path, help="run folder to create")
    p.add_argument("--epochs", type=_positive_int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=_positive_int, default=TrainConfig.batch_size)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["concat", "mean"], default=STMGTConfig.gat_layout,
                   help="GAT heads: concat (the specification's code) or mean (96-wide averaged heads)")
    p.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json")

    p = sub.add_parser("evaluate", help="score a run against the baselines; writes metrics.json")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")

    p = sub.add_parser("forecast", help="forecast from a timestamp; writes a long-format CSV of quantiles")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--at", required=True, help="the last observed step, ISO 8601")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--precipitation", type=float, metavar="MM/H", help="what-if precipitation over the horizon")
    p.add_argument("--temperature", type=float, metavar="C", help="what-if temperature over the horizon")
    p.add_argument("--wind", type=float, metavar="KMH", help="what-if wind over the horizon")
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("route", help="fastest route and its travel-time distribution; prints or writes JSON")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--from", dest="origin", required=True, metavar="NODE", help="origin node id")
    p.add_argument("--to", dest="destination", required=True, metavar="NODE", help="destination node id")
    p.add_argument("--depart", required=True, metavar="TIME",
                   help="departure, ISO 8601; the forecast is made at the last data step at or before it")
    p.add_argument("--deadline", metavar="TIME", help="arrival deadline, ISO 8601: adds p_on_time")
    p.add_argument("--samples", type=_positive_int, default=SAMPLES, help="Monte Carlo draws")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the run was trained on)")
    p.add_argument("--out", type=Path, help="JSON file to write (default: print the JSON)")
    return parser


def _run_data_spec(run: Run, data_arg: str | None) -> dict:
    """--data if given, else the data the run was trained on."""
    spec = parse_data_arg(data_arg) if data_arg else run.config.get("data")
    if not spec:
        raise DataError("the run does not record its data; pass --data", str(run.path))
    return spec


def _import(args) -> None:
    if args.kind == "generic":
        result = importers.import_generic(args.folder)
    elif args.kind == "matrix":
        result = importers.import_matrix(args.speed, args.adjacency, start=args.start, freq=args.freq,
                                         units=args.units, locations_csv=args.locations)
    elif args.kind == "metr-la":
        result = importers.import_metr_la(args.speed, args.adjacency, locations_csv=args.locations)
    else:
        result = importers.import_snapshots(args.runs, freq=args.freq, max_gap=args.max_gap)
    for note in result.notes:
        print(f"note: {note}")
    write_folder(result.dataset, args.out)
    d = result.dataset
    print(f"wrote {args.out}: {d.num_nodes} nodes, {d.graph.num_edges} edges, {d.num_steps} steps "
          f"every {d.freq}, weather {'present' if d.has_weather else 'absent'}")


def _train(args) -> None:
    spec = parse_data_arg(args.data)
    dataset = load_dataset(spec)
    device = resolve_device(args.device)
    config = STMGTConfig(gat_layout=args.layout)
    train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=str(device))
    print(f"training on {describe(spec)}: {dataset.num_nodes} nodes, {dataset.num_steps} steps; device {device}")
    bar = tqdm(unit="batch", dynamic_ncols=True)

    def on_batch(p):
        if p.batch == 1:
            bar.reset(total=p.num_batches)
            bar.set_description(f"epoch {p.epoch}")
        bar.update()
        bar.set_postfix(loss=f"{p.loss:.3f}")

    def on_epoch(r):
        bar.write(f"epoch {r.epoch:3d}  loss {r.train_loss:.4f}  val MAE {r.val_mae:.3f} km/h  "
                  f"{r.seconds:.1f}s{'  *best' if r.best else ''}")

    result = fit(dataset, config, train_config, run_dir=args.out, data_spec=spec,
                 on_batch=on_batch, on_epoch=on_epoch)
    bar.close()
    print(f"{result.stopped.replace('_', ' ')}; best epoch {result.best_epoch}, val MAE "
          f"{result.best_val_mae:.3f} km/h; {result.model.count_parameters():,} parameters")
    if not args.no_evaluate and result.best_epoch is not None:
        _print_metrics(evaluate(Run(args.out), dataset, spec, progress=True))


def _print_metrics(metrics: dict) -> None:
    models = metrics["models"]
    minutes = metrics["horizon_minutes"]
    print(f"test split, {metrics['windows']} windows — MAE km/h (CRPS for STMGT)")
    print("horizon   " + "  ".join(f"{m:>6d}m" for m in minutes[3::4]))
    for name, scores in models.items():
        print(f"{name:<18}" + "  ".join(f"{v:7.3f}" for v in scores["mae"][3::4]))
    print(f"{'stmgt crps':<18}" + "  ".join(f"{v:7.3f}" for v in models["stmgt"]["crps"][3::4]))
    print(f"80% interval coverage: {models['stmgt']['overall']['coverage']['80']:.3f}")


def _forecast(args) -> None:
    run = Run.open(args.run)
    dataset = load_dataset(_run_data_spec(run, args.data))
    forecaster = Forecaster(run.load(dataset.graph), dataset)
    anchor = forecaster.anchor_at(args.at)
    scenario = None
    if any(v is not None for v in (args.precipitation, args.temperature, args.wind)):
        for name, value in (("precipitation", args.precipitation), ("wind", args.wind)):
            if value is not None and value < 0:
                raise DataError(f"--{name} must not be negative, got {value}")
        scenario = WeatherScenario(temperature_c=args.temperature, wind_kmh=args.wind,
                                   precipitation_mm=args.precipitation)
    frame = forecaster.forecast(anchor, scenario).to_frame().drop(columns="anchor_time")
    frame["target_time"] = frame["target_time"].map(lambda t: t.isoformat())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, float_format="%.3f")
    print(f"wrote {args.out}: {len(frame)} rows, {dataset.num_nodes} nodes × {forecaster.horizon} steps "
          f"after {dataset.timestamps[anchor].isoformat()}")


def _timestamp(text: str, option: str, tz) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise DataError(f"{text!r} is not a time (use ISO 8601, e.g. 2025-08-20T17:30+07:00)", option) from None
    return ts.tz_localize(tz) if ts.tz is None else ts.tz_convert(tz)


def _route(args) -> None:
    run = Run.open(args.run)
    dataset = load_dataset(_run_data_spec(run, args.data))
    forecaster = Forecaster(run.load(dataset.graph), dataset)
    network = RoadNetwork(dataset.graph)
    network.check_node(args.origin, "--from")
    network.check_node(args.destination, "--to")
    network.shortest(args.origin, args.destination)        # unreachable: say so before any work
    steps = dataset.timestamps
    depart = _timestamp(args.depart, "--depart", steps.tz)
    deadline = None if args.deadline is None else _timestamp(args.deadline, "--deadline", steps.tz)
    latest = steps[-1] + forecaster.horizon * dataset.freq
    if not steps[forecaster.seq_len - 1] <= depart < latest:
        raise DataError(f"{depart.isoformat()} is outside the data: departures run from "
                        f"{steps[forecaster.seq_len - 1].isoformat()} to before {latest.isoformat()}", "--depart")
    forecast = forecaster.forecast(forecaster.anchor_at(steps[steps.searchsorted(depart, side="right") - 1]))
    trip = TripPlanner.for_forecaster(forecaster).plan(forecast, args.origin, args.destination, depart,
                                                       deadline, samples=args.samples)
    if args.out is None:
        print(json.dumps(trip.summary(), ensure_ascii=False, indent=2))
        return
    write_json(args.out, trip.summary())
    print(f"wrote {args.out}: {len(trip.fastest.route.nodes)} nodes, {trip.fastest.length_m / 1000:.2f} km, "
          f"P50 {trip.fastest.travel.p50:.1f} min (80 % interval {trip.fastest.travel.p10:.1f}–"
          f"{trip.fastest.travel.p90:.1f})")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    reuse_freed_memory()
    try:
        if args.command == "simulate":
            dataset = simulate(weeks=args.weeks, seed=args.seed)
            write_folder(dataset, args.out)
            print(f"wrote {args.out}: {dataset.num_nodes} nodes, {dataset.num_steps} steps "
                  f"({dataset.timestamps[0].isoformat()} … {dataset.timestamps[-1].isoformat()})")
        elif args.command == "import":
            _import(args)
        elif args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            run = Run.open(args.run)
            spec = _run_data_spec(run, args.data)
            _print_metrics(evaluate(run, load_dataset(spec), spec, args.device, progress=True))
        elif args.command == "forecast":
            _forecast(args)
        elif args.command == "route":
            _route(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
