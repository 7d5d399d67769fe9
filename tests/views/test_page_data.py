"""Data page: import by path and by upload for the formats, the validation report's numbers
against the fixtures, the preview, saving into the workspace (then listed in the sidebar),
refusing an existing name, errors that name the file and write nothing, deleting, and the
archive guards. Fixtures are built in tmp_path with the importer tests' builders."""

import base64
import io
import json
import sys
import zipfile

import numpy as np
import pytest

from stmgt.data.folder import read_folder, write_folder
from stmgt.errors import DataError
from tests.samples import (ADJ, MATRIX_ADJ, MATRIX_SPEED, SENSORS, assert_same, metr_table, py2_adj_pickle,
                                  small_dataset, snapshot_run, write)
from ui.data_format import template_zip
from ui.data_import import extract_zip

PAGE = "views/data.py"


# ---- helpers ---------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def server_folder(tmp_path, monkeypatch):
    """Reading server paths is off by default; these tests allow tmp_path, as an operator would."""
    config = tmp_path / "stmgt.toml"
    config.write_text(f'[data_page]\nserver_folder = "{tmp_path}"\n')
    monkeypatch.setenv("STMGT_CONFIG", str(config))
    return tmp_path


def choose(at, fmt, source="Path on this machine"):
    at.radio(key="data_format").set_value(fmt)
    at.radio(key="data_source").set_value(source)
    return at.run()


def check(at):
    at.button(key="data_check").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def import_path(app, fmt, **paths):
    at = choose(app(PAGE), fmt)
    for key, path in paths.items():
        at.text_input(key=f"data_path_{key}").input(str(path))
    return at.run()


def metrics(at):
    return {m.label: m.value for m in at.metric}


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(array):
    """A plotly spec's array: a list, or numbers packed as {"dtype", "bdata" (base64)}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return array


def save(at, name, replace=False):
    at.text_input(key="data_name").input(name)
    at.checkbox(key="data_replace").set_value(replace)
    at.button(key="data_save").click()
    return at.run()


def errors(at):
    return " ".join(e.value for e in at.error)


@pytest.fixture
def city(tmp_path):
    """The importer tests' 3-node, 8-step dataset (n2 misses one reading) as a generic folder."""
    return write_folder(small_dataset(), tmp_path / "city")


@pytest.fixture
def runs(tmp_path):
    """Three snapshot runs 15 min apart; segment B-C has no data in the last two, so node C
    misses 2 of 3 steps; node D touches no segment with data and is dropped."""
    root = tmp_path / "collection" / "runs"
    snapshot_run(root, "run_1", "2025-07-07T08:00:00", {("A", "B"): 20, ("B", "C"): 30}, [(28, 5, 0)])
    snapshot_run(root, "run_2", "2025-07-07T08:15:00", {("A", "B"): 30, ("B", "C"): None}, [(30, 7, 2)])
    snapshot_run(root, "run_3", "2025-07-07T08:30:00", {("A", "B"): 40, ("B", "C"): None}, [(29, 6, 1)])
    return root


# ---- generic folder ----------------------------------------------------------------------------
def test_generic_by_path_shows_report_and_preview(app, city, isolated_workspace):
    at = check(import_path(app, "Generic folder", generic=city))
    assert not at.error
    shown = metrics(at)
    assert shown["Nodes"] == "3" and shown["Road segments"] == "3" and shown["Time steps"] == "8"
    assert shown["Cadence"] == "15 min" and shown["Span"] == "2.0 hours" and shown["Weather"] == "included"
    assert shown["Missing readings"] == f"{100 / 24:.1f} %"  # one of 24 readings
    assert shown["Speeds look like"] == "km/h"

    missing_bars, speed_lines = charts(at)
    bars = dict(zip(missing_bars["data"][0]["y"], values(missing_bars["data"][0]["x"])))
    assert bars["n2"] == pytest.approx(100 / 8) and bars["n1"] == 0
    assert [t["name"] for t in speed_lines["data"]] == ["n1", "n2", "n3"]

    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    nodes = next(layer for layer in deck["layers"] if layer["id"] == "nodes")["data"]
    expected = np.nanmean(small_dataset().speed, axis=0)
    assert [n["mean_speed"] for n in nodes] == pytest.approx(expected.round(1))
    assert nodes[0]["lat"] == pytest.approx(10.77)  # real coordinates: no layout note
    assert not any("layout computed" in c.value for c in at.caption)

    at.multiselect(key="data_nodes").set_value(["n3"])
    assert [t["name"] for t in charts(at.run())[1]["data"]] == ["n3"]
    assert not (isolated_workspace / "datasets").exists()  # nothing saved before Save


