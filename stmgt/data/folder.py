"""The generic on-disk dataset format: a folder with `nodes.csv`, `edges.csv`, `speed.csv`
(`timestamp` in ISO 8601 with UTC offset, then one km/h column per node_id, empty = missing)
and `weather.csv` (`timestamp,temperature_c,wind_kmh,precipitation_mm`), plus an optional
`dataset.json` with provenance. The simulator exports it and every importer produces it; a live
dataset (`stmgt.data.live`) grows by whole-folder swaps, which `read_folder` never reads halfway."""

from __future__ import annotations

import csv
import json
import os
import time
import zoneinfo
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from stmgt.data.csv_layout import check_header, check_separator
from stmgt.data.dataset import SPEED_CEILING_KMH, WEATHER_COLUMNS, TrafficDataset, check_weather
from stmgt.errors import DataError, reason
from stmgt.storage.exports import csv_bytes, restored
from stmgt.storage.jsonfile import read_json
from stmgt.data.graph import RoadGraph, read_csv_table
from stmgt.storage.lock import lock_file
from stmgt.storage.outputs import FolderKind, locked_target, staged_folder

PROVENANCE_FILE = "dataset.json"
INCIDENTS_FILE = "incidents.csv"      # a replayed simulation's incident log (stmgt.data.live)
DATASET = FolderKind("dataset", frozenset({"nodes.csv", "edges.csv", "speed.csv", "weather.csv", PROVENANCE_FILE,
                                           INCIDENTS_FILE}))
READ_ATTEMPTS = 20          # reads of a folder swapped while being read, before giving up
SWAP_WAIT_S = 2.0           # how long a reader waits for a writer's swap to finish


def write_folder(dataset: TrafficDataset, out: str | Path, overwrite: bool = False,
                 option: str = "--out", files: Mapping[str, bytes] | None = None) -> Path:
    """Write the dataset as a folder at `out`, under the rules of `stmgt.storage.outputs`: built beside
    it and moved into place when complete, holding its lock; an existing dataset of ours is
    replaced only with `overwrite` and only if it holds nothing else (`DATASET` lists what the tool
    writes), anything else already there is refused (`option` names the input in messages).
    `files` (name -> content) are other files of the dataset written with it (`DATASET`'s)."""
    out = Path(out)
    with locked_target(out, DATASET, overwrite, option), staged_folder(out, DATASET, option) as tmp:
        dataset.graph.write(tmp)
        (tmp / "speed.csv").write_bytes(table_bytes(dataset.timestamps, dataset.speed_frame(), na_rep=""))
        if dataset.weather is not None:
            (tmp / "weather.csv").write_bytes(table_bytes(dataset.timestamps, dataset.weather_frame()))
        provenance = {**dataset.provenance, "timezone": str(dataset.timestamps.tz)}
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str))
        write_files(tmp, files or {})
    return out


def table_bytes(timestamps: pd.DatetimeIndex, values: pd.DataFrame, header: bool = True, **csv_args) -> bytes:
    """Rows of `speed.csv` or `weather.csv` as the folder holds them: the time in ISO 8601 with its
    offset, then the values to three decimals (`header=False`: the rows alone, to append)."""
    table = values.round(3)
    table.insert(0, "timestamp", [t.isoformat() for t in timestamps])
    return csv_bytes(table, header=header, **csv_args)


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write a dataset's other files (`DATASET` lists the names it may hold) into `folder`."""
    for name, content in files.items():
        if name not in DATASET.files:
            raise ValueError(f"{name!r} is not a file of a dataset folder")
        (folder / name).write_bytes(content)


def read_folder(folder: str | Path) -> TrafficDataset:
    """The dataset in a generic folder. A live dataset's folder is replaced whole as it grows
    (`stmgt.data.live`): a read that a swap overtook (the folder is another directory afterwards)
    is done again once the swap is over, so the dataset is the old one or the new one, never a mix."""
    folder = Path(folder)
    for _ in range(READ_ATTEMPTS):
        before = _identity(folder)
        if before is None:
            if _wait_for_swap(folder) and _identity(folder) is not None:
                continue            # it was being swapped in
            raise DataError("folder not found", str(folder))
        try:
            dataset = _read_folder(folder)
        except (DataError, OSError):
            if _identity(folder) == before:
                raise
            _wait_for_swap(folder)
            continue
        if _identity(folder) == before:
            return dataset
        _wait_for_swap(folder)
    raise DataError("changed while it was read, every time it was read (something appends to it faster than it "
                    "can be read); try again", str(folder))


