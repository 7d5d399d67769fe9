"""Public benchmark datasets: matrix-style CSVs of the T-GCN era (SZ-taxi, Los-loop) and
METR-LA / PEMS-BAY as DCRNN distributes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stmgt.data.dataset import SPEED_CEILING_KMH
from stmgt.data.folder import check_rectangular, check_speeds, numeric_frame
from stmgt.data.importers.common import (MPH_TO_KMH, ImportResult, build_dataset, duration, finish, listing,
                                         units_note)
from stmgt.data.importers.safe_pickle import Refused, load_arrays, pytables_allow_list
from stmgt.data.importers.sensors import edges_from_weights, read_adjacency, same_ids, sensor_nodes
from stmgt.errors import DataError, reason
from stmgt.data.graph import RoadGraph, read_csv_table

CALIFORNIA_TZ = "America/Los_Angeles"
UNITS = ("kmh", "mph")


# ---- matrix style ----------------------------------------------------------------------------
def import_matrix(speed_csv, adjacency_csv, *, start, freq="5min", units="kmh", locations_csv=None,
                  timezone=None) -> ImportResult:
    """`speed_csv` has a header row of node ids and one row per time step without timestamps,
    so the time axis is `start` + k·`freq` (`start` without an offset is read in `timezone`,
    else UTC); `adjacency_csv` is a headerless N×N matrix in the same node order;
    `locations_csv` (`index,sensor_id,latitude,longitude` or `sensor_id,lat,lon`) places the
    nodes on the map."""
    speed_csv = Path(speed_csv)
    if units not in UNITS:
        raise DataError(f"must be 'kmh' or 'mph', not {units!r}", "units")
    check_rectangular(speed_csv)
    raw = read_csv_table(speed_csv, header=None, dtype=str)
    ids = _header_ids(raw.iloc[0], speed_csv)
    speed = numeric_frame(raw.iloc[1:].set_axis(ids, axis=1), str(speed_csv))
    if speed.empty:
        raise DataError("has a header row but no data rows", str(speed_csv))
    speed.index = _time_axis(start, freq, timezone, len(speed))
    check_speeds(speed, str(speed_csv), "mph" if units == "mph" else "km/h",
                 SPEED_CEILING_KMH / (MPH_TO_KMH if units == "mph" else 1))
    if units == "mph":
        speed *= MPH_TO_KMH
        notes = ["Speeds converted from mph to km/h (×1.609344)."]
    else:
        notes = units_note(speed.to_numpy(), "if they are, import again with units='mph'")
    nodes = sensor_nodes(ids, locations_csv)
    weights = read_adjacency(Path(adjacency_csv), ids, f"the header of {speed_csv.name}")
    graph = RoadGraph(nodes, edges_from_weights(weights, nodes), source=str(adjacency_csv))
    provenance = {"source": "matrix CSV", "speed": str(speed_csv), "adjacency": str(adjacency_csv),
                  "locations": None if locations_csv is None else str(locations_csv),
                  "units": "km/h", "original_units": units}
    return finish(build_dataset(speed, None, graph, provenance, str(speed_csv)), notes)


def _header_ids(header: pd.Series, path: Path) -> list[str]:
    ids = header.fillna("").astype(str).str.strip().tolist()
    for k, node_id in enumerate(ids):
        if not node_id:
            raise DataError(f"column {k + 1} has no node id in the header row", f"{path} line 1")
    return ids


def _time_axis(start, freq, timezone, periods: int) -> pd.DatetimeIndex:
    step = duration(freq, "freq")
    try:
        t0 = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{start!r} is not an ISO 8601 time", "start") from exc
    try:
        if t0.tz is None:
            t0 = t0.tz_localize(timezone or "UTC")
        elif timezone:
            t0 = t0.tz_convert(timezone)
    except (KeyError, ValueError) as exc:  # unknown zone, or a local time the clock skips
        raise DataError(f"cannot place {start!r} in time zone {timezone!r} ({reason(exc)})", "timezone") from exc
    return pd.date_range(t0, periods=periods, freq=step)


# ---- METR-LA / PEMS-BAY ----------------------------------------------------------------------
def import_metr_la(speed_h5, adj_pkl, *, locations_csv=None) -> ImportResult:
    """A pandas HDF5 table (naive Californian local time × sensor ids, mph, 0 = no reading) and
    `adj_mx.pkl` = [sensor_ids, sensor_id_to_index, N×N weights], whose sensor order the nodes
    follow; the optional locations CSV is `index,sensor_id,latitude,longitude`."""
    speed_h5, adj_pkl = Path(speed_h5), Path(adj_pkl)
    table = _read_h5_table(speed_h5)
    ids, weights = _read_adj_pickle(adj_pkl)
    same_ids(table.columns.tolist(), ids, str(speed_h5), adj_pkl.name)
    non_numeric = [c for c in ids if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise DataError(f"column(s) {listing(non_numeric)} are not numeric", str(speed_h5))
    speed, notes = _on_regular_grid(table[ids].astype(float), CALIFORNIA_TZ, str(speed_h5))
    check_speeds(speed, str(speed_h5), "mph", SPEED_CEILING_KMH / MPH_TO_KMH)
    zeros = speed.eq(0)
    speed = speed.mask(zeros) * MPH_TO_KMH
    notes = ["Speeds converted from mph to km/h (×1.609344).",
             f"{zeros.to_numpy().mean():.1%} of the readings were 0, which these sensors record when "
             "they have no data; they are treated as missing.", *notes]
    nodes = sensor_nodes(ids, locations_csv)
    graph = RoadGraph(nodes, edges_from_weights(weights, nodes), source=str(adj_pkl))
    provenance = {"source": "METR-LA/PEMS-BAY", "speed": str(speed_h5), "adjacency": str(adj_pkl),
                  "locations": None if locations_csv is None else str(locations_csv),
                  "units": "km/h", "original_units": "mph"}
    return finish(build_dataset(speed, None, graph, provenance, str(speed_h5)), notes)


def _on_regular_grid(frame: pd.DataFrame, tz: str, where: str) -> tuple[pd.DataFrame, list[str]]:
    """Naive local timestamps → a tz-aware regular grid. Rows whose local time the clock skips
    (spring) or repeats (autumn) cannot be placed, so they are dropped; the grid is then laid
    in real time and its steps without a row are missing."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError("the table is not indexed by time", where)
    if index.has_duplicates:
        raise DataError(f"duplicate timestamp {index[index.duplicated()][0]}", where)
    if not index.is_monotonic_increasing:
        i = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
        raise DataError(f"timestamps are not in increasing order at {index[i]}", where)
    local = index.tz_localize(tz, ambiguous="NaT", nonexistent="NaT") if index.tz is None else index.tz_convert(tz)
    placed = frame[~local.isna()].set_axis(local[~local.isna()])
    if len(placed) < 2:
        raise DataError("the data needs at least two time steps", where)
    cadence = placed.index.to_series().diff().mode().iloc[0]
    grid = pd.date_range(placed.index[0], placed.index[-1], freq=cadence)
    off_grid = ~placed.index.isin(grid)
    if off_grid.any():
        raise DataError(f"irregular time steps: {placed.index[off_grid][0]} is off the {cadence} cadence", where)
    notes = []
    if len(placed) < len(frame):
        notes.append(f"{len(frame) - len(placed)} rows at daylight-saving clock changes were dropped "
                     "(their local time is skipped or repeated).")
    if len(grid) > len(placed):
        notes.append(f"{len(grid) - len(placed)} time steps absent from the file were added as missing.")
    return placed.reindex(grid), notes