def test_save_lists_the_dataset_in_the_sidebar_and_refuses_an_existing_name(app, city, isolated_workspace):
    at = check(import_path(app, "Generic folder", generic=city))
    assert at.text_input(key="data_name").value == "city"  # named after the folder
    save(at, "Saigon centre")
    saved = isolated_workspace / "datasets" / "Saigon-centre"
    assert_same(read_folder(saved), small_dataset())
    assert "Imported: Saigon-centre" in at.selectbox(key="dataset").options
    assert not at.metric  # the report is done with
    at.button(key="data_use_saved").click()
    at.run()
    assert at.session_state["dataset"] == "Imported: Saigon-centre"
    assert at.selectbox(key="dataset").value == "Imported: Saigon-centre"
    listed = at.dataframe[0].value
    assert list(listed.index) == ["Saigon-centre"] and listed.loc["Saigon-centre", "Steps"] == 8

    write_folder(small_dataset(weather=False), city, overwrite=True)  # a second version, without weather
    at = check(at)
    save(at, "Saigon centre")
    assert "already exists" in errors(at) and "Replace" in errors(at)
    assert (saved / "weather.csv").exists() and metrics(at)["Nodes"] == "3"  # untouched, report kept
    save(at, "Saigon centre", replace=True)
    assert not at.error and not (saved / "weather.csv").exists()
    assert sorted(p.name for p in saved.parent.iterdir()) == ["Saigon-centre"]  # no leftovers
    assert at.dataframe[0].value.loc["Saigon-centre", "Weather"].startswith("no")  # the list is not stale


@pytest.mark.parametrize("damage, file, problem", [
    (lambda g: write(g / "edges.csv", "source,target\nn1,n2\nn2,n9\n"), "edges line 3", "'n9' is not a node_id"),
    (lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3\n2025-07-07T08:00+07:00,1,2,3\n"
                                      "2025-07-07T08:15+07:00,1,-2,3\n"), "speed.csv", "negative speed -2"),
])
def test_malformed_folder_shows_the_error_and_writes_nothing(app, city, isolated_workspace, damage, file, problem):
    damage(city)
    at = check(import_path(app, "Generic folder", generic=city))
    assert file in errors(at) and problem in errors(at) and str(city) in errors(at)
    assert not at.metric and not at.get("deck_gl_json_chart")
    assert not (isolated_workspace / "datasets").exists()
    # The page keeps working: the fixed folder imports.
    write_folder(small_dataset(), city, overwrite=True)
    at = check(at)
    assert not at.error and metrics(at)["Nodes"] == "3"


def test_missing_path_names_the_folder(app, tmp_path):
    at = check(import_path(app, "Generic folder", generic=tmp_path / "nowhere"))
    assert "nowhere" in errors(at) and "folder not found" in errors(at)


# ---- matrix and snapshots --------------------------------------------------------------------
def test_matrix_by_path_with_start_and_cadence(app, tmp_path):
    at = import_path(app, "Matrix CSVs", m_speed=write(tmp_path / "los_speed.csv", MATRIX_SPEED),
                     m_adj=write(tmp_path / "los_adj.csv", MATRIX_ADJ))
    assert at.button(key="data_check").disabled  # the start time is still needed
    at.text_input(key="data_m_start").input("2015-01-01 08:00")
    at.selectbox(key="data_m_tz").set_value("Asia/Shanghai")
    at.selectbox(key="data_m_freq").set_value("15min")
    at = check(at.run())
    assert not at.error
    shown = metrics(at)
    assert shown["Time steps"] == "3" and shown["Cadence"] == "15 min" and shown["Nodes"] == "3"
    assert shown["Road segments"] == "4" and shown["Weather"] == "none"
    assert shown["Missing readings"] == f"{100 / 9:.1f} %"
    assert any("Thu 01 Jan 2015 08:00 → Thu 01 Jan 2015 08:30 (Asia/Shanghai)" in c.value for c in at.caption)
    assert any("layout computed" in c.value for c in at.caption)  # no locations given
    assert any("will train without weather" in w.value and "what-if" in w.value for w in at.warning)
    assert at.text_input(key="data_name").value == "los_speed"


