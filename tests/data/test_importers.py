"""Importers: each format's happy path and round trip through the generic folder, the unit and
missing-value conventions, snapshot gridding against hand-computed values, and one clear
DataError (file + problem) per malformed input. All fixtures are built here, in tmp_path."""

import json
import os
import pickle
import sys
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from stmgt.data.folder import read_folder, write_folder
from stmgt.data.importers import (ImportResult, import_generic, import_matrix, import_metr_la,
                                  import_snapshots, validation_report)
from stmgt.errors import DataError
from stmgt.data.graph import haversine_m
from tests.samples import (ADJ, MATRIX_ADJ, MATRIX_SPEED, SENSORS, assert_same, metr_table, py2_adj_pickle,
                           small_dataset, snapshot_run, write)

MPH = 1.609344


# ---- helpers ---------------------------------------------------------------------------------


def files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def round_trip(result: ImportResult, tmp_path):
    assert_same(result.dataset, read_folder(write_folder(result.dataset, tmp_path / "saved")))


@contextmanager
def raises(match, *files):
    """One DataError, matching the problem and naming every one of `files`."""
    with pytest.raises(DataError, match=match) as info:
        yield info
    for f in files:
        assert str(f) in str(info.value), f"{f} not named in: {info.value}"


# ---- 1. generic folder -----------------------------------------------------------------------


@pytest.fixture
def generic(tmp_path):
    return write_folder(small_dataset(), tmp_path / "generic")


def test_generic_folder_reads_like_read_folder(generic, tmp_path):
    before = files_under(tmp_path)
    result = import_generic(generic)
    assert files_under(tmp_path) == before  # importers write nothing
    assert_same(result.dataset, small_dataset())
    assert result.notes == []  # coordinates, weather and km/h are all there
    round_trip(result, tmp_path)


def test_generic_accepts_parquet_and_an_adjacency_matrix_with_header(generic, tmp_path):
    frame = pd.read_csv(generic / "speed.csv")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame.to_parquet(generic / "speed.parquet")
    (generic / "speed.csv").unlink()
    (generic / "edges.csv").unlink()
    (generic / "weather.csv").unlink()
    write(generic / "adjacency.csv", "n3,n1,n2\n0,0.5,0\n0,0,1\n0.2,1,0\n")  # rows in header order
    result = import_generic(generic)
    edges = result.dataset.graph.edges
    assert list(zip(edges.source, edges.target)) == [("n1", "n2"), ("n2", "n1"), ("n2", "n3"), ("n3", "n1")]
    assert edges.loc[0, "length_m"] == pytest.approx(haversine_m(10.77, 106.70, 10.78, 106.70))
    assert (edges.road_name == "").all()
    np.testing.assert_allclose(result.dataset.speed, small_dataset().speed, equal_nan=True)
    assert any("adjacency.csv" in n for n in result.notes)
    assert any("no weather" in n for n in result.notes)
    round_trip(result, tmp_path)


def test_generic_headerless_adjacency_follows_nodes_csv_order(generic):
    (generic / "edges.csv").unlink()
    write(generic / "adjacency.csv", "0,1,0\n0,0,0\n1,0,1\n")  # the diagonal is ignored
    edges = import_generic(generic).dataset.graph.edges
    assert list(zip(edges.source, edges.target)) == [("n1", "n2"), ("n3", "n1")]


def test_generic_notes_speeds_that_look_like_mph(tmp_path):
    ds = small_dataset()
    ds.speed = np.full_like(ds.speed, 60.0) + np.arange(3)
    result = import_generic(write_folder(ds, tmp_path / "g"))
    assert any("look like mph" in n for n in result.notes)
    assert validation_report(result)["unit_guess"] == "mph"


