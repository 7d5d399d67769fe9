"""The predecessor project's collection: a directory of `run_*` folders, each a snapshot of
segment speeds (`traffic_edges.json`), the road graph (`nodes.json`, `edges.json`) and the
weather at the nodes (`weather_snapshot.json`), taken irregularly 30–120 min apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stmgt.data.dataset import WEATHER_COLUMNS
from stmgt.data.importers.common import ImportResult, build_dataset, duration, finish, listing
from stmgt.errors import DataError, reason
from stmgt.data.graph import RoadGraph, edges_table, nodes_table

HCMC_TZ = "Asia/Ho_Chi_Minh"
RUN_FILES = ("nodes.json", "edges.json", "traffic_edges.json")
WEATHER_FILE = "weather_snapshot.json"


@dataclass
class _Run:
    name: str
    nodes: pd.DataFrame     # the nodes table
    edges: pd.DataFrame     # the edges table, self loops and repeated pairs removed
    removed_edges: pd.DataFrame  # the self loops and repeated pairs left out
    time: pd.Timestamp      # the mean of its traffic records' times (NaT without records)
    speeds: pd.Series       # km/h by (node_a_id, node_b_id), for the segments with traffic data
    weather: pd.DataFrame | None  # one row: the run's mean weather at its mean time


def import_snapshots(runs_dir, *, freq="15min", max_gap="60min") -> ImportResult:
    """Each run is one snapshot, at the mean time of its records (a run takes minutes, runs are
    30–120 min apart). Segment speeds go onto a regular `freq` grid (linear in time, only
    between observations at most `max_gap` apart), then each node gets the mean of its incident
    segments (in or out) that have a value; nodes no segment reaches are dropped. Weather is
    averaged over the nodes per run and gridded the same way."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError("folder not found", str(runs_dir))
    step, gap = duration(freq, "freq"), duration(max_gap, "max_gap")
    notes, runs = [], []
    for folder in sorted(p for p in runs_dir.glob("run_*") if p.is_dir()):
        lacking = [f for f in RUN_FILES if not (folder / f).is_file()]
        if lacking:
            notes.append(f"Skipped {folder.name}: it has no {', '.join(lacking)}.")
        else:
            runs.append(_read_run(folder))
    if not runs:
        raise DataError(f"no run_* folder with {', '.join(RUN_FILES)}", str(runs_dir))
    graph = _snapshot_graph(runs, runs_dir)
    removed = pd.concat([r.removed_edges for r in runs]).drop_duplicates(["source", "target"])
    if len(removed):
        notes.append(f"Ignored {len(removed)} road segment(s) in edges.json that loop on one node or repeat "
                     "another segment's ends.")

    observed = [r for r in runs if len(r.speeds)]
    if not observed:
        raise DataError("no traffic record has a speed", str(runs_dir))
    segments = pd.concat([r.speeds for r in observed], axis=1, keys=[r.time for r in observed]).T
    segments = segments.groupby(level=0).mean()  # runs at the same time are averaged
    grid = pd.date_range(segments.index[0].ceil(step), segments.index[-1].floor(step), freq=step)
    node_speed = _node_speeds(_grid(segments, grid, gap), graph.node_ids)
    empty = node_speed.isna().all()
    if empty.all():
        raise DataError(f"no speed falls on the {freq} grid: the runs are more than {max_gap} apart",
                        str(runs_dir))
    if empty.any():
        dropped = node_speed.columns[empty].tolist()
        notes.append(f"Dropped {len(dropped)} node(s) that no road segment with speed data touches: "
                     f"{listing(dropped, 10)}.")
        graph = _subgraph(graph, node_speed.columns[~empty].tolist())
        node_speed = node_speed.loc[:, ~empty]
    has_speed = node_speed.notna().to_numpy()
    notes.append(f"{len(observed)} runs from {segments.index[0]:%Y-%m-%d %H:%M} to "
                 f"{segments.index[-1]:%Y-%m-%d %H:%M} were put on a {freq} grid of {len(grid)} steps, "
                 f"interpolating only between observations at most {max_gap} apart: {has_speed.mean():.0%} "
                 f"of node-steps have a speed and {int((~has_speed.any(axis=1)).sum())} steps fall in longer "
                 "gaps and are missing.")

    weather, weather_notes = _snapshot_weather(runs, grid, gap, max_gap)
    provenance = {"source": "predecessor snapshots", "path": str(runs_dir), "runs": len(runs),
                  "freq": str(freq), "max_gap": str(max_gap), "units": "km/h"}
    dataset = build_dataset(node_speed, weather, graph, provenance, str(runs_dir))
    return finish(dataset, notes + weather_notes)


