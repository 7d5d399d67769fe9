"""Live datasets: a generic dataset folder (`stmgt.data.folder`) that grows as observations arrive.

Its `dataset.json` records the splits it was started with (`"splits"`: train and validation fixed,
the test period open-ended, so arriving steps join the test period and nothing calibrated on the
validation split moves) and `"live": {"newest", "started"}`: the time of its newest step, which a
page polls cheaply (`newest_step`), and of the first step of the live period.

`append_rows` adds steps with the checks an import makes, and replaces the folder as a whole under
its lock (`stmgt.storage.outputs`): a reader sees the old dataset or the new one, never a mix, and
an append that fails or is killed leaves the folder as it was. `Replay` plays a recording into a
live dataset one step at a time (`stmgt replay`), with a simulation's incident log beside it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from stmgt.data.dataset import WEATHER_COLUMNS, TrafficDataset
from stmgt.data.folder import (DATASET, INCIDENTS_FILE, PROVENANCE_FILE, check_rectangular, check_speeds,
                               node_columns, read_folder, table_bytes, timeseries_frame, weather_values,
                               write_files, write_folder)
from stmgt.data.graph import read_csv_table
from stmgt.data.simulate import Incident
from stmgt.errors import DataError
from stmgt.storage.exports import csv_bytes, restored
from stmgt.storage.jsonfile import json_text, read_json
from stmgt.storage.outputs import MARKER, locked_target, marked_kind, staged_folder

LIVE = "live"                 # dataset.json: {"newest": ISO time, "started": ISO time}
SPLITS = "splits"             # dataset.json: {"train": [a, b], "val": [c, d], "test": [e, null]}
INCIDENT_COLUMNS = ["node_id", "start", "end", "severity"]
TABLES = ("speed.csv", "weather.csv")


def newest_step(folder) -> pd.Timestamp | None:
    """The time of a live dataset's newest step, from its `dataset.json` alone (cheap enough to poll
    every second); None when the folder is not a live dataset or cannot be read just now."""
    try:
        return pd.Timestamp(read_json(Path(folder) / PROVENANCE_FILE)[LIVE]["newest"])
    except (DataError, OSError, KeyError, TypeError, ValueError):
        return None


def is_live(dataset: TrafficDataset) -> bool:
    """Whether the dataset is a live one (it records its newest step)."""
    live = (dataset.provenance or {}).get(LIVE)
    return isinstance(live, dict) and "newest" in live


def recorded_splits(splits: Mapping[str, range]) -> dict:
    """Splits as `dataset.json` records them: [start, stop] with the test period open-ended."""
    return {"train": [splits["train"].start, splits["train"].stop],
            "val": [splits["val"].start, splits["val"].stop], "test": [splits["test"].start, None]}


def start_live(recording: TrafficDataset, steps: int, out, provenance: dict | None = None, overwrite: bool = False,
               files: Mapping[str, bytes] | None = None, option: str = "--into") -> TrafficDataset:
    """Write the first `steps` steps of `recording` to `out` as a live dataset whose splits are the
    whole recording's (`recording.splits()`), so its training and validation steps are those of the
    recording itself; `provenance` replaces the recording's. -> the dataset written."""
    splits = recording.splits()
    if not splits["val"].stop <= steps <= recording.num_steps:
        raise DataError(f"a live dataset starts with at least its training and validation steps "
                        f"({splits['val'].stop}) and at most the recording's {recording.num_steps}, not {steps}")
    times = recording.timestamps
    source = {k: v for k, v in (recording.provenance if provenance is None else provenance).items() if k != "path"}
    source[SPLITS] = recorded_splits(splits)
    source[LIVE] = {"newest": times[steps - 1].isoformat(), "started": (times[steps - 1] + recording.freq).isoformat()}
    history = TrafficDataset(times[:steps], recording.speed[:steps],
                             None if recording.weather is None else recording.weather[:steps], recording.graph, source)
    write_folder(history, out, overwrite, option, files)
    return history


def read_rows(path) -> pd.DataFrame:
    """A CSV of rows to append (`timestamp`, one column per node_id, the weather columns), read as
    an import reads `speed.csv`; `append_rows` checks them."""
    path = Path(path)
    check_rectangular(path)
    return restored(read_csv_table(path, dtype={"timestamp": str}))


