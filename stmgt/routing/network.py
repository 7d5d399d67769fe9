"""Routes over the directed road graph and their travel times from node speed forecasts.

Travel-time model, shared by the forecast, the historical average and the true travel time:
- **Segment speed.** The data model makes a node's speed the mean over its incident segments, so
  a segment shares its speed with both of its ends; its speed is taken as the mean of its two end
  nodes' speeds (at least `MIN_SPEED_KMH`).
- **Time dependence.** A segment entered τ minutes after the forecast was made is driven at the
  speed of the step nearest τ (step 1 at the earliest: the forecast's first; past the last step of
  the speeds given, the last one stands). Each segment is driven at its entry speed throughout.
- **Routes.** The fastest route minimises the travel time on the expected (mixture mean) speeds
  with this time dependence; the shortest minimises length. One-way streets are one directed edge.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph

MIN_SPEED_KMH = 2.0     # a mixture's Gaussian tails reach below zero; traffic does not
MINUTES_PER_HOUR = 60.0


@dataclass(frozen=True, eq=False)
class Route:
    """A path: node ids in order and the positions of its segments in the graph's edges table."""

    nodes: list[str]
    edges: np.ndarray


class RoadNetwork:
    """The road graph as something to drive on: segment lengths, end nodes, and path finding."""

    def __init__(self, graph: RoadGraph):
        self.graph = graph
        self.source, self.target = graph.edge_index.numpy()
        self.length_m = graph.edges["length_m"].to_numpy(float)
        self.edge_of = {(s, t): i for i, (s, t) in enumerate(zip(graph.edges["source"], graph.edges["target"]))}
        self.out_edges = [[] for _ in range(graph.num_nodes)]
        for i, s in enumerate(self.source):
            self.out_edges[s].append(i)

    @cached_property
    def digraph(self):
        return self.graph.to_networkx()

    def check_node(self, node_id: str, option: str) -> int:
        """The node's position; a DataError naming `option` for an unknown id."""
        if node_id not in self.graph.index_of:
            ids = self.graph.node_ids
            raise DataError(f"unknown node {node_id!r}; node ids are {ids[0]} … {ids[-1]}", option)
        return self.graph.index_of[node_id]

    def route(self, nodes: list[str]) -> Route:
        return Route(list(nodes), np.array([self.edge_of[pair] for pair in zip(nodes, nodes[1:])], dtype=np.int64))

    def shortest(self, origin: str, destination: str) -> Route:
        """The shortest route by length (networkx Dijkstra on `length_m`)."""
        import networkx as nx

        try:
            return self.route(nx.dijkstra_path(self.digraph, origin, destination, weight="length_m"))
        except nx.NetworkXNoPath:
            raise self._unreachable(origin, destination) from None

    def fastest(self, origin: str, destination: str, speeds: np.ndarray, depart_min: float,
                step_min: float) -> Route:
        """The route of least travel time leaving `depart_min` minutes after the forecast was made,
        on `speeds` [S, N] (km/h, one row per step after it).

        Dijkstra with arrival-time labels: networkx's Dijkstra cannot do this, since its weight
        callback is not told when the segment is entered. Exact while later entry never means
        earlier arrival (true within a step; at a step change a segment may speed up)."""
        start, goal = self.check_node(origin, "origin"), self.check_node(destination, "destination")
        arrival, previous = {start: depart_min}, {}
        queue, done = [(depart_min, start)], set()
        while queue:
            t, node = heapq.heappop(queue)
            if node in done:
                continue
            if node == goal:
                break
            done.add(node)
            for edge in self.out_edges[node]:
                nxt = self.target[edge]
                t_next = t + float(self.segment_minutes(np.array([edge]), speeds[None], np.array([t]), step_min)[0])
                if t_next < arrival.get(nxt, np.inf):
                    arrival[nxt], previous[nxt] = t_next, edge
                    heapq.heappush(queue, (t_next, nxt))
        if goal not in arrival:
            raise self._unreachable(origin, destination)
        edges = [] if start == goal else [previous[goal]]
        while edges and self.source[edges[-1]] != start:
            edges.append(previous[self.source[edges[-1]]])
        edges.reverse()
        ids = self.graph.node_ids
        return Route([origin] + [ids[self.target[e]] for e in edges], np.array(edges, dtype=np.int64))

    def segment_minutes(self, edges: np.ndarray, speeds: np.ndarray, entry_min: np.ndarray,
                        step_min: float) -> np.ndarray:
        """Minutes to drive segment `edges[i]` entered at `entry_min[i]` (minutes after the forecast
        was made) in speed field i of `speeds` [M, S, N]; returns [M]."""
        step = np.clip(np.rint(entry_min / step_min).astype(np.int64), 1, speeds.shape[1]) - 1
        rows = np.arange(len(speeds))
        speed = (speeds[rows, step, self.source[edges]] + speeds[rows, step, self.target[edges]]) / 2
        return self.length_m[edges] / 1000 / np.maximum(speed, MIN_SPEED_KMH) * MINUTES_PER_HOUR

    def drive(self, route: Route, speeds: np.ndarray, depart_min: float, step_min: float) -> np.ndarray:
        """Entry minute of every segment and the arrival minute (after the forecast was made) for
        each of M speed fields [M, S, N]: returns [M, len(route.edges) + 1]."""
        times = np.full((len(speeds), len(route.edges) + 1), float(depart_min))
        for k, edge in enumerate(route.edges):
            edges = np.full(len(speeds), edge)
            times[:, k + 1] = times[:, k] + self.segment_minutes(edges, speeds, times[:, k], step_min)
        return times

    def _unreachable(self, origin: str, destination: str) -> DataError:
        return DataError(f"no route from {self.graph.label(origin)} to {self.graph.label(destination)}: "
                         "the directed segments (one-way streets included) do not connect them")