def _grid(frame: pd.DataFrame, grid: pd.DatetimeIndex, max_gap: pd.Timedelta) -> pd.DataFrame:
    """Each column linearly interpolated in time onto `grid`, but only between two of its
    observations at most `max_gap` apart (an observation on a grid time is kept as is);
    elsewhere NaN."""
    times = frame.index.union(grid)
    full = frame.reindex(times)
    elapsed = ((times - times[0]) / pd.Timedelta(seconds=1)).to_numpy()
    seen_at = full.notna().mul(elapsed, axis=0).where(full.notna())
    span = seen_at.bfill() - seen_at.ffill()
    filled = full.interpolate(method="time", limit_area="inside")
    return filled.where(span <= max_gap.total_seconds()).reindex(grid)


def _node_speeds(segments: pd.DataFrame, node_ids: list[str]) -> pd.DataFrame:
    """Per node and step, the mean over its incident segments (either end) that have a value
    then; NaN where none has (never 0)."""
    ends_a = segments.columns.get_level_values(0).to_numpy()
    ends_b = segments.columns.get_level_values(1).to_numpy()
    incidence = (np.equal.outer(ends_a, node_ids) | np.equal.outer(ends_b, node_ids)).astype(float)
    values = segments.to_numpy()
    counts = (~np.isnan(values)).astype(float) @ incidence
    sums = np.nan_to_num(values) @ incidence
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(np.where(counts > 0, sums / counts, np.nan), index=segments.index, columns=node_ids)


def _snapshot_weather(runs: list[_Run], grid, gap, max_gap) -> tuple[np.ndarray | None, list[str]]:
    per_run = [r.weather for r in runs if r.weather is not None]
    lacking = [r.name for r in runs if r.weather is None]
    if not per_run:
        return None, []
    notes = [f"{len(lacking)} run(s) have no usable {WEATHER_FILE}: {listing(lacking, 10)}."] if lacking else []
    weather = _grid(pd.concat(per_run).groupby(level=0).mean(), grid, gap)
    gaps = int(weather.isna().any(axis=1).sum())
    if gaps:
        weather = weather.interpolate(method="time", limit_direction="both")
        notes.append(f"The weather was missing at {gaps} steps (no run within {max_gap}) and was filled by "
                     "interpolating in time, since the model needs weather at every step.")
    return weather[WEATHER_COLUMNS].to_numpy(), notes


def _snapshot_graph(runs: list[_Run], runs_dir: Path) -> RoadGraph:
    """The union of the runs' graphs (normally the same graph repeated); later runs win."""
    nodes = pd.concat([r.nodes for r in runs]).drop_duplicates("node_id", keep="last")
    edges = pd.concat([r.edges for r in runs]).drop_duplicates(["source", "target"], keep="last")
    return RoadGraph(nodes, edges, source=str(runs_dir))


def _subgraph(graph: RoadGraph, keep: list[str]) -> RoadGraph:
    nodes = graph.nodes[graph.nodes["node_id"].isin(keep)]
    edges = graph.edges[graph.edges["source"].isin(keep) & graph.edges["target"].isin(keep)]
    return RoadGraph(nodes, edges, source=graph.source)


