"""The generic on-disk dataset format: a folder with `nodes.csv`, `edges.csv`, `speed.csv`
(`timestamp` in ISO 8601 with UTC offset, then one km/h column per node_id, empty = missing)
and `weather.csv` (`timestamp,temperature_c,wind_kmh,precipitation_mm`), plus an optional
`dataset.json` with provenance. The simulator exports it and every importer produces it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from stmgt.data.dataset import WEATHER_COLUMNS, TrafficDataset
from stmgt.errors import DataError
from stmgt.jsonfile import read_json
from stmgt.graph import RoadGraph, read_csv_table

PROVENANCE_FILE = "dataset.json"


def write_folder(dataset: TrafficDataset, out: str | Path) -> Path:
    """Write atomically: everything goes to a temporary sibling folder that replaces `out` only
    once complete, so a failure never leaves a half-written dataset."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)              # mkdtemp makes it private; the dataset is meant to be shared
    try:
        dataset.graph.write(tmp)
        stamps = [t.isoformat() for t in dataset.timestamps]
        speed = dataset.speed_frame().round(3)
        speed.insert(0, "timestamp", stamps)
        speed.to_csv(tmp / "speed.csv", index=False, na_rep="")
        if dataset.weather is not None:
            weather = dataset.weather_frame().round(3)
            weather.insert(0, "timestamp", stamps)
            weather.to_csv(tmp / "weather.csv", index=False)
        provenance = {**dataset.provenance, "timezone": str(dataset.timestamps.tz)}
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str))
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(out, backup)
            os.replace(tmp, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_folder(folder: str | Path) -> TrafficDataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("folder not found", str(folder))
    graph = RoadGraph.read(folder)
    return assemble_folder(folder, graph, read_timeseries(folder / "speed.csv"), folder / "speed.csv")


def assemble_folder(folder: Path, graph: RoadGraph, speed: pd.DataFrame, speed_path: Path) -> TrafficDataset:
    """The dataset from a folder's graph and speed table (read by the caller, since the generic
    importer also accepts `adjacency.csv` and `speed.parquet`), plus `weather.csv` and
    `dataset.json` when present."""
    provenance = _read_provenance(folder / PROVENANCE_FILE)
    check_speeds(speed, str(speed_path))
    unknown = [c for c in speed.columns if c not in graph.index_of]
    if unknown:
        raise DataError(f"column(s) {', '.join(unknown[:5])} are not node ids in nodes.csv", str(speed_path))
    absent = [n for n in graph.node_ids if n not in speed.columns]
    if absent:
        raise DataError(f"no column for node(s) {', '.join(absent[:5])}", str(speed_path))
    speed = speed[graph.node_ids]
    weather = None
    if (folder / "weather.csv").is_file():
        wframe = read_timeseries(folder / "weather.csv", WEATHER_COLUMNS)
        if not wframe.index.equals(speed.index):
            raise DataError("timestamps differ from the speed table's", str(folder / "weather.csv"))
        if wframe.isna().any().any():
            raise DataError("weather has empty cells; every time step needs all three values",
                            str(folder / "weather.csv"))
        weather = wframe.to_numpy(np.float32)
    timestamps = speed.index
    if provenance.get("timezone"):
        timestamps = timestamps.tz_convert(provenance["timezone"])
    provenance = {**provenance, "path": str(folder)}
    try:
        return TrafficDataset(timestamps, speed.to_numpy(np.float32), weather, graph, provenance)
    except DataError as exc:
        raise DataError(exc.problem, str(speed_path)) from exc


def check_speeds(speed: pd.DataFrame, where: str) -> None:
    """A negative speed is an error in the file, not a missing value: name the node and time."""
    negative = speed.lt(0)
    if negative.any().any():
        col = negative.any().idxmax()
        i = int(np.flatnonzero(negative[col])[0])
        raise DataError(f"negative speed {speed[col].iloc[i]:g} for node {col!r} at {speed.index[i]}", where)


def read_timeseries(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A CSV with a `timestamp` column (ISO 8601 with offset) and numeric columns, indexed by time.
    Checks columns, numbers, duplicate and non-monotonic timestamps (negative speeds: `check_speeds`)."""
    return timeseries_frame(read_csv_table(path, dtype={"timestamp": str}), str(path), columns)


def timeseries_frame(frame: pd.DataFrame, where: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Validate a frame with a `timestamp` column and turn it into a time-indexed numeric frame."""
    if "timestamp" not in frame.columns:
        raise DataError("no 'timestamp' column", where)
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}; expected timestamp, "
                            f"{', '.join(columns)}", where)
        frame = frame[["timestamp", *columns]]
    if len(frame) == 0:
        raise DataError("no rows", where)
    try:
        stamps = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise DataError(f"timestamps are not ISO 8601 ({exc})", where) from exc
    if stamps.isna().any():
        i = int(np.flatnonzero(stamps.isna())[0])
        raise DataError("empty timestamp", f"{where} line {i + 2}")
    first = str(frame["timestamp"].iloc[0])
    offset = pd.Timestamp(first).tz
    if offset is None:
        raise DataError(f"timestamp {first!r} has no UTC offset (write e.g. 2025-07-07T08:00:00+07:00)", where)
    index = pd.DatetimeIndex(stamps).tz_convert(offset)
    dup = index.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate timestamp {frame['timestamp'].iloc[i]}", f"{where} line {i + 2}")
    back = np.flatnonzero(np.diff(index.asi8) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise DataError(f"timestamps are not in increasing order at {frame['timestamp'].iloc[i]}",
                        f"{where} line {i + 2}")
    numeric = numeric_frame(frame.drop(columns="timestamp"), where)
    numeric.index = index
    return numeric


def numeric_frame(values: pd.DataFrame, where: str, first_line: int = 2) -> pd.DataFrame:
    """Cells as floats (empty = NaN), with string column names; the first cell that is not a
    number is an error at its CSV line (`first_line` is the first row's: 2 below a header)."""
    numeric = values.apply(pd.to_numeric, errors="coerce").astype(float)
    bad = numeric.isna() & values.notna()
    if bad.any().any():
        col = bad.any().idxmax()
        i = int(np.flatnonzero(bad[col])[0])
        raise DataError(f"value {values[col].iloc[i]!r} in column {col!r} is not a number",
                        f"{where} line {i + first_line}")
    numeric.columns = [str(c) for c in numeric.columns]
    return numeric


def _read_provenance(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}
