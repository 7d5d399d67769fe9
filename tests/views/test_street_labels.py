"""Street names on maps without tiles: a two-way street (two edges, one each way) is named once,
upright, and a street's two directions under different names keep both."""

import pandas as pd

from stmgt.data.graph import RoadGraph
from ui.maps import street_names


def graph(edges: list[tuple[str, str, str]]) -> RoadGraph:
    nodes = pd.DataFrame({"node_id": ["a", "b", "c"], "name": ["A", "B", "C"], "lat": [10.770, 10.770, 10.780],
                          "lon": [106.690, 106.710, 106.710], "road_class": "primary"})
    return RoadGraph(nodes, pd.DataFrame(edges, columns=["source", "target", "road_name"]).assign(length_m=2000.0))


def test_a_two_way_street_is_named_once_and_upright():
    labels = street_names(graph([("a", "b", "Le Loi"), ("b", "a", "Le Loi")]), zoom=15).data
    assert [row["name"] for row in labels] == ["Le Loi"]
    assert -90 <= labels[0]["angle"] <= 90


def test_each_street_keeps_its_own_label():
    labels = street_names(graph([("a", "b", "Le Loi"), ("b", "a", "Ham Nghi"), ("b", "c", "Pasteur"),
                                 ("c", "b", "Pasteur")]), zoom=15).data
    assert sorted(row["name"] for row in labels) == ["Ham Nghi", "Le Loi", "Pasteur"]
