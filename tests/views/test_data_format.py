"""The Data page's column list and template (ui/data_format.py): the list covers exactly the
columns the reader knows, a column it calls optional can really be left out and a required one
cannot, and the template is a connected corner of the simulation that reads back as written."""

import io
import zipfile

import pandas as pd
import pytest

from stmgt.data.dataset import WEATHER_COLUMNS
from stmgt.data.folder import read_folder
from stmgt.data.graph import EDGE_COLUMNS, NODE_COLUMNS
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from tests.samples import assert_same
from ui.data_format import (GRAPH_COLUMNS, OPTIONAL, REQUIRED, TEMPLATE_NAME, columns_table, template_dataset,
                            zipped_folder)


@pytest.fixture(scope="module")
def template():
    return template_dataset(simulate(weeks=1 / 7, seed=0))


def unpacked(data: bytes, where):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {TEMPLATE_NAME}
        archive.extractall(where)
    return where / TEMPLATE_NAME


def test_the_list_names_every_column_the_reader_knows():
    assert set(GRAPH_COLUMNS) == set(NODE_COLUMNS) | set(EDGE_COLUMNS)
    table = columns_table()
    assert table.loc[table["File"] == "nodes.csv", "Column"].tolist() == NODE_COLUMNS
    assert table.loc[table["File"] == "edges.csv", "Column"].tolist() == EDGE_COLUMNS
    assert set(WEATHER_COLUMNS) <= set(table.loc[table["File"].str.startswith("weather.csv"), "Column"])
    assert set(table["Needed"]) == {REQUIRED, OPTIONAL}


def test_optional_columns_may_be_left_out_and_required_ones_not(template, tmp_path):
    folder = unpacked(zipped_folder(template), tmp_path)
    for file, columns in (("nodes.csv", NODE_COLUMNS), ("edges.csv", EDGE_COLUMNS)):
        full = pd.read_csv(folder / file, dtype=str)
        optional = [c for c in columns if GRAPH_COLUMNS[c][0] == OPTIONAL]
        full.drop(columns=optional).to_csv(folder / file, index=False)
        read_folder(folder)                                                 # reads without them
        for column in (c for c in columns if GRAPH_COLUMNS[c][0] == REQUIRED):
            full.drop(columns=column).to_csv(folder / file, index=False)
            with pytest.raises(DataError, match=f"missing column.*{column}"):
                read_folder(folder)
        full.to_csv(folder / file, index=False)
    (folder / "weather.csv").unlink()                                      # weather is optional too
    assert read_folder(folder).weather is None


def test_template_is_a_connected_corner_that_reads_back(template, tmp_path):
    graph = template.graph
    assert graph.num_nodes == 4 and template.weather is not None and template.num_steps == 96
    linked = set(graph.edges["source"]) | set(graph.edges["target"])
    assert linked == set(graph.node_ids)                                   # every node on a segment
    two_way = set(zip(graph.edges["source"], graph.edges["target"]))
    assert any((t, s) in two_way for s, t in two_way)                      # shows how a two-way street is written
    assert_same(read_folder(unpacked(zipped_folder(template), tmp_path)), template)