@pytest.mark.parametrize("damage, match, file", [
    (lambda g: (g / "nodes.csv").unlink(), "file not found", "nodes.csv"),
    (lambda g: (g / "edges.csv").unlink(), "file not found", "edges.csv or adjacency.csv"),
    (lambda g: write(g / "adjacency.csv", "0,1\n1,0\n"), "keep only one", "edges.csv or adjacency.csv"),
    (lambda g: write(g / "nodes.csv", "id,name\nn1,a\n"), r"missing column\(s\) node_id", " nodes"),
    (lambda g: write(g / "edges.csv", "source,target\nn1,n9\n"), "'n9' is not a node_id", " edges line 2"),
    (lambda g: write(g / "speed.csv", ""), "the file is empty", "speed.csv"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n"), "no rows", "speed.csv"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n2025-07-07T08:00+07:00,1,fast,3\n"),
     "'fast' in column 'n2' is not a number", "speed.csv line 2"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n2025-07-07T08:00+07:00,1,2,3\n"
                                      "2025-07-07T08:15+07:00,1,-2,3\n"),
     "negative speed -2 for node 'n2'", "speed.csv"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n2025-07-07T08:00+07:00,1,2,3\n"
                                      "2025-07-07T08:00+07:00,1,2,3\n"), "duplicate timestamp", "speed.csv line 3"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n2025-07-07T08:15+07:00,1,2,3\n"
                                      "2025-07-07T08:00+07:00,1,2,3\n"), "not in increasing order", "speed.csv line 3"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2\n2025-07-07T08:00+07:00,1,2\n"
                                      "2025-07-07T08:15+07:00,1,2\n"), r"no column for node\(s\) n3", "speed.csv"),
])
def test_generic_malformed_inputs(generic, damage, match, file):
    """RoadGraph names its tables '<folder> nodes' / '<folder> edges', the rest name the file."""
    damage(generic)
    with raises(match, f"{generic}{file}" if file.startswith(" ") else generic / file):
        import_generic(generic)


def test_generic_adjacency_of_the_wrong_size(generic):
    (generic / "edges.csv").unlink()
    write(generic / "adjacency.csv", "0,1\n1,0\n")
    with raises("is a 2×2 matrix but nodes.csv has 3 nodes", generic / "adjacency.csv"):
        import_generic(generic)


# ---- 2. matrix style -------------------------------------------------------------------------


@pytest.fixture
def matrix(tmp_path):
    return write(tmp_path / "speed.csv", MATRIX_SPEED), write(tmp_path / "adj.csv", MATRIX_ADJ)


def test_matrix_without_locations(matrix, tmp_path):
    result = import_matrix(*matrix, start="2015-01-01T00:00:00", freq="15min", timezone="Asia/Shanghai")
    ds = result.dataset
    assert str(ds.timestamps.tz) == "Asia/Shanghai" and ds.timestamps[0].hour == 0
    assert ds.freq == pd.Timedelta("15min") and ds.num_steps == 3
    assert ds.graph.node_ids == ["101", "102", "103"]
    np.testing.assert_array_equal(ds.speed, [[20, 30, np.nan], [22, 31, 40], [24, 0, 41]])  # 0 stays 0
    assert ds.graph.nodes[["lat", "lon"]].isna().all().all()
    assert ds.graph.num_edges == 4 and ds.graph.edges.length_m.isna().all()
    assert any("no node locations" in n for n in result.notes)
    assert len(ds.graph.positions()) == 3  # the map falls back to a layout
    round_trip(result, tmp_path)


@pytest.mark.parametrize("locations", [
    "index,sensor_id,latitude,longitude\n0,103,34.03,-118.30\n1,101,34.01,-118.30\n2,102,34.02,-118.30\n",
    "sensor_id,lat,lon\n101,34.01,-118.30\n102,34.02,-118.30\n103,34.03,-118.30\n",
])
def test_matrix_in_mph_with_locations(matrix, tmp_path, locations):
    loc = write(tmp_path / "loc.csv", locations)
    result = import_matrix(*matrix, start="2015-01-01T08:00:00+08:00", units="mph", locations_csv=loc)
    ds = result.dataset
    assert str(ds.timestamps.tz) == "UTC+08:00" and ds.freq == pd.Timedelta("5min")
    np.testing.assert_allclose(ds.speed[1], np.array([22, 31, 40]) * MPH, rtol=1e-6)
    np.testing.assert_allclose(ds.graph.nodes.lat, [34.01, 34.02, 34.03])
    assert ds.graph.edges.length_m.iloc[0] == pytest.approx(haversine_m(34.01, -118.3, 34.02, -118.3))
    assert any("converted from mph" in n for n in result.notes)
    assert not any("no node locations" in n for n in result.notes)
    round_trip(result, tmp_path)


