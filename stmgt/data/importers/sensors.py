"""Sensor networks given as matrices (the benchmark formats and generic `adjacency.csv`):
nodes from sensor ids, optional locations, and edges from an adjacency matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stmgt.data.folder import numeric_frame
from stmgt.data.importers.common import listing
from stmgt.errors import DataError
from stmgt.data.graph import haversine_m, nodes_table, read_csv_table


def sensor_nodes(ids: list[str], locations_csv) -> pd.DataFrame:
    """Nodes of a sensor network; without locations their coordinates stay NaN."""
    coords = (read_locations(Path(locations_csv), ids) if locations_csv is not None
              else pd.DataFrame({"lat": np.nan, "lon": np.nan}, index=range(len(ids))))
    return pd.DataFrame({"node_id": ids, "name": [f"sensor {i}" for i in ids],
                         "lat": coords["lat"].to_numpy(), "lon": coords["lon"].to_numpy(), "road_class": ""})


def read_locations(path: Path, ids: list[str]) -> pd.DataFrame:
    """`lat, lon` in `ids` order, from `index,sensor_id,latitude,longitude` or `sensor_id,lat,lon`."""
    frame = read_csv_table(path, dtype={"sensor_id": str})
    frame = frame.set_axis(frame.columns.str.strip(), axis=1).rename(
        columns={"sensor_id": "node_id", "latitude": "lat", "longitude": "lon"})
    if not {"node_id", "lat", "lon"} <= set(frame.columns):
        raise DataError(f"columns are {', '.join(map(str, frame.columns))}; expected "
                        "index,sensor_id,latitude,longitude or sensor_id,lat,lon", str(path))
    table = nodes_table(frame[["node_id", "lat", "lon"]], str(path))
    same_ids(table["node_id"].tolist(), ids, str(path), "the speed data")
    return table.set_index("node_id").loc[ids, ["lat", "lon"]].reset_index(drop=True)


def same_ids(found: list[str], expected: list[str], where: str, other: str) -> None:
    """Files describing the same sensors must list the same ids."""
    unknown = [i for i in found if i not in set(expected)]
    absent = [i for i in expected if i not in set(found)]
    if unknown or absent:
        parts = ([f"{len(unknown)} not in {other} ({listing(unknown)})"] if unknown else []) + \
                ([f"none for {len(absent)} of {other}'s ({listing(absent)})"] if absent else [])
        raise DataError(f"lists {len(found)} sensors but {other} has {len(expected)}: " + "; ".join(parts), where)


def read_adjacency(path: Path, ids: list[str], ids_from: str) -> np.ndarray:
    """N×N weights in `ids` order. A header row of node ids is optional (recognised by the
    matrix having N+1 rows) and may order the nodes differently; without it, `ids`' order."""
    raw = read_csv_table(path, header=None, dtype=str)
    n, order = len(ids), None
    if len(raw) == n + 1:
        header = raw.iloc[0].fillna("").astype(str).str.strip().tolist()
        if sorted(header) != sorted(ids):
            raise DataError(f"has {n + 1} rows for the {n} nodes of {ids_from}, so its first row should "
                            "list their ids, but it does not", f"{path} line 1")
        order = [header.index(i) for i in ids]
        raw = raw.iloc[1:]
    if raw.shape != (n, n):
        raise DataError(f"is a {raw.shape[0]}×{raw.shape[1]} matrix but {ids_from} has {n} nodes; "
                        f"expected {n}×{n} (plus an optional header row of node ids)", str(path))
    first_line = 1 if order is None else 2
    weights = numeric_frame(raw, str(path), first_line=first_line)
    empty = weights.isna().any(axis=1).to_numpy()
    if empty.any():
        raise DataError("empty cell in the matrix", f"{path} line {int(np.flatnonzero(empty)[0]) + first_line}")
    return weights.to_numpy() if order is None else weights.to_numpy()[np.ix_(order, order)]


def edges_from_weights(weights: np.ndarray, nodes: pd.DataFrame) -> pd.DataFrame:
    """One directed edge i→j per non-zero off-diagonal weight. Lengths are great-circle
    distances when the nodes have coordinates (NaN otherwise, and for co-located sensors)."""
    src, dst = np.nonzero((weights != 0) & ~np.eye(len(weights), dtype=bool))
    lat, lon = nodes["lat"].to_numpy(float), nodes["lon"].to_numpy(float)
    length = haversine_m(lat[src], lon[src], lat[dst], lon[dst])
    ids = nodes["node_id"].to_numpy()
    return pd.DataFrame({"source": ids[src], "target": ids[dst],
                         "length_m": np.where(length > 0, length, np.nan), "road_name": ""})