def _read_run(folder: Path) -> _Run:
    nodes_path, edges_path, traffic_path = (folder / f for f in RUN_FILES)
    raw = _read_records(nodes_path, ["node_id", "lat", "lon"], ["intersection_name", "road_type"])
    nodes = nodes_table(pd.DataFrame({"node_id": raw["node_id"].astype(str), "name": raw["intersection_name"],
                                      "lat": raw["lat"], "lon": raw["lon"], "road_class": raw["road_type"]}),
                        str(nodes_path), row=_record)
    ids = set(nodes["node_id"])

    raw = _read_records(edges_path, ["start_node_id", "end_node_id"], ["distance_m", "road_name"])
    raw_edges = pd.DataFrame({"source": raw["start_node_id"].astype(str), "target": raw["end_node_id"].astype(str),
                              "length_m": raw["distance_m"], "road_name": raw["road_name"]})
    kept = raw_edges[(raw_edges["source"] != raw_edges["target"]) & ~raw_edges.duplicated(["source", "target"])]
    edges = edges_table(kept, ids, str(edges_path), row=lambda i: _record(kept.index[i]))

    raw = _read_records(traffic_path, ["node_a_id", "node_b_id", "speed_kmh", "timestamp"], ["has_traffic_data"])
    for col in ("node_a_id", "node_b_id"):
        raw[col] = raw[col].astype(str)
        unknown = ~raw[col].isin(ids)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(f"{col} {raw[col].iloc[i]!r} is not a node_id in nodes.json",
                            f"{traffic_path} {_record(i)}")
    speed = _numbers(raw, "speed_kmh", traffic_path)
    negative = speed < 0
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise DataError(f"negative speed_kmh {speed.iloc[i]:g}", f"{traffic_path} {_record(i)}")
    time = _hcmc_times(raw["timestamp"], traffic_path).mean()
    usable = raw["has_traffic_data"].ne(False) & speed.notna()
    speeds = speed[usable].groupby([raw["node_a_id"][usable], raw["node_b_id"][usable]]).mean()
    return _Run(folder.name, nodes, edges, raw_edges.drop(kept.index), time, speeds,
                _read_run_weather(folder / WEATHER_FILE))


def _read_run_weather(path: Path) -> pd.DataFrame | None:
    """The run's weather: the mean over its per-node records, at their mean time."""
    if not path.is_file():
        return None
    raw = _read_records(path, ["timestamp", "temperature_c", "wind_speed_kmh", "precipitation_mm"])
    if raw.empty:
        return None
    values = {"temperature_c": _numbers(raw, "temperature_c", path).mean(),
              "wind_kmh": _numbers(raw, "wind_speed_kmh", path).mean(),
              "precipitation_mm": _numbers(raw, "precipitation_mm", path).mean()}
    return pd.DataFrame(values, index=pd.DatetimeIndex([_hcmc_times(raw["timestamp"], path).mean()]))


def _read_records(path: Path, required: list[str], optional: list[str] = ()) -> pd.DataFrame:
    """A JSON list of objects as a frame with the `required` keys (each record must have them)
    and the `optional` ones (NaN where absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"is not valid JSON ({reason(exc)})", str(path)) from exc
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of records, found {type(data).__name__}", str(path))
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError("is not a JSON object", f"{path} {_record(i)}")
        missing = [k for k in required if k not in record]
        if missing:
            raise DataError(f"lacks {', '.join(missing)}", f"{path} {_record(i)}")
    return pd.DataFrame(data, columns=[*required, *optional])


def _record(i: int) -> str:
    return f"record {i + 1}"


def _numbers(frame: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[col], errors="coerce").astype(float)
    bad = values.isna() & frame[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{col} {frame[col].iloc[i]!r} is not a number", f"{path} {_record(i)}")
    return values


def _hcmc_times(stamps: pd.Series, path: Path) -> pd.DatetimeIndex:
    """ISO times; without an offset they are local time in Ho Chi Minh City."""
    try:
        times = pd.DatetimeIndex(pd.to_datetime(stamps, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise DataError(f"timestamps are not ISO 8601 times of one kind ({reason(exc)})", str(path)) from exc
    if times.isna().any():
        raise DataError("empty timestamp", f"{path} {_record(int(np.flatnonzero(times.isna())[0]))}")
    return times.tz_localize(HCMC_TZ) if times.tz is None else times.tz_convert(HCMC_TZ)