def test_metr_la_upload_and_missing_pytables(app, tmp_path, monkeypatch):
    h5 = tmp_path / "metr-la.h5"
    metr_table().to_hdf(h5, key="df")
    at = choose(app(PAGE), "METR-LA / PEMS-BAY", "Upload files")
    at.file_uploader(key="data_up_r_h5").set_value(("metr-la.h5", h5.read_bytes(), "application/x-hdf5"))
    pickle = py2_adj_pickle(SENSORS, ADJ)  # as DCRNN wrote it
    at.file_uploader(key="data_up_r_pkl").set_value(("adj_mx.pkl", pickle, "application/octet-stream"))
    at = check(at.run())
    shown = metrics(at)
    assert shown["Nodes"] == "3" and shown["Time steps"] == "12" and shown["Cadence"] == "5 min"  # DST rows dropped
    assert shown["Missing readings"] == f"{100 / 3:.1f} %"  # one sensor reads 0 mph = no data
    assert any("converted from mph" in m.value for m in at.markdown)

    monkeypatch.setitem(sys.modules, "tables", None)
    at = check(at)
    assert "metr-la.h5" in errors(at) and "pip install tables" in errors(at) and not at.metric


def test_snapshots_by_path_and_as_a_zip_upload(app, runs, isolated_workspace):
    at = check(import_path(app, "Snapshot runs", s_runs=runs))
    shown = metrics(at)
    assert shown["Nodes"] == "3" and shown["Time steps"] == "3" and shown["Weather"] == "included"
    assert shown["Missing readings"] == f"{100 * 2 / 9:.1f} %"
    assert any("Dropped 1 node(s)" in m.value for m in at.markdown)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in runs.rglob("*.json"):
            zf.write(path, path.relative_to(runs.parent))  # zipped as the folder "runs/..."
    at = choose(at, "Snapshot runs", "Upload files")
    at.file_uploader(key="data_up_s_runs").set_value(("collection.zip", archive.getvalue(), "application/zip"))
    at = check(at.run())
    assert metrics(at) == shown
    assert at.text_input(key="data_name").value == "collection"
    save(at, "collection")
    saved = read_folder(isolated_workspace / "datasets" / "collection")
    assert saved.provenance["source"] == "predecessor snapshots"
    assert "stmgt-upload" not in json.dumps(saved.provenance)  # no temporary path recorded


def test_upload_errors_name_the_uploaded_file(app, city):
    at = choose(app(PAGE), "Generic folder", "Upload files")
    files = [(p.name, p.read_bytes(), "text/csv") for p in city.iterdir() if not p.name.startswith(".")]
    files = [(n, b"timestamp,n1\n2025-07-07T08:00+07:00,1\n" if n == "speed.csv" else b, t) for n, b, t in files]
    at.file_uploader(key="data_up_generic").set_value(files)
    at = check(at.run())
    assert "uploaded files/speed.csv" in errors(at) and "no column for node(s) n2, n3" in errors(at)
    assert "stmgt-upload" not in errors(at)


# ---- imported datasets -----------------------------------------------------------------------
def test_delete_asks_for_confirmation(app, isolated_workspace):
    for name in ("first", "second"):
        write_folder(small_dataset(weather=False), isolated_workspace / "datasets" / name)
    at = app(PAGE, dataset="Imported: second")
    listed = at.dataframe[0].value
    assert list(listed.index) == ["first", "second"] and listed.loc["first", "Weather"].startswith("no")
    at.selectbox(key="data_manage").set_value("second")
    at.button(key="data_delete").click()
    at.run()
    assert any("Delete **second**" in w.value for w in at.warning)
    at.button(key="data_delete_cancel").click()
    at.run()
    assert (isolated_workspace / "datasets" / "second").is_dir()
    at.button(key="data_delete").click()
    at.run()
    at.button(key="data_delete_confirm").click()
    at.run()
    assert not at.exception
    assert sorted(p.name for p in (isolated_workspace / "datasets").iterdir()) == ["first"]
    assert at.selectbox(key="dataset").options == ["Simulated HCMC (embedded)", "Imported: first"]
    assert at.session_state["dataset"] == "Simulated HCMC (embedded)"  # it was selected: back to the default


