"""The road graph: intersections (nodes) joined by directed road segments (edges)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from stmgt.data.csv_layout import TIME_COLUMN, check_separator
from stmgt.errors import DataError, reason
from stmgt.paths import HCMC_GRAPH_DIR
from stmgt.storage.exports import csv_bytes, restored

if TYPE_CHECKING:
    import networkx as nx

NODE_COLUMNS = ["node_id", "name", "lat", "lon", "road_class"]
EDGE_COLUMNS = ["source", "target", "length_m", "road_name"]
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres; works element-wise on arrays."""
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def _line(row_position: int) -> str:
    """File line of a data row (the header is line 1)."""
    return f"line {row_position + 2}"


@dataclass(frozen=True, eq=False)
class RoadGraph:
    """Nodes table (`node_id, name, lat, lon, road_class`) and directed edges table
    (`source, target, length_m, road_name`). Coordinates may be absent (all NaN) for
    datasets that ship no locations; `positions()` then computes a layout."""

    nodes: pd.DataFrame
    edges: pd.DataFrame
    source: str = "graph"

    def __post_init__(self):
        nodes = nodes_table(self.nodes, f"{self.source} nodes")
        edges = edges_table(self.edges, nodes["node_id"], f"{self.source} edges")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def read(cls, folder: str | Path) -> RoadGraph:
        """Read `nodes.csv` and `edges.csv` from a folder (the generic on-disk format)."""
        folder = Path(folder)
        nodes = read_nodes(folder)
        edges = restored(read_csv_table(folder / "edges.csv", dtype={"source": str, "target": str, "road_name": str}))
        return cls(nodes, edges, source=str(folder))

    @classmethod
    def hcmc(cls) -> RoadGraph:
        """The embedded graph of central Ho Chi Minh City."""
        return cls.read(HCMC_GRAPH_DIR)

    def write(self, folder: str | Path) -> None:
        folder = Path(folder)
        (folder / "nodes.csv").write_bytes(csv_bytes(self.nodes))
        (folder / "edges.csv").write_bytes(csv_bytes(self.edges))

    # ---- views ---------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @cached_property
    def node_ids(self) -> list[str]:
        return self.nodes["node_id"].tolist()

    @cached_property
    def index_of(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.node_ids)}

    @cached_property
    def names(self) -> dict[str, str]:
        """Street name per node id; the id itself where the data name none."""
        raw = self.nodes["name"].fillna("").astype(str).str.strip()
        return {node_id: name or node_id for node_id, name in zip(self.node_ids, raw)}

    def label(self, node_id: str) -> str:
        """'n01 · Lê Lợi – Hàm Nghi', or the bare id for a node without a name: ids stay visible
        because files, URLs and the command line use them."""
        name = self.names[node_id]
        return node_id if name == node_id else f"{node_id} · {name}"

    @cached_property
    def edge_index(self) -> torch.Tensor:
        """`[2, E]` int64 over node positions, in the edges table's order."""
        src = self.edges["source"].map(self.index_of).to_numpy(np.int64)
        dst = self.edges["target"].map(self.index_of).to_numpy(np.int64)
        return torch.from_numpy(np.stack([src, dst]))

    @property
    def has_coordinates(self) -> bool:
        return bool(self.nodes[["lat", "lon"]].notna().all().all())

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx       # here, not at the top: it would slow every dashboard start (benchmarks/RESULTS.md)

        g = nx.DiGraph()
        for row in self.nodes.itertuples(index=False):
            g.add_node(row.node_id, name=row.name, lat=row.lat, lon=row.lon, road_class=row.road_class)
        for row in self.edges.itertuples(index=False):
            g.add_edge(row.source, row.target, length_m=row.length_m, road_name=row.road_name)
        return g

    def positions(self) -> pd.DataFrame:
        """`lat, lon` per node: the real coordinates, or (without them) a deterministic
        spring layout of the graph placed in a small box so maps still draw. A copy of a frame
        computed once: every map frame needs it."""
        return self._positions.copy()

    @cached_property
    def _positions(self) -> pd.DataFrame:
        if self.has_coordinates:
            return self.nodes[["lat", "lon"]].astype(float).reset_index(drop=True)
        import networkx as nx

        layout = nx.spring_layout(self.to_networkx().to_undirected(), seed=0)
        xy = np.array([layout[n] for n in self.node_ids])
        return pd.DataFrame({"lat": xy[:, 1] * 0.02, "lon": xy[:, 0] * 0.02})

    def fingerprint(self) -> str:
        """Hash of the ordered node ids and edges; a checkpoint stores it to refuse other graphs."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.node_ids).encode())
        h.update(b"\x1e")
        h.update("\x1f".join(f"{s}>{t}" for s, t in zip(self.edges["source"], self.edges["target"])).encode())
        return h.hexdigest()[:16]


def nodes_table(frame: pd.DataFrame, where: str, row=_line) -> pd.DataFrame:
    """Normalise and validate a nodes table. `where` names its file and `row(i)` its i-th
    data row, so importers of other layouts (JSON records, location lists) get messages
    that point into the file the user has."""
    nodes = _with_columns(frame, NODE_COLUMNS, where)
    if nodes.empty:
        raise DataError("there are no nodes", where)
    ids = nodes["node_id"]
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    if blank.any():
        raise DataError("empty node_id", f"{where} {row(int(np.flatnonzero(blank)[0]))}")
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate node_id {ids.iloc[i]!r}", f"{where} {row(i)}")
    reserved = ids.astype(str).str.strip() == TIME_COLUMN
    if reserved.any():
        raise DataError(f"node_id {TIME_COLUMN!r} is the name of the time column of speed.csv, so no node may "
                        "be called that; give this node another id", f"{where} {row(int(np.flatnonzero(reserved)[0]))}")
    hidden = ids.astype(str).map(lambda text: not text.isprintable())
    if hidden.any():
        i = int(np.flatnonzero(hidden)[0])
        raise DataError(f"node_id {ids.iloc[i]!r} holds a line break, tab or invisible control character (such as "
                        "a text-direction mark); ids are typed on the command line and pick roads on the maps, "
                        "so give it an id of visible characters (its name may be any text)", f"{where} {row(i)}")
    for col, lo, hi in (("lat", -90, 90), ("lon", -180, 180)):
        values = pd.to_numeric(nodes[col], errors="coerce")
        bad_text = values.isna() & nodes[col].notna()
        if bad_text.any():
            i = int(np.flatnonzero(bad_text)[0])
            raise DataError(f"{col} {nodes[col].iloc[i]!r} is not a number", f"{where} {row(i)}")
        out = (values < lo) | (values > hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise DataError(f"{col} {values.iloc[i]} is outside [{lo}, {hi}]", f"{where} {row(i)}")
    missing = nodes[["lat", "lon"]].isna().any(axis=1)
    if missing.any() and not missing.all():
        i = int(np.flatnonzero(missing)[0])
        raise DataError("coordinates missing for this node but given for others", f"{where} {row(i)}")
    return nodes


def edges_table(frame: pd.DataFrame, node_ids, where: str, row=_line) -> pd.DataFrame:
    """Normalise and validate an edges table against the known `node_ids` (see `nodes_table`)."""
    edges = _with_columns(frame, EDGE_COLUMNS, where)
    known = set(node_ids)
    for col in ("source", "target"):
        unknown = ~edges[col].isin(known)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(f"{col} {edges[col].iloc[i]!r} is not a node_id in the nodes table",
                            f"{where} {row(i)}")
    loops = edges["source"] == edges["target"]
    if loops.any():
        i = int(np.flatnonzero(loops)[0])
        raise DataError(f"self loop on node {edges['source'].iloc[i]!r}", f"{where} {row(i)}")
    dup_e = edges.duplicated(["source", "target"])
    if dup_e.any():
        i = int(np.flatnonzero(dup_e)[0])
        raise DataError(f"duplicate edge {edges['source'].iloc[i]!r} -> {edges['target'].iloc[i]!r}",
                        f"{where} {row(i)}")
    length = pd.to_numeric(edges["length_m"], errors="coerce")
    bad_text = length.isna() & edges["length_m"].notna()
    if bad_text.any():
        i = int(np.flatnonzero(bad_text)[0])
        raise DataError(f"length_m {edges['length_m'].iloc[i]!r} must be a positive number", f"{where} {row(i)}")
    if (length <= 0).any():
        i = int(np.flatnonzero(length <= 0)[0])
        raise DataError(f"length_m {length.iloc[i]} must be a positive number", f"{where} {row(i)}")
    return edges


def read_nodes(folder: str | Path) -> pd.DataFrame:
    """A folder's validated `nodes.csv` (for importers that build the edges another way)."""
    folder = Path(folder)
    frame = restored(read_csv_table(folder / "nodes.csv", dtype={"node_id": str, "name": str, "road_class": str}))
    return nodes_table(frame, f"{folder} nodes")