def test_matrix_notes_mph_looking_speeds_without_converting(tmp_path):
    speed = write(tmp_path / "s.csv", "a,b\n60,65\n62,55\n58,70\n")
    adj = write(tmp_path / "a.csv", "0,1\n1,0\n")
    result = import_matrix(speed, adj, start="2020-01-01T00:00:00Z")
    assert result.dataset.speed[0, 0] == 60
    assert any("look like mph" in n and "units='mph'" in n for n in result.notes)


@pytest.mark.parametrize("speed, adj, loc, kwargs, match, file", [
    (MATRIX_SPEED, "0,1\n1,0\n", None, {}, "is a 2×2 matrix but the header of speed.csv has 3", "adj.csv"),
    (MATRIX_SPEED, MATRIX_ADJ, "sensor_id,lat,lon\n101,34,-118\n102,34,-118\n", {},
     "lists 2 sensors but the speed data has 3: none for 1 .*103", "loc.csv"),
    (MATRIX_SPEED, MATRIX_ADJ, "sensor_id,lat,lon\n101,34,-118\n102,34,-118\n103,34,-118\n999,34,-118\n", {},
     "lists 4 sensors .* 1 not in the speed data .*999", "loc.csv"),
    (MATRIX_SPEED, MATRIX_ADJ, "id,x,y\n101,34,-118\n", {}, "expected index,sensor_id,latitude,longitude", "loc.csv"),
    (MATRIX_SPEED, MATRIX_ADJ, "sensor_id,lat,lon\n101,north,-118\n102,34,-118\n103,34,-118\n", {},
     "lat 'north' is not a number", "loc.csv line 2"),
    ("101,102\n20,x\n", "0,1\n1,0\n", None, {}, "'x' in column '102' is not a number", "speed.csv line 2"),
    ("101,102\n20,21\n20,-3\n", "0,1\n1,0\n", None, {}, "negative speed -3 for node '102'", "speed.csv"),
    ("101,101\n20,21\n20,3\n", "0,1\n1,0\n", None, {}, "column '101' appears twice in the header", "speed.csv line 1"),
    ("101,102\n", "0,1\n1,0\n", None, {}, "no data rows", "speed.csv"),
    ("101,102\n20,21\n", "0,1\n1,0\n", None, {}, "at least two time steps", "speed.csv"),
    ("101,102\n20,21\n22,23\n", "0,1\n1,\n", None, {}, "empty cell", "adj.csv line 2"),
    (MATRIX_SPEED, MATRIX_ADJ, None, {"units": "knots"}, "must be 'kmh' or 'mph'", "units"),
    (MATRIX_SPEED, MATRIX_ADJ, None, {"start": "yesterday-ish"}, "is not an ISO 8601 time", "start"),
    (MATRIX_SPEED, MATRIX_ADJ, None, {"freq": "often"}, "is not a duration", "freq"),
])
def test_matrix_malformed_inputs(tmp_path, speed, adj, loc, kwargs, match, file):
    paths = {"speed_csv": write(tmp_path / "speed.csv", speed), "adjacency_csv": write(tmp_path / "adj.csv", adj)}
    if loc is not None:
        paths["locations_csv"] = write(tmp_path / "loc.csv", loc)
    args = {"start": "2015-01-01T00:00:00", **paths, **kwargs}
    with raises(match, file if file in ("units", "start", "freq") else tmp_path / file):
        import_matrix(**args)


def test_matrix_missing_file(tmp_path):
    with raises("file not found", tmp_path / "nope.csv"):
        import_matrix(tmp_path / "nope.csv", tmp_path / "adj.csv", start="2015-01-01")


# ---- 3. METR-LA / PEMS-BAY -------------------------------------------------------------------


