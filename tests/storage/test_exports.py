"""`stmgt.storage.exports`: text a spreadsheet would evaluate is written inert, numbers stay numbers, and
what is written reads back exactly (the dataset folder's round trip). The exports that use it are
tested with a hostile dataset in tests/test_bad_inputs.py."""

import csv
import io
import re
import tomllib

import numpy as np
import pandas as pd
import pytest
from streamlit import config as streamlit_config

from stmgt.paths import CHECKOUT
from stmgt.data.dataset import TrafficDataset
from stmgt.data.folder import read_folder, write_folder
from stmgt.storage.exports import FORMULA_STARTS, csv_bytes, neutralise, restore, restored
from stmgt.data.graph import RoadGraph
from tests.samples import small_dataset

REPO = CHECKOUT


@pytest.mark.parametrize("text,written", [
    ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
    ("+1", "'+1"),
    ("-1+2", "'-1+2"),
    ("-3.5", "'-3.5"),                 # text that looks like a number is still text
    ("@SUM(1)", "'@SUM(1)"),
    ("\tx", "'\tx"),
    ("\r=1+1", "'\r=1+1"),
    ("'=x", "''=x"),                   # already looks marked: one more, so reading drops exactly one
    ("''", "'''"),
    ("n01", "n01"),
    ("Lê Lợi", "Lê Lợi"),
    ("'quoted", "'quoted"),
    ("a=b", "a=b"),
    ("", ""),
])
def test_neutralise_marks_only_what_a_spreadsheet_would_evaluate(text, written):
    assert neutralise(text) == written
    assert restore(written) == text


def cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def live(data: bytes) -> list[str]:
    """Cells a spreadsheet would evaluate (a plain number such as -3.5 is just a number)."""
    return [c for row in cells(data) for c in row if c.startswith(FORMULA_STARTS) and not re.fullmatch(r"-?[\d.]+", c)]


def test_csv_bytes_leaves_numbers_and_missing_values_alone():
    frame = pd.DataFrame({"node_id": ["=1+1", "n2", None], "speed": [-3.5, 12.25, np.nan],
                          "step": pd.array([-1, 2, None], dtype="Int64"), "ok": [True, False, True],
                          "time": pd.date_range("2025-07-07", periods=3, freq="15min", tz="Asia/Ho_Chi_Minh"),
                          "=col": ["+x", "y", "z"]})
    rows = cells(csv_bytes(frame, float_format="%.3f"))
    assert rows[0] == ["node_id", "speed", "step", "ok", "time", "'=col"]
    assert rows[1] == ["'=1+1", "-3.500", "-1", "True", "2025-07-07 00:00:00+07:00", "'+x"]
    assert rows[3][:3] == ["", "", ""]                 # None and NaN stay empty
    back = restored(pd.read_csv(io.BytesIO(csv_bytes(frame)), dtype={"node_id": str}))
    assert back["node_id"].iloc[0] == "=1+1" and back["=col"].iloc[0] == "+x"
    assert back["speed"].iloc[0] == -3.5 and back["step"].iloc[0] == -1


def test_a_carriage_return_inside_a_cell_cannot_start_a_row():
    data = csv_bytes(pd.DataFrame({"name": ["x\r=HYPERLINK(\"http://x\")"], "n": [1]}))
    assert data.count(b"\r\n") == 2 and data.decode().splitlines()[1].startswith('"x')
    assert cells(data)[1] == ["x\r=HYPERLINK(\"http://x\")", "1"]


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "@SUM(1)", "+1", "-1+2", "'=already marked", "''x",
                                  "'quoted"])
def test_dataset_folder_keeps_ids_names_and_streets_byte_for_byte(tmp_path, text):
    base = small_dataset()
    nodes = base.graph.nodes.assign(node_id=[text, "n2", "n3"], name=[text, "\tB", "C\r=1"])
    edges = base.graph.edges.replace({"source": {"n1": text}, "target": {"n1": text}}).assign(
        road_name=[text, "@x", "-y"])
    given = TrafficDataset(base.timestamps, base.speed, base.weather, RoadGraph(nodes, edges), {"source": "test"})
    folder = write_folder(given, tmp_path / "data")
    for name in ("nodes.csv", "edges.csv", "speed.csv", "weather.csv"):
        assert live((folder / name).read_bytes()) == [], name
    back = read_folder(folder)
    assert back.graph.node_ids == given.graph.node_ids
    assert back.graph.nodes["name"].tolist() == nodes["name"].tolist()
    assert back.graph.edges["road_name"].tolist() == edges["road_name"].tolist()
    np.testing.assert_array_equal(back.speed, given.speed)


def test_the_dashboard_turns_off_st_dataframes_own_csv_download():
    """Streamlit writes a table's cells as they are; pages offer `ui.downloads.csv_download` instead."""
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert settings["client"]["disableDataExport"] is True
    assert "client.disableDataExport" in streamlit_config.get_config_options()
