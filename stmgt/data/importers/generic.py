"""The generic folder, a little more liberal than `read_folder`: `speed.parquet` may replace
`speed.csv`, and an N×N `adjacency.csv` may replace `edges.csv`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stmgt.data.folder import assemble_folder, read_timeseries, timeseries_frame
from stmgt.data.importers.common import ImportResult, finish, units_note
from stmgt.data.importers.sensors import edges_from_weights, read_adjacency
from stmgt.errors import DataError, reason
from stmgt.data.graph import RoadGraph, read_nodes


def import_generic(folder, timezone: str | None = None) -> ImportResult:
    """`nodes.csv`, `edges.csv` or `adjacency.csv` (node-id header row optional; without it the
    rows and columns follow nodes.csv), `speed.csv` or `speed.parquet`, optional `weather.csv`
    and `dataset.json`. `timezone` places timestamps written without a UTC offset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("folder not found", str(folder))
    notes = []
    links = _one_of(folder, "edges.csv", "adjacency.csv")
    if links.name == "edges.csv":
        graph = RoadGraph.read(folder)
    else:
        nodes = read_nodes(folder)
        edges = edges_from_weights(read_adjacency(links, nodes["node_id"].tolist(), "nodes.csv"), nodes)
        graph = RoadGraph(nodes, edges, source=str(folder))
        notes.append(f"The {len(edges)} road links come from the non-zero entries of adjacency.csv "
                     "(the weights themselves are not kept).")
    speed_path = _one_of(folder, "speed.csv", "speed.parquet")
    speed = (read_timeseries(speed_path, timezone=timezone) if speed_path.suffix == ".csv"
             else _read_parquet(speed_path, timezone))
    dataset = assemble_folder(folder, graph, speed, speed_path, timezone)
    notes += units_note(dataset.speed, "speed tables must be in km/h, so convert them (×1.609344) first")
    return finish(dataset, notes)


def _one_of(folder: Path, first: str, second: str) -> Path:
    present = [folder / name for name in (first, second) if (folder / name).is_file()]
    if len(present) == 1:
        return present[0]
    raise DataError("file not found" if not present else "both files are present; keep only one",
                    f"{folder / first} or {second}")


def _read_parquet(path: Path, timezone: str | None) -> pd.DataFrame:
    """Same layout as speed.csv; the timestamp may be a datetime column or the index."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot be read as Parquet ({reason(exc)})", str(path)) from exc
    if "timestamp" in frame.index.names:
        frame = frame.reset_index()
    return timeseries_frame(frame, str(path), timezone=timezone)