@dataclass(frozen=True, eq=False)
class TravelTime:
    """A travel-time distribution as Monte Carlo samples, in minutes."""

    samples: np.ndarray

    def quantile(self, level: float) -> float:
        return float(np.quantile(self.samples, level))

    @property
    def p10(self) -> float:
        return self.quantile(0.1)

    @property
    def p50(self) -> float:
        return self.quantile(0.5)

    @property
    def p90(self) -> float:
        return self.quantile(0.9)

    @property
    def mean(self) -> float:
        return float(self.samples.mean())

    def p_on_time(self, budget_min: float) -> float:
        """P(travel time ≤ `budget_min`)."""
        return float((self.samples <= budget_min).mean())

    def suggested_budget(self) -> int:
        """A time budget worth asking about, in whole minutes: the median plus a margin of half the
        way to P90, rounded up. Its P(on time) lies between the median's 50 % and P90's 90 % (on
        any but a spread under a minute), so the first answer says something about the trip."""
        return int(np.ceil(self.p50 + (self.p90 - self.p50) / 2))


def entry_times(anchor_time: pd.Timestamp, minutes: np.ndarray) -> pd.DatetimeIndex:
    """Clock times of minutes after the forecast was made."""
    return anchor_time + pd.to_timedelta(np.asarray(minutes, float), unit="min")


def segments_table(network: RoadNetwork, route: Route, times: np.ndarray, anchor_time: pd.Timestamp) -> pd.DataFrame:
    """One row per segment of a route driven on the expected speeds (`times` from `drive`, one field)."""
    times = np.asarray(times).reshape(-1)
    ids = network.graph.node_ids
    minutes = np.diff(times)
    length = network.length_m[route.edges]
    return pd.DataFrame({
        "from": [ids[s] for s in network.source[route.edges]],
        "to": [ids[t] for t in network.target[route.edges]],
        "road_name": network.graph.edges["road_name"].to_numpy()[route.edges],
        "length_m": length,
        "expected_speed_kmh": length / 1000 / np.maximum(minutes, 1e-9) * MINUTES_PER_HOUR,
        "entry_time": entry_times(anchor_time, times[:-1]).round("s"),
        "minutes": minutes,
    })