@pytest.fixture
def metr(tmp_path):
    h5 = tmp_path / "metr-la.h5"
    metr_table().to_hdf(h5, key="df")
    pkl = tmp_path / "adj_mx.pkl"
    pkl.write_bytes(py2_adj_pickle(["767541", "773869", "767542"], ADJ))  # another order than the table's
    return h5, pkl


def test_metr_la(metr, tmp_path):
    loc = write(tmp_path / "loc.csv", "index,sensor_id,latitude,longitude\n0,773869,34.15,-118.31\n"
                                      "1,767541,34.12,-118.23\n2,767542,34.12,-118.22\n")
    before = files_under(tmp_path)
    result = import_metr_la(*metr, locations_csv=loc)
    assert files_under(tmp_path) == before
    ds = result.dataset
    assert ds.graph.node_ids == ["767541", "773869", "767542"]  # adj_mx.pkl's order
    assert str(ds.timestamps.tz) == "America/Los_Angeles" and ds.freq == pd.Timedelta("5min")
    assert ds.num_steps == 12  # 24 rows minus the 12 non-existent local times; the grid is regular
    assert ds.timestamps[6] - ds.timestamps[5] == pd.Timedelta("5min")
    assert ds.timestamps[6].hour == 3
    assert np.isnan(ds.speed[:, 0]).all()  # 0 mph = no reading
    np.testing.assert_allclose(ds.speed[:, 2], 55 * MPH, rtol=1e-6)
    np.testing.assert_allclose(ds.speed[:6, 1], (60 + np.arange(6)) * MPH, rtol=1e-6)
    np.testing.assert_allclose(ds.speed[6:, 1], (60 + np.arange(18, 24)) * MPH, rtol=1e-6)
    edges = ds.graph.edges  # ADJ in pkl order, diagonal ignored
    assert list(zip(edges.source, edges.target)) == [("767541", "773869"), ("773869", "767542"), ("767542", "767541")]
    assert edges.length_m.iloc[0] == pytest.approx(haversine_m(34.12, -118.23, 34.15, -118.31))
    notes = " ".join(result.notes)
    assert "mph to km/h" in notes and "33.3% of the readings were 0" in notes and "12 rows at daylight-saving" in notes
    round_trip(result, tmp_path)


def test_metr_la_python3_pickle_and_missing_steps(tmp_path):
    index = pd.date_range("2012-05-01", periods=6, freq="5min").delete(3)
    metr_table(index).to_hdf(tmp_path / "s.h5", key="speed")
    (tmp_path / "a.pkl").write_bytes(pickle.dumps([SENSORS, {s: i for i, s in enumerate(SENSORS)}, ADJ], protocol=5))
    result = import_metr_la(tmp_path / "s.h5", tmp_path / "a.pkl")
    assert result.dataset.num_steps == 6 and np.isnan(result.dataset.speed[3]).all()
    assert any("1 time steps absent" in n for n in result.notes)
    assert any("no node locations" in n for n in result.notes)


class Gadget:
    pass


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


@pytest.mark.parametrize("payload, match", [
    (lambda m: pickle.dumps([SENSORS, {}, Exploit(m)]), r"refused: the pickle refers to (posix|os|nt)\.system"),
    (lambda m: pickle.dumps([SENSORS, {}, Gadget()]), r"refused: the pickle refers to .*Gadget"),
    (lambda m: pickle.dumps({"ids": SENSORS}), r"expected \[sensor_ids, sensor_id_to_index, N×N matrix\]"),
    (lambda m: pickle.dumps([set(SENSORS), {}, ADJ]), "sensor_ids are not a list of ids"),
    (lambda m: pickle.dumps([SENSORS, {s: i for i, s in enumerate(SENSORS)}, ADJ.astype(object)]),
     "not a numeric array"),
    (lambda m: pickle.dumps([SENSORS, {s: i for i, s in enumerate(SENSORS)}, ADJ[:2, :2]]),
     "the matrix is 2×2 but there are 3 sensor ids"),
    (lambda m: pickle.dumps([SENSORS, {"x": 0}, ADJ]), "does not map the sensor ids"),
    (lambda m: b"\x80\x04not a pickle", "cannot be read as a pickle"),
])
def test_metr_la_refuses_bad_pickles(metr, tmp_path, payload, match):
    h5, pkl = metr
    marker = tmp_path / "pwned"
    pkl.write_bytes(payload(marker))
    with raises(match, pkl):
        import_metr_la(h5, pkl)
    assert not marker.exists()