def _read_folder(folder: Path) -> TrafficDataset:
    if not folder.is_dir():
        raise DataError("folder not found", str(folder))
    graph = RoadGraph.read(folder)
    return assemble_folder(folder, graph, read_timeseries(folder / "speed.csv"), folder / "speed.csv")


def _identity(folder: Path) -> tuple[int, int, int] | None:
    """Which directory `folder` is now (a swap puts another one there, and moves the old one); None when
    there is none."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns) if os.path.isdir(folder) else None


def _wait_for_swap(folder: Path) -> bool:
    """Wait while a writer holds the folder's lock (it may be swapping the folder); -> whether one did."""
    deadline = time.monotonic() + SWAP_WAIT_S
    held = False
    while lock_file(folder).exists() and time.monotonic() < deadline:
        held = True
        time.sleep(0.01)
    return held


def assemble_folder(folder: Path, graph: RoadGraph, speed: pd.DataFrame, speed_path: Path,
                    timezone: str | None = None) -> TrafficDataset:
    """The dataset from a folder's graph and speed table (read by the caller, since the generic
    importer also accepts `adjacency.csv` and `speed.parquet`), plus `weather.csv` and
    `dataset.json` when present (`timezone`: see `parse_timestamps`)."""
    provenance = _read_provenance(folder / PROVENANCE_FILE)
    check_speeds(speed, str(speed_path))
    speed = node_columns(speed, graph, str(speed_path))
    weather = None
    if (folder / "weather.csv").is_file():
        wframe = read_timeseries(folder / "weather.csv", WEATHER_COLUMNS, timezone)
        if not wframe.index.equals(speed.index):
            raise DataError("timestamps differ from the speed table's", str(folder / "weather.csv"))
        weather = weather_values(wframe, str(folder / "weather.csv"))
    timestamps = speed.index
    if provenance.get("timezone") and not timezone:
        timestamps = timestamps.tz_convert(provenance["timezone"])
    provenance = {**provenance, "path": str(folder)}
    try:
        return TrafficDataset(timestamps, speed.to_numpy(np.float32), weather, graph, provenance)
    except DataError as exc:
        raise DataError(exc.problem, str(speed_path)) from exc


def node_columns(speed: pd.DataFrame, graph: RoadGraph, where: str) -> pd.DataFrame:
    """`speed` with one column per node of `graph`, in its order; a column that is not a node id, or
    a node without a column, is an error at `where`."""
    unknown = [c for c in speed.columns if c not in graph.index_of]
    if unknown:
        raise DataError(f"column(s) {', '.join(unknown[:5])} are not node ids in nodes.csv", where)
    absent = [n for n in graph.node_ids if n not in speed.columns]
    if absent:
        raise DataError(f"no column for node(s) {', '.join(absent[:5])}", where)
    return speed[graph.node_ids]


def weather_values(weather: pd.DataFrame, where: str) -> np.ndarray:
    """[T, 3] from a time-indexed frame of `WEATHER_COLUMNS`: an empty cell or a value outside its
    physical range is an error at `where`, naming the column and time."""
    empty = weather.isna()
    if empty.any().any():
        col = empty.any().idxmax()
        at = weather.index[int(np.flatnonzero(empty[col])[0])]
        raise DataError(f"weather has empty cells ({col} at {at.isoformat()}); every time step needs all "
                        "three values", where)
    values = weather.to_numpy(np.float32)
    check_weather(values, weather.index, where)
    return values


def check_speeds(speed: pd.DataFrame, where: str, unit: str = "km/h", ceiling: float = SPEED_CEILING_KMH) -> None:
    """A negative, infinite or implausibly high speed is an error in the file, not a missing value:
    name the node and time. `ceiling` is in the file's `unit`."""
    for bad, problem in ((speed.lt(0), "negative speed"), (speed.abs().eq(np.inf), "infinite speed"),
                         (speed.gt(ceiling) & speed.ne(np.inf), f"speed above the ceiling of {ceiling:.0f} {unit}:")):
        if bad.any().any():
            col = bad.any().idxmax()
            i = int(np.flatnonzero(bad[col])[0])
            raise DataError(f"{problem} {speed[col].iloc[i]:g} for node {col!r} at {speed.index[i]}", where)