def _read_h5_table(path: Path) -> pd.DataFrame:
    """The one table (or the one named `df`) of a pandas HDF5 file. PyTables unpickles the
    file's attributes and object arrays, so that runs under the allow-list."""
    try:
        import tables
    except ImportError as exc:
        raise DataError("reading .h5 files needs the optional PyTables package: pip install tables",
                        str(path)) from exc
    if not path.is_file():
        raise DataError("file not found", str(path))
    refused, keys, table = [], [], None
    try:
        with pytables_allow_list(tables, refused), pd.HDFStore(path, mode="r") as store:
            keys = store.keys()
            key = keys[0] if len(keys) == 1 else "/df"
            table = store.get(key) if key in keys else None
    except Exception as exc:  # HDF5, PyTables and pandas raise many kinds on a bad file
        if not refused:
            raise DataError(f"cannot be read as a pandas HDF5 table ({reason(exc)})", str(path)) from exc
    if refused:
        raise DataError(f"refused: a pickle inside refers to {refused[0]}, which could run code "
                        "(only numbers, text and pandas frequencies are accepted)", str(path))
    if table is None and len(keys) > 1:
        raise DataError(f"holds {len(keys)} tables ({', '.join(keys)}); expected one, or one named df", str(path))
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise DataError("holds no speed table (time × sensor)", str(path))
    return table.set_axis([str(c) for c in table.columns], axis=1)


def _read_adj_pickle(path: Path) -> tuple[list[str], np.ndarray]:
    """DCRNN's `adj_mx.pkl`: [sensor_ids, sensor_id_to_index, N×N weights]; the weights are
    returned in `sensor_ids` order."""
    where = str(path)
    if not path.is_file():
        raise DataError("file not found", where)
    try:
        obj = load_arrays(path.read_bytes())
    except Refused as exc:
        raise DataError(f"refused: the pickle refers to {exc}, but an adjacency pickle holds only lists, "
                        "dicts and numeric arrays (loading it could run code)", where) from exc
    except Exception as exc:  # any failure on untrusted bytes means a bad file
        raise DataError(f"cannot be read as a pickle ({type(exc).__name__}: {reason(exc)})", where) from exc
    layout = "expected [sensor_ids, sensor_id_to_index, N×N matrix] as in DCRNN's adj_mx.pkl"
    if not (isinstance(obj, (list, tuple)) and len(obj) == 3):
        raise DataError(f"{layout}; found {type(obj).__name__}", where)
    ids, index, weights = obj
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "USiu":
        ids = ids.tolist()
    if not (isinstance(ids, (list, tuple)) and all(isinstance(i, (str, bytes, int)) for i in ids)):
        raise DataError(f"{layout}; its sensor_ids are not a list of ids", where)
    if not isinstance(index, dict):
        raise DataError(f"{layout}; its sensor_id_to_index is {type(index).__name__}, not a dict", where)
    ids, index = [_text(i) for i in ids], {_text(k): v for k, v in index.items()}
    positions = [index.get(i) for i in ids]
    if len(index) != len(ids) or sorted(map(str, positions)) != sorted(map(str, range(len(ids)))):
        raise DataError("sensor_id_to_index does not map the sensor ids onto 0..N-1", where)
    if not (isinstance(weights, np.ndarray) and weights.dtype.kind in "biuf"):
        raise DataError(f"{layout}; its matrix is {type(weights).__name__}, not a numeric array", where)
    if weights.shape != (len(ids), len(ids)):
        raise DataError(f"the matrix is {'×'.join(map(str, weights.shape))} but there are {len(ids)} "
                        f"sensor ids; expected {len(ids)}×{len(ids)}", where)
    if not np.isfinite(weights).all():
        raise DataError("the matrix has missing or infinite weights", where)
    return ids, weights[np.ix_(positions, positions)].astype(float)


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)