def test_metr_la_refuses_a_pickled_attribute_in_the_h5(metr, tmp_path):
    import tables
    h5, pkl = metr
    marker = tmp_path / "pwned"
    with tables.open_file(h5, mode="a") as f:  # PyTables unpickles attributes as soon as the node opens
        f.root.df.axis0._v_attrs.name = np.bytes_(pickle.dumps(Exploit(marker), protocol=0))
    with raises(r"refused: a pickle inside refers to (posix|os|nt)\.system", h5):
        import_metr_la(h5, pkl)
    assert not marker.exists()
    assert tables.attributeset.pickle is pickle  # PyTables is left as it was


@pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")
def test_metr_la_h5_object_arrays_load_only_plain_values(metr, tmp_path):
    h5, pkl = metr
    table = metr_table()
    table.columns = ["773869", 767541, "767542"]  # mixed labels: pandas pickles them
    table.to_hdf(h5, key="df")
    assert import_metr_la(h5, pkl).dataset.num_nodes == 3
    marker = tmp_path / "pwned"
    table = metr_table().astype(object)
    table.iloc[0, 0] = Exploit(marker)  # an object column is pickled cell by cell
    table.to_hdf(h5, key="df")
    with raises(r"refused: a pickle inside refers to (posix|os|nt)\.system", h5):
        import_metr_la(h5, pkl)
    assert not marker.exists()


@pytest.mark.parametrize("index, match", [
    (pd.DatetimeIndex(["2012-05-01 00:00", "2012-05-01 00:05", "2012-05-01 00:05"]), "duplicate timestamp"),
    (pd.DatetimeIndex(["2012-05-01 00:00", "2012-05-01 00:10", "2012-05-01 00:05"]), "not in increasing order"),
    (pd.DatetimeIndex(["2012-05-01 00:00", "2012-05-01 00:05", "2012-05-01 00:12"]), "off the 0 days 00:05:00"),
])
def test_metr_la_bad_time_index(metr, index, match):
    h5, pkl = metr
    metr_table(index).to_hdf(h5, key="df")
    with raises(match, h5):
        import_metr_la(h5, pkl)


def test_metr_la_sensor_mismatch_and_negative_speeds(metr):
    h5, pkl = metr
    metr_table().drop(columns="767542").to_hdf(h5, key="df")
    with raises("lists 2 sensors but adj_mx.pkl has 3: none for 1 .*767542", h5):
        import_metr_la(h5, pkl)
    table = metr_table()
    table.iloc[3, 2] = -1
    table.to_hdf(h5, key="df")
    with raises("negative speed -1 for node '767542'", h5):
        import_metr_la(h5, pkl)


def test_metr_la_without_pytables(metr, monkeypatch):
    monkeypatch.setitem(sys.modules, "tables", None)
    with raises("pip install tables", metr[0]):
        import_metr_la(*metr)


def test_metr_la_not_an_h5(metr, tmp_path):
    bad = write(tmp_path / "bad.h5", "timestamp,a\n")
    with raises("cannot be read as a pandas HDF5 table", bad):
        import_metr_la(bad, metr[1])


# ---- 4. the predecessor's snapshot runs ------------------------------------------------------
@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    snapshot_run(root, "run_1", "2025-07-07T08:00:00", {("A", "B"): 20, ("B", "C"): 30}, [(28, 5, 0), (30, 7, 2)])
    snapshot_run(root, "run_2", "2025-07-07T08:30:00", {("A", "B"): 30, ("B", "C"): None}, [(31, 8, 0)])
    snapshot_run(root, "run_3", "2025-07-07T10:00:00", {("A", "B"): 40, ("B", "C"): 10}, [(27, 4, 3)])
    snapshot_run(root, "run_4", "2025-07-07T10:45:00", {("A", "B"): 10, ("B", "C"): 40})
    snapshot_run(root, "run_5", "2025-07-07T11:00:00", {("A", "B"): 99}, skip=("traffic_edges.json",))
    return root