def read_timeseries(path: Path, columns: list[str] | None = None, timezone: str | None = None) -> pd.DataFrame:
    """A CSV with a `timestamp` column (ISO 8601 with offset) and numeric columns, indexed by time.
    Checks that every row has the header's number of fields, columns, numbers, timestamps
    (`parse_timestamps`), duplicates and order (speed values: `check_speeds`)."""
    check_rectangular(path)
    return timeseries_frame(restored(read_csv_table(path, dtype={"timestamp": str})), str(path), columns, timezone)


def check_rectangular(path: Path, header: bool = True) -> None:
    """Every row must have as many fields as the first: pandas would silently pad a short row
    with missing values (read as "no reading") and reports a long one in its own words."""
    if not Path(path).is_file():
        raise DataError("file not found", str(path))
    check_separator(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            first = next(rows, [])
            if header:
                check_header(first, str(path))
            width = len(first)
            for line, row in enumerate(rows, start=2):
                if row and len(row) != width:
                    raise DataError(f"has {len(row)} fields where the {'header' if header else 'first row'} "
                                    f"has {width}", f"{path} line {line}")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot be read as CSV ({reason(exc)})", str(path)) from exc


ISO_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def parse_timestamps(column: pd.Series, where: str, timezone: str | None = None) -> pd.DatetimeIndex:
    """ISO 8601 times, each with its UTC offset, as an index in the first row's offset. A time
    without an offset is an error naming its line, unless `timezone` (an IANA name such as
    Asia/Ho_Chi_Minh) says which local time the times without one are in; the index is then in
    that zone. Reading them as UTC would shift every forecast by hours without a word."""
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise DataError(f"unknown time zone {timezone!r}; use an IANA name such as Asia/Ho_Chi_Minh",
                            "--timezone") from exc
    if pd.api.types.is_datetime64_any_dtype(column):       # Parquet keeps real datetimes
        index = pd.DatetimeIndex(column)
        if index.tz is None:
            if timezone is None:
                raise DataError("the timestamps carry no time zone; give the zone they are local time in "
                                "(--timezone)", where)
            return _localize(index, timezone, where)
        return index.tz_convert(timezone) if timezone else index
    text = column.astype("string").str.strip()
    empty = text.isna() | text.eq("")
    if empty.any():
        raise DataError("empty timestamp", f"{where} line {int(np.flatnonzero(empty)[0]) + 2}")
    stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")  # no offset: UTC for now
    if stamps.isna().any():
        i = int(np.flatnonzero(stamps.isna())[0])
        raise DataError(f"timestamp {text.iloc[i]!r} is not ISO 8601 (e.g. 2025-07-07T08:00:00+07:00)",
                        f"{where} line {i + 2}")
    has_offset = text.str.contains(ISO_OFFSET, regex=True).to_numpy(bool)
    if not has_offset.all():
        if timezone is None:
            i = int(np.flatnonzero(~has_offset)[0])
            raise DataError(f"timestamp {text.iloc[i]!r} has no UTC offset (write e.g. 2025-07-07T08:00:00+07:00, "
                            "or give the time zone of such times with --timezone)", f"{where} line {i + 2}")
        naive = pd.DatetimeIndex(stamps[~has_offset]).tz_localize(None)
        stamps[~has_offset] = _localize(naive, timezone, where).tz_convert("UTC")
    zone = timezone or pd.Timestamp(text.iloc[0]).tz
    return pd.DatetimeIndex(stamps).tz_convert(zone)


def _localize(index: pd.DatetimeIndex, timezone: str, where: str) -> pd.DatetimeIndex:
    try:
        return index.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
    except (ValueError, TypeError) as exc:      # a local time the clock skips or repeats
        raise DataError(f"cannot place the times in {timezone} ({reason(exc)}); write them with their UTC "
                        "offset", where) from exc



def timeseries_frame(frame: pd.DataFrame, where: str, columns: list[str] | None = None,
                     timezone: str | None = None) -> pd.DataFrame:
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
    index = parse_timestamps(frame["timestamp"], where, timezone)
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
