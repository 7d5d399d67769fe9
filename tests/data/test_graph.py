"""RoadGraph: the embedded HCMC graph's properties and clear errors for malformed graph files."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph, haversine_m


@pytest.fixture(scope="module")
def hcmc():
    return RoadGraph.hcmc()


def test_hcmc_graph_shape(hcmc):
    assert hcmc.num_nodes == 62 and hcmc.num_edges == 144
    assert hcmc.edge_index.shape == (2, 144) and hcmc.edge_index.dtype.is_floating_point is False
    assert set(hcmc.nodes.road_class) <= {"trunk", "primary", "secondary"}
    assert nx.is_strongly_connected(hcmc.to_networkx())


def test_hcmc_nodes_sit_in_central_ho_chi_minh_city(hcmc):
    assert hcmc.nodes.lat.between(10.72, 10.83).all() and hcmc.nodes.lon.between(106.64, 106.73).all()
    assert hcmc.nodes.name.str.len().gt(3).all()
    assert hcmc.edges.road_name.str.len().gt(1).all()


def test_hcmc_lengths_are_haversine(hcmc):
    pos = hcmc.nodes.set_index("node_id")
    s, t = pos.loc[hcmc.edges.source], pos.loc[hcmc.edges.target]
    expected = haversine_m(s.lat.to_numpy(), s.lon.to_numpy(), t.lat.to_numpy(), t.lon.to_numpy())
    np.testing.assert_allclose(hcmc.edges.length_m, expected, atol=0.2)
    assert 150 <= np.median(expected) <= 1000


def test_haversine_known_distance():
    # one degree of latitude is ~111.2 km
    assert abs(haversine_m(10.0, 106.0, 11.0, 106.0) - 111_195) < 50


def test_fingerprint_depends_on_ids_and_edges(hcmc):
    same = RoadGraph(hcmc.nodes, hcmc.edges)
    assert same.fingerprint() == hcmc.fingerprint()
    fewer = RoadGraph(hcmc.nodes, hcmc.edges.iloc[:-1])
    assert fewer.fingerprint() != hcmc.fingerprint()
    renamed = hcmc.nodes.assign(name="x")          # names are not part of the identity
    assert RoadGraph(renamed, hcmc.edges).fingerprint() == hcmc.fingerprint()


def _write(tmp_path, nodes, edges):
    nodes = pd.DataFrame(nodes, columns=["node_id", "name", "lat", "lon", "road_class"])
    edges = pd.DataFrame(edges, columns=["source", "target", "length_m", "road_name"])
    nodes.to_csv(tmp_path / "nodes.csv", index=False)
    edges.to_csv(tmp_path / "edges.csv", index=False)


GOOD_NODES = [("a", "A", 10.77, 106.70, "primary"), ("b", "B", 10.78, 106.70, "primary"),
              ("c", "C", 10.78, 106.71, "trunk")]
GOOD_EDGES = [("a", "b", 1100.0, "X"), ("b", "c", 1000.0, "Y"), ("c", "a", 1500.0, "Z")]


def test_reads_a_valid_folder(tmp_path):
    _write(tmp_path, GOOD_NODES, GOOD_EDGES)
    g = RoadGraph.read(tmp_path)
    assert g.node_ids == ["a", "b", "c"]
    assert g.edge_index.tolist() == [[0, 1, 2], [1, 2, 0]]


@pytest.mark.parametrize("nodes,edges,file,message", [
    (GOOD_NODES, GOOD_EDGES + [("a", "zz", 10.0, "Q")], "edges", "line 5: target 'zz' is not a node_id"),
    (GOOD_NODES + [("a", "A2", 10.7, 106.7, "primary")], GOOD_EDGES, "nodes", "line 5: duplicate node_id 'a'"),
    ([("a", "A", 95.0, 106.7, "primary")] + GOOD_NODES[1:], GOOD_EDGES, "nodes", "line 2: lat 95.0 is outside"),
    ([("a", "A", 10.7, 200.0, "primary")] + GOOD_NODES[1:], GOOD_EDGES, "nodes", "line 2: lon 200.0 is outside"),
    (GOOD_NODES, GOOD_EDGES + [("b", "b", 10.0, "Q")], "edges", "line 5: self loop on node 'b'"),
    (GOOD_NODES, GOOD_EDGES + [("a", "b", 10.0, "Q")], "edges", "line 5: duplicate edge 'a' -> 'b'"),
    (GOOD_NODES, [("a", "b", -3.0, "X")] + GOOD_EDGES[1:], "edges", "line 2: length_m -3.0 must be a positive"),
])
def test_malformed_graph_files_name_file_row_and_problem(tmp_path, nodes, edges, file, message):
    _write(tmp_path, nodes, edges)
    with pytest.raises(DataError) as err:
        RoadGraph.read(tmp_path)
    assert f"{tmp_path} {file}" in str(err.value) and message in str(err.value)


def test_missing_file_and_missing_column(tmp_path):
    with pytest.raises(DataError, match="nodes.csv: file not found"):
        RoadGraph.read(tmp_path)
    _write(tmp_path, GOOD_NODES, GOOD_EDGES)
    pd.read_csv(tmp_path / "edges.csv").drop(columns="target").to_csv(tmp_path / "edges.csv", index=False)
    with pytest.raises(DataError, match="missing column.*target"):
        RoadGraph.read(tmp_path)


def test_graph_without_coordinates_gets_a_layout():
    nodes = pd.DataFrame({"node_id": ["a", "b", "c"]})
    edges = pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"]})
    g = RoadGraph(nodes, edges)
    assert not g.has_coordinates
    pos = g.positions()
    assert pos.shape == (3, 2) and np.isfinite(pos.to_numpy()).all()
    assert pos.equals(g.positions())                 # deterministic
    pos.loc[0, "lat"] = 99.0                          # a caller's edit does not leak into the next map
    assert g.positions().loc[0, "lat"] != 99.0


def test_labels_show_ids_and_names_and_fall_back_to_the_id():
    nodes = pd.DataFrame({"node_id": ["a", "b", "c"], "name": ["Lê Lợi", None, "  "]})
    g = RoadGraph(nodes, pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"]}))
    assert g.names == {"a": "Lê Lợi", "b": "b", "c": "c"}
    assert [g.label(n) for n in g.node_ids] == ["a · Lê Lợi", "b", "c"]