def append_rows(folder, rows: pd.DataFrame, files: Mapping[str, bytes] | None = None, where: str = "rows",
                option: str = "--data") -> int:
    """Append `rows` (a `timestamp` column or a DatetimeIndex, one km/h column per node_id, empty =
    no reading, and `WEATHER_COLUMNS` when the dataset has weather) to the dataset folder at
    `folder`, checked as an import checks its files (`where` names them in messages: a file, with
    its lines), the first step right after the newest, on the data's cadence. The folder is
    replaced whole, under its lock; `files` (e.g. the replay's incidents.csv) are written with the
    rows. A dataset that was not live becomes live, its splits fixed as they are now. -> steps appended."""
    folder = Path(folder)
    if not (folder / "speed.csv").is_file() or marked_kind(folder) != DATASET.name:
        raise DataError("is not a dataset folder this tool wrote (no speed.csv, or no .stmgt marker naming a "
                        "dataset); import the data first (stmgt import generic DIR --out NEW) and append to that",
                        f"{option} {folder}")
    with locked_target(folder, DATASET, True, option):
        current = read_folder(folder)
        speed, weather = _new_steps(current, rows, where)
        provenance = read_json(folder / PROVENANCE_FILE) if (folder / PROVENANCE_FILE).is_file() else {}
        provenance.setdefault(SPLITS, recorded_splits(current.splits()))
        started = (provenance.get(LIVE) or {}).get("started") or speed.index[0].isoformat()
        provenance[LIVE] = {"newest": speed.index[-1].isoformat(), "started": started}
        provenance.setdefault("timezone", str(current.timestamps.tz))
        with staged_folder(folder, DATASET, option) as tmp:
            for name in sorted(DATASET.files | {MARKER}):
                if (folder / name).is_file() and name != PROVENANCE_FILE:
                    shutil.copyfile(folder / name, tmp / name)
            _append_table(tmp / "speed.csv", speed, na_rep="")
            if weather is not None:
                _append_table(tmp / "weather.csv", weather)
            (tmp / PROVENANCE_FILE).write_text(json_text(provenance, f"{folder / PROVENANCE_FILE}"))
            write_files(tmp, files or {})
    return len(speed)


