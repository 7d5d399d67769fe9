"""Routes and travel times: path finding with one-way segments, time-dependent entry steps,
unreachable destinations, and the copula's dependence reaching the travel-time spread."""

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.routing.copula import ErrorCopula, mixture_draws
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph
from stmgt.model.mixture import GaussianMixture
from stmgt.routing.network import RoadNetwork, TravelTime

STEP_MIN = 15.0


def network(edges: list[tuple[str, str, float]], nodes="ABCDE") -> RoadNetwork:
    table = pd.DataFrame({"node_id": list(nodes), "name": [f"node {n}" for n in nodes]})
    frame = pd.DataFrame(edges, columns=["source", "target", "length_m"]).assign(road_name="street")
    return RoadNetwork(RoadGraph(table, frame))


def flat(speeds_by_node: dict, net: RoadNetwork, steps: int = 4) -> np.ndarray:
    """[steps, N] speeds, the same at every step."""
    row = np.array([speeds_by_node[n] for n in net.graph.node_ids], dtype=float)
    return np.tile(row, (steps, 1))


def test_one_way_segments_are_driven_one_way_only():
    # A→B is one-way; A↔C two-way via separate segments; C→A long.
    net = network([("A", "B", 100), ("B", "C", 100), ("C", "B", 100), ("A", "C", 500), ("C", "A", 1000)])
    assert net.shortest("A", "C").nodes == ["A", "B", "C"]
    assert net.shortest("C", "A").nodes == ["C", "A"]               # not back along A→B
    assert net.shortest("B", "A").nodes == ["B", "C", "A"]
    route = net.shortest("B", "A")
    assert net.length_m[route.edges].sum() == 1100
    speeds = flat(dict(A=20, B=20, C=20, D=20, E=20), net)
    assert net.fastest("B", "A", speeds, 0.0, STEP_MIN).nodes == ["B", "C", "A"]


def test_unreachable_destination_and_unknown_node_are_clear_errors():
    net = network([("A", "B", 100), ("B", "A", 100), ("D", "A", 100)])
    with pytest.raises(DataError, match="no route from A · node A to D · node D"):
        net.shortest("A", "D")
    with pytest.raises(DataError, match="no route"):
        net.fastest("A", "D", flat(dict(A=20, B=20, C=20, D=20, E=20), net), 0.0, STEP_MIN)
    with pytest.raises(DataError, match="origin: unknown node 'Z'"):
        net.fastest("Z", "A", flat(dict(A=20, B=20, C=20, D=20, E=20), net), 0.0, STEP_MIN)


def test_segments_use_the_step_nearest_their_entry_time():
    net = network([("A", "B", 5000), ("B", "C", 1000)])
    speeds = np.full((4, 5), 12.0)
    speeds[1, [1, 2]] = 30.0          # step 2 (30 min after the forecast): B and C fast
    times = net.drive(net.shortest("A", "C"), speeds[None], 0.0, STEP_MIN)[0]
    # A→B at step 1: 5 km at 12 km/h = 25 min; entered at 25 min, B→C uses step 2 (nearest 30 min).
    np.testing.assert_allclose(times, [0.0, 25.0, 25.0 + 1 / 30 * 60])
    late = net.drive(net.shortest("A", "C"), speeds[None], 40.0, STEP_MIN)[0]
    # Leaving at 40 min: A→B uses step 3 (45 min), B→C entered at 65 min step 4: 12 km/h both.
    np.testing.assert_allclose(np.diff(late), [25.0, 5.0])


def test_fastest_route_depends_on_when_it_is_driven():
    net = network([("A", "B", 1000), ("B", "D", 1000), ("A", "C", 1000), ("C", "D", 1000)])
    speeds = np.full((4, 5), 20.0)
    speeds[0, 1], speeds[0, 2] = 40.0, 5.0        # at step 1 the road through B is fast
    speeds[1:, 1], speeds[1:, 2] = 5.0, 40.0      # from step 2 on, the road through C is
    assert net.fastest("A", "D", speeds, 0.0, STEP_MIN).nodes == ["A", "B", "D"]
    assert net.fastest("A", "D", speeds, 30.0, STEP_MIN).nodes == ["A", "C", "D"]
    assert net.shortest("A", "D").nodes in (["A", "B", "D"], ["A", "C", "D"])


def test_perfectly_correlated_nodes_give_the_comonotone_spread():
    """With every score the same draw, the travel time at level p is the time driven at every
    node's speed quantile 1 − p (travel time falls as speed rises)."""
    net = network([("A", "B", 400), ("B", "C", 600), ("C", "D", 500)])
    horizon, nodes = 3, np.arange(4)
    means = torch.tensor([[18.0, 25.0], [12.0, 16.0], [22.0, 30.0], [15.0, 15.5]]).expand(horizon, 4, 2)
    mixture = GaussianMixture(means, torch.full_like(means, 2.0), torch.full_like(means, 0.5))
    route = net.shortest("A", "D")
    rng = np.random.default_rng(0)

    def spread(copula):
        draws = np.zeros((20000, horizon, 5))
        draws[:, :, nodes] = mixture_draws(mixture, copula.sample(nodes, 20000, rng))
        return TravelTime(net.drive(route, draws, 0.0, STEP_MIN)[:, -1])

    comonotone = spread(ErrorCopula(np.ones((5, 5)), np.ones((horizon, horizon))))
    for level in (0.1, 0.5, 0.9):
        speeds = np.zeros((1, horizon, 5))
        speeds[0, :, nodes] = mixture.quantiles([1 - level])[..., 0].numpy().T
        exact = net.drive(route, speeds, 0.0, STEP_MIN)[0, -1]
        assert comonotone.quantile(level) == pytest.approx(exact, rel=0.01)
    independent = spread(ErrorCopula.independent(5, horizon))
    assert independent.p90 - independent.p10 < 0.75 * (comonotone.p90 - comonotone.p10)
    assert independent.p50 == pytest.approx(comonotone.p50, rel=0.03)


def test_copula_fit_recovers_a_separable_correlation():
    rng = np.random.default_rng(1)
    spatial = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    temporal = np.array([[1.0, 0.8], [0.8, 1.0]])
    z = ErrorCopula(spatial, temporal).sample(np.arange(3), 8000, rng)
    z[5, 1, 2] = np.nan                                           # a missing reading is left out
    fitted = ErrorCopula.from_scores(z)
    np.testing.assert_allclose(fitted.spatial, spatial, atol=0.05)
    np.testing.assert_allclose(fitted.temporal, temporal, atol=0.05)


def test_travel_time_summary():
    travel = TravelTime(np.arange(1, 101, dtype=float))
    assert travel.p50 == pytest.approx(50.5) and travel.mean == pytest.approx(50.5)
    assert travel.p_on_time(30) == pytest.approx(0.30)