def test_snapshots_gridding_and_node_averaging(runs, tmp_path):
    before = files_under(tmp_path)
    result = import_snapshots(runs)
    assert files_under(tmp_path) == before
    ds = result.dataset
    assert str(ds.timestamps.tz) == "Asia/Ho_Chi_Minh"
    assert ds.timestamps[0] == pd.Timestamp("2025-07-07 08:00", tz="Asia/Ho_Chi_Minh")
    assert ds.num_steps == 12 and ds.freq == pd.Timedelta("15min")
    nan = np.nan
    # A-B: 20 @8:00, 30 @8:30, 40 @10:00, 10 @10:45; B-C: 30 @8:00, 10 @10:00, 40 @10:45.
    # 8:30 -> 10:00 (90 min) and 8:00 -> 10:00 are longer than max_gap = 60 min: missing.
    ab = [20, 25, 30, nan, nan, nan, nan, nan, 40, 30, 20, 10]
    bc = [30, nan, nan, nan, nan, nan, nan, nan, 10, 20, 30, 40]
    b = [25, 25, 30, nan, nan, nan, nan, nan, 25, 25, 25, 25]  # mean of the incident segments present
    assert ds.graph.node_ids == ["A", "B", "C"]  # D has no segment data
    np.testing.assert_allclose(ds.speed, np.column_stack([ab, b, bc]), equal_nan=True)
    nodes = ds.graph.nodes.set_index("node_id")
    assert nodes.loc["A", "name"] == "A / X" and nodes.loc["C", "road_class"] == "trunk"
    assert list(zip(ds.graph.edges.source, ds.graph.edges.target)) == [("A", "B"), ("B", "C"), ("C", "A")]
    # weather: run means (29, 6, 1), (31, 8, 0), (27, 4, 3); the 8:30 -> 10:00 gap is filled in time
    temp = ds.weather[:, 0]
    np.testing.assert_allclose(temp[[0, 1, 2, 8, 9, 11]], [29, 30, 31, 27, 27, 27])
    np.testing.assert_allclose(temp[3:8], 31 - 4 * np.arange(1, 6) / 6, rtol=1e-5)
    np.testing.assert_allclose(ds.weather[0], [29, 6, 1])
    notes = " ".join(result.notes)
    assert "Skipped run_5: it has no traffic_edges.json" in notes
    assert "Dropped 1 node(s) that no road segment with speed data touches: D" in notes
    assert "Ignored 2 road segment(s) in edges.json" in notes
    assert "4 runs" in notes and "5 steps fall in longer gaps" in notes
    assert "1 run(s) have no usable weather_snapshot.json: run_4" in notes
    round_trip(result, tmp_path)


def test_snapshots_longer_max_gap_interpolates_across(runs):
    ds = import_snapshots(runs, max_gap="90min").dataset
    np.testing.assert_allclose(ds.speed[3:8, 0], 30 + 10 * np.arange(1, 6) / 6, rtol=1e-6)
    assert np.isnan(ds.speed[3:8, 2]).all()  # B-C's gap is 120 min


def test_snapshots_without_weather_and_offsets_in_timestamps(tmp_path):
    root = tmp_path / "runs"
    snapshot_run(root, "run_a", "2025-07-07T01:00:00+00:00", {("A", "B"): 20})
    snapshot_run(root, "run_b", "2025-07-07T01:15:00+00:00", {("A", "B"): 30})
    result = import_snapshots(root)
    assert result.dataset.weather is None and any("no weather" in n for n in result.notes)
    assert result.dataset.timestamps[0] == pd.Timestamp("2025-07-07 08:00", tz="Asia/Ho_Chi_Minh")


def write_json(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))


