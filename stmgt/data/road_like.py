"""Generated road-like networks of any size, with simulated speeds on them: what measures how the
model and the dashboard scale with the graph (benchmarks/graph_scaling.py, the large-graph test)
where no real city of hundreds or thousands of roads ships with the project. The grid is jittered
and each node is linked both ways to its grid neighbours and some diagonal ones, so in-degrees run
from 1 to 8 as on a city's road network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stmgt.data.dataset import TrafficDataset
from stmgt.data.graph import RoadGraph, haversine_m
from stmgt.data.simulate import SimulationConfig, TrafficSimulator

# Links drawn per direction on the grid: (row step, column step, share of them kept).
LINKS = ((0, 1, 0.9), (1, 0, 0.9), (1, 1, 0.25), (1, -1, 0.25))
ORIGIN = (10.70, 106.62)          # south-west corner (lat, lon): the embedded data's city, so its time zone fits
SPACING_DEG = 0.0027              # about 300 m between grid neighbours
MAIN_EVERY = 4                    # every 4th row and column is a primary road, the rest secondary


def road_like_edges(nodes: int, seed: int = 0) -> torch.Tensor:
    """[2, E] links of a `nodes`-node grid (row-major, `ceil(sqrt(nodes))` columns): each node to
    its right and lower neighbour (90 % kept) and to each lower diagonal (25 %), both ways."""
    g = torch.Generator().manual_seed(seed)
    side = grid_side(nodes)
    node = torch.arange(nodes)
    row, col = node // side, node % side
    links = []
    for drow, dcol, share in LINKS:
        r, c = row + drow, col + dcol
        other = r * side + c
        ok = (c >= 0) & (c < side) & (other < nodes) & (torch.rand(nodes, generator=g) < share)
        links.append(torch.stack([node[ok], other[ok]]))
    one_way = torch.cat(links, 1)
    return torch.cat([one_way, one_way.flip(0)], 1)


def grid_side(nodes: int) -> int:
    """Columns of the grid: the smallest square that holds `nodes`."""
    return int(np.ceil(np.sqrt(nodes)))


def road_like_graph(nodes: int, seed: int = 0) -> RoadGraph:
    """The grid of `road_like_edges` as a RoadGraph: ids `r003c017`, coordinates jittered by up to
    a fifth of the spacing, streets named by row and column, lengths from the coordinates."""
    rng = np.random.default_rng(seed)
    side = grid_side(nodes)
    row, col = np.divmod(np.arange(nodes), side)
    lat = ORIGIN[0] + SPACING_DEG * (row + rng.uniform(-0.2, 0.2, nodes))
    lon = ORIGIN[1] + SPACING_DEG * (col + rng.uniform(-0.2, 0.2, nodes))
    ids = [f"r{r:03d}c{c:03d}" for r, c in zip(row, col)]
    main = (row % MAIN_EVERY == 0) | (col % MAIN_EVERY == 0)
    table = pd.DataFrame({"node_id": ids, "name": [f"Street {r} – Avenue {c}" for r, c in zip(row, col)],
                          "lat": lat.round(6), "lon": lon.round(6),
                          "road_class": np.where(main, "primary", "secondary")})
    src, dst = road_like_edges(nodes, seed).numpy()
    street = np.where(row[src] == row[dst], [f"Street {r}" for r in row[src]],
                      np.where(col[src] == col[dst], [f"Avenue {c}" for c in col[src]], "Diagonal link"))
    edges = pd.DataFrame({"source": [ids[i] for i in src], "target": [ids[i] for i in dst],
                          "length_m": haversine_m(lat[src], lon[src], lat[dst], lon[dst]).round(1),
                          "road_name": street})
    return RoadGraph(table, edges, source=f"road-like graph of {nodes} nodes")


def road_like_dataset(nodes: int, weeks: float = 2, seed: int = 0) -> TrafficDataset:
    """`weeks` of the simulator's 15-minute speeds and weather on `road_like_graph(nodes, seed)`,
    recorded as generated data rather than the simulator's (as an import of a real network would
    be): no simulator is rebuilt behind it."""
    simulated = TrafficSimulator(SimulationConfig(seed=seed, weeks=weeks), road_like_graph(nodes, seed)).run()
    return TrafficDataset(simulated.timestamps, simulated.speed, simulated.weather, simulated.graph,
                          {"source": "generated road-like graph", "nodes": nodes, "seed": seed, "weeks": weeks,
                           "units": "km/h"})