def zipped(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.csv", "/etc/evil.csv", "runs/../../evil.csv"])
def test_zip_entries_outside_the_folder_are_refused(tmp_path, name):
    with pytest.raises(DataError, match="outside the archive's folder"):
        extract_zip(zipped([("runs/ok.csv", "a"), (name, "x")]), tmp_path / "up" / "runs.zip")
    assert not (tmp_path / "evil.csv").exists() and not (tmp_path / "up").exists()


def test_zip_unpacks_to_its_single_folder(tmp_path):
    root = extract_zip(zipped([("runs/run_1/a.json", "[]"), ("__MACOSX/runs/._run_1", "x")]), tmp_path / "r.zip")
    assert root == tmp_path / "r.zip" / "runs" and (root / "run_1" / "a.json").read_text() == "[]"
    loose = extract_zip(zipped([("nodes.csv", "n"), ("speed.csv", "s")]), tmp_path / "loose.zip")
    assert loose == tmp_path / "loose.zip" and (loose / "speed.csv").read_text() == "s"
    with pytest.raises(DataError, match="not a readable zip"):
        extract_zip(b"plain text", tmp_path / "bad.zip")


# ---- what a folder needs, the template, empty charts, the dataset's name ------------------------
def test_generic_format_lists_its_columns_and_its_template_imports(app):
    at = choose(app(PAGE), "Generic folder", "Upload files")
    listed = at.table[0].value
    assert {"node_id", "source", "target", "timestamp", "precipitation_mm"} <= set(listed["Column"])
    assert listed.set_index("Column").loc["node_id", "Needed"] == "required"
    assert at.get("download_button")[0].proto.label == "Download a template (.zip)"
    at.file_uploader(key="data_up_generic").set_value([("stmgt-dataset-template.zip", template_zip(),
                                                       "application/zip")])
    at = check(at.run())
    assert not at.error
    shown = metrics(at)
    assert shown["Nodes"] == "4" and shown["Time steps"] == "96" and shown["Weather"] == "included"
    assert at.text_input(key="data_name").value == "stmgt-dataset-template"
    choose(at, "Matrix CSVs", "Upload files")
    assert not at.table                                                    # the list is the folder format's


def test_speed_chart_says_why_it_is_empty(app, city):
    at = check(import_path(app, "Generic folder", generic=city))
    at.multiselect(key="data_nodes").set_value([]).run()
    assert len(charts(at)) == 1 and any("Pick one or more nodes" in i.value for i in at.info)
    write_folder(small_dataset(), city, overwrite=True)
    speed = (city / "speed.csv").read_text().splitlines()
    rows = [",".join(cells[:1] + cells[1:2] + [""] + cells[3:]) for cells in (r.split(",") for r in speed[1:])]
    (city / "speed.csv").write_text("\n".join(speed[:1] + rows) + "\n")     # n2 never read
    at = check(at)
    at.multiselect(key="data_nodes").set_value(["n2"]).run()
    assert len(charts(at)) == 1 and any("n2 never has a reading" in i.value for i in at.info)
    at.multiselect(key="data_nodes").set_value(["n1", "n2"]).run()
    assert [t["name"] for t in charts(at)[1]["data"]] == ["n1"]
    assert any("No line for n2" in c.value for c in at.caption)


def test_pages_name_an_imported_dataset_not_its_folder(app, city, isolated_workspace):
    write_folder(small_dataset(), isolated_workspace / "datasets" / "saigon")
    at = app("views/overview.py", dataset="Imported: saigon")
    shown = " ".join(c.value for c in at.caption)
    assert "dataset saigon" in shown and str(isolated_workspace) not in shown