@pytest.mark.parametrize("file, content, match, where", [
    ("traffic_edges.json", "{not json", "is not valid JSON", "traffic_edges.json"),
    ("traffic_edges.json", {"a": 1}, "expected a JSON list of records", "traffic_edges.json"),
    ("traffic_edges.json", [{"node_a_id": "A", "node_b_id": "B", "timestamp": "2025-07-07T08:00:00"}],
     "lacks speed_kmh", "traffic_edges.json record 1"),
    ("traffic_edges.json", [{"node_a_id": "A", "node_b_id": "Z", "speed_kmh": 3, "timestamp": "2025-07-07T08:00"}],
     "node_b_id 'Z' is not a node_id in nodes.json", "traffic_edges.json record 1"),
    ("traffic_edges.json", [{"node_a_id": "A", "node_b_id": "B", "speed_kmh": -3, "timestamp": "2025-07-07T08:00"}],
     "negative speed_kmh -3", "traffic_edges.json record 1"),
    ("traffic_edges.json", [{"node_a_id": "A", "node_b_id": "B", "speed_kmh": "slow", "timestamp": "2025-07-07"}],
     "speed_kmh 'slow' is not a number", "traffic_edges.json record 1"),
    ("traffic_edges.json", [{"node_a_id": "A", "node_b_id": "B", "speed_kmh": 3, "timestamp": "monday"}],
     "not ISO 8601", "traffic_edges.json"),
    ("edges.json", [{"start_node_id": "A", "end_node_id": "Q"}], "target 'Q' is not a node_id", "edges.json record 1"),
    ("nodes.json", [{"node_id": "A", "lat": 95, "lon": 106}], r"lat 95.0 is outside \[-90, 90\]",
     "nodes.json record 1"),
    ("weather_snapshot.json", [{"timestamp": "2025-07-07T08:00", "temperature_c": "hot", "precipitation_mm": 0,
                                "wind_speed_kmh": 1}], "temperature_c 'hot' is not a number",
     "weather_snapshot.json record 1"),
])
def test_snapshots_malformed_inputs(runs, file, content, match, where):
    write_json(runs / "run_2" / file, content)
    with raises(match, runs / "run_2" / where):
        import_snapshots(runs)


def test_snapshots_without_runs_or_speeds(tmp_path):
    (tmp_path / "empty").mkdir()
    with raises("no run_\\* folder", tmp_path / "empty"):
        import_snapshots(tmp_path / "empty")
    snapshot_run(tmp_path / "far", "run_1", "2025-07-07T08:05:00", {("A", "B"): 20})
    snapshot_run(tmp_path / "far", "run_2", "2025-07-07T10:05:00", {("A", "B"): 20})
    with raises("no speed falls on the 15min grid", tmp_path / "far"):
        import_snapshots(tmp_path / "far")


# ---- validation report -----------------------------------------------------------------------
def test_validation_report(runs):
    result = import_snapshots(runs)
    report = validation_report(result)
    assert report["nodes"] == 3 and report["edges"] == 3 and report["steps"] == 12
    assert report["cadence_min"] == 15 and report["has_weather"] and report["has_coordinates"]
    assert report["start"] == pd.Timestamp("2025-07-07 08:00", tz="Asia/Ho_Chi_Minh")
    assert report["unit_guess"] == "km/h"
    missing = report["missing_by_node"]
    assert list(missing.index) == ["A", "B", "C"]
    assert missing["A"] == pytest.approx(5 / 12) and missing["C"] == pytest.approx(7 / 12)
    assert report["notes"] == result.notes


def test_snapshot_run_time_is_the_mean_of_its_records(tmp_path):
    root = tmp_path / "runs"
    snapshot_run(root, "run_a", "2025-07-07T08:00:00", {("A", "B"): 20, ("B", "C"): 40})
    snapshot_run(root, "run_b", "2025-07-07T08:15:00", {("A", "B"): 30, ("B", "C"): 50})
    records = json.loads((root / "run_a" / "traffic_edges.json").read_text())
    records[0]["timestamp"], records[1]["timestamp"] = "2025-07-07T07:59:00", "2025-07-07T08:01:00"
    (root / "run_a" / "traffic_edges.json").write_text(json.dumps(records))
    ds = import_snapshots(root).dataset
    np.testing.assert_allclose(ds.speed, [[20, 30, 40], [30, 40, 50]])