def _new_steps(dataset: TrafficDataset, rows: pd.DataFrame, where: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows' speeds and weather as float32 frames in the dataset's time zone, refused in words
    unless they continue the dataset step by step."""
    if "timestamp" not in rows.columns and isinstance(rows.index, pd.DatetimeIndex):
        rows = rows.rename_axis("timestamp").reset_index()
    given = [c for c in WEATHER_COLUMNS if c in rows.columns]
    if dataset.has_weather and len(given) < len(WEATHER_COLUMNS):
        missing = [c for c in WEATHER_COLUMNS if c not in given]
        raise DataError(f"missing column(s) {', '.join(missing)}: the dataset has weather, so every step needs "
                        f"{', '.join(WEATHER_COLUMNS)}", where)
    if not dataset.has_weather and given:
        raise DataError(f"the dataset has no weather; leave out the column(s) {', '.join(given)}", where)
    values = timeseries_frame(rows, where)
    values.index = values.index.tz_convert(dataset.timestamps.tz)
    speed = values.drop(columns=given)
    check_speeds(speed, where)
    speed = node_columns(speed, dataset.graph, where).astype(np.float32)
    weather = None
    if dataset.has_weather:
        weather = pd.DataFrame(weather_values(values[WEATHER_COLUMNS], where), index=values.index,
                               columns=WEATHER_COLUMNS)
    _check_continues(dataset, values.index, rows["timestamp"], where)
    try:                    # the whole series once more, as any dataset is checked
        TrafficDataset(dataset.timestamps.append(values.index), np.vstack([dataset.speed, speed.to_numpy()]),
                       None if weather is None else np.vstack([dataset.weather, weather.to_numpy()]), dataset.graph)
    except DataError as exc:
        raise DataError(exc.problem, where) from exc
    return speed, weather


def _check_continues(dataset: TrafficDataset, times: pd.DatetimeIndex, written: pd.Series, where: str) -> None:
    newest, step = dataset.timestamps[-1], dataset.freq
    cadence = f"{step / pd.Timedelta(minutes=1):g} min"
    if times[0] <= newest:
        raise DataError(f"timestamp {written.iloc[0]} is already in the dataset, whose newest step is "
                        f"{newest.isoformat()}; only later steps can be appended", f"{where} line 2")
    if times[0] != newest + step:
        raise DataError(f"timestamp {written.iloc[0]} leaves a gap after the dataset's newest step "
                        f"{newest.isoformat()}: the next step is {(newest + step).isoformat()} (one every {cadence}); "
                        "a step without readings is a row of empty cells", f"{where} line 2")
    off = np.flatnonzero((times[1:] - times[:-1]) != step)
    if len(off):
        i = int(off[0]) + 1
        gap = (times[i] - times[i - 1]) / pd.Timedelta(minutes=1)
        raise DataError(f"timestamp {written.iloc[i]} comes {gap:g} min after the one before; the dataset has a "
                        f"step every {cadence}", f"{where} line {i + 2}")


def _append_table(path: Path, values: pd.DataFrame, **csv_args) -> None:
    """Append rows to a copied table in its own column order (its header may list them in another;
    a column the reader ignores gets empty cells)."""
    header = list(restored(read_csv_table(path, nrows=0)).columns[1:])
    with open(path, "rb+") as f:
        f.seek(0, 2)
        if f.tell():
            f.seek(-1, 2)
            if f.read(1) != b"\n":         # a hand-edited last line without its line end
                f.write(b"\r\n")
        f.write(table_bytes(values.index, values.reindex(columns=header), header=False, **csv_args))


def incidents_bytes(log: Sequence[Incident], recording: TrafficDataset, upto: int) -> bytes:
    """`incidents.csv`: the incidents of a simulation's log that began at or before step `upto`
    (`node_id,start,end,severity`; start and end the first and last step it slows its road, ISO
    8601 with offset; severity the slowdown at its road, speed × (1 − severity))."""
    times, ids = recording.timestamps, recording.graph.node_ids
    begun = sorted((i for i in log if i.start <= upto), key=lambda i: (i.start, i.node))
    frame = pd.DataFrame({"node_id": pd.Series([ids[i.node] for i in begun], dtype=object),
                          "start": [times[i.start].isoformat() for i in begun],
                          "end": [times[i.stop - 1].isoformat() for i in begun],
                          "severity": [round(i.severity, 3) for i in begun]}, columns=INCIDENT_COLUMNS)
    return csv_bytes(frame)


class Replay:
    """A recording played into a live dataset folder: `start` writes its history up to the test
    split's start; each `step` appends the next step (with the incidents begun by then, for a
    simulation's `incidents` log)."""

    def __init__(self, recording: TrafficDataset, out, provenance: dict, incidents: Sequence[Incident] | None = None):
        self.recording, self.out, self.provenance, self.incidents = recording, Path(out), provenance, incidents
        self.next = recording.splits()["test"].start

    @property
    def remaining(self) -> int:
        """Steps of the recording not yet appended."""
        return self.recording.num_steps - self.next

    def start(self, overwrite: bool = False, option: str = "--into") -> TrafficDataset:
        return start_live(self.recording, self.next, self.out, self.provenance, overwrite, self._files(self.next - 1),
                          option)

    def step(self) -> pd.Timestamp:
        """Append the next step; -> its time."""
        if not self.remaining:
            raise DataError("the recording has no step left to replay")
        r = self.recording
        t = self.next
        rows = pd.DataFrame(r.speed[t:t + 1], index=r.timestamps[t:t + 1], columns=r.graph.node_ids)
        if r.weather is not None:
            rows[WEATHER_COLUMNS] = r.weather[t:t + 1]
        append_rows(self.out, rows, self._files(t), where=f"step {r.timestamps[t].isoformat()} of the recording",
                    option="--into")
        self.next += 1
        return r.timestamps[t]

    def _files(self, upto: int) -> dict[str, bytes]:
        return {} if self.incidents is None else {INCIDENTS_FILE: incidents_bytes(self.incidents, self.recording, upto)}