def _with_columns(frame: pd.DataFrame, columns: list[str], where: str) -> pd.DataFrame:
    """Check the required columns exist and normalise their types (ids as str, numbers as float)."""
    missing = [c for c in columns if c not in frame.columns]
    required = [c for c in missing if c not in ("name", "road_class", "road_name", "lat", "lon", "length_m")]
    if required:
        raise DataError(f"missing column(s) {', '.join(required)}; expected {', '.join(columns)}", where)
    frame = frame.copy()
    for c in missing:
        frame[c] = np.nan if c in ("lat", "lon", "length_m") else ""
    frame = frame[columns].reset_index(drop=True)
    for c in columns:
        if c in ("lat", "lon", "length_m"):
            converted = pd.to_numeric(frame[c], errors="coerce")
            if not (converted.isna() & frame[c].notna()).any():
                frame[c] = converted.astype(float)
        elif c in ("node_id", "source", "target"):
            frame[c] = frame[c].map(lambda v: v if pd.isna(v) else str(v).strip())
        else:
            frame[c] = frame[c].astype(object).fillna("").astype(str)
    return frame


def read_csv_table(path: Path, **read_csv_args) -> pd.DataFrame:
    """`pd.read_csv` whose failures (missing, empty, unparsable file) become one DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    check_separator(path)
    try:
        return pd.read_csv(path, **read_csv_args)
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", str(path)) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot be read as CSV ({reason(exc)})", str(path)) from exc
