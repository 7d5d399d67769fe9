"""Bad input, as a careless or hostile user gives it: every case ends in one plain line (exit
status 2 on the command line, a DataError elsewhere), nothing of the user's is changed, nothing
hostile runs. One parametrized table per place where input enters; docs/reliability.md counts
its cases."""

import csv
import errno
import io
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.storage.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from stmgt.cli import main
from stmgt.routing.copula import ErrorCopula
from stmgt.data.dataset import Scaler, TrafficDataset, split_ranges
from stmgt.data.folder import read_folder, write_folder
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.storage.exports import FORMULA_STARTS, neutralise, restored
from stmgt.forecasting.forecast import Forecaster
from stmgt.data.scenario import WeatherScenario
from stmgt.data.graph import RoadGraph
from stmgt.storage.jsonfile import write_json
from stmgt.limits import LIMITS
from stmgt.model import STMGT, STMGTConfig
from stmgt.settings import MODEL_SIZES, TRAIN_SIZES
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.training.trainer import TrainConfig, fit
from stmgt.routing.trip import TripPlanner
from tests.hostile_data import (DATASET_NAME, PAYLOADS, RUN_NAME, hostile_graph, html_dangers, markdown_dangers,
                                rendered_text)
from tests.samples import MATRIX_ADJ, MATRIX_SPEED, small_dataset, write
from ui import data_import, server_files
from ui.heatmaps import attention_matrix, gate_figure
from ui.maps import SPEED_STOPS, legend_html, road_map
from ui.text import code, html, md, one_line
from ui.training import JobRegistry

TINY = STMGTConfig(hidden_dim=8, num_blocks=1, heads=2, num_mixtures=2)


class Exploit:
    """Unpickling this would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def set_cell(path, row, col, value):
    """Data row `row` (0 = first below the header), column `col` (0 = timestamp) of a CSV."""
    lines = path.read_text().splitlines()
    cells = lines[row + 1].split(",")
    cells[col] = value
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def set_line(path, row, text):
    lines = path.read_text().splitlines()
    lines[row + 1] = text
    path.write_text("\n".join(lines) + "\n")


def rename_first_node(folder, node_id):
    nodes = pd.read_csv(folder / "nodes.csv", dtype=str, keep_default_na=False)
    nodes.loc[0, "node_id"] = node_id
    nodes.to_csv(folder / "nodes.csv", index=False)


def cli_fails(argv, message, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:       # argparse's own checks
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err
    assert "Traceback" not in err
    return err


# ---- the generic importer on the command line ------------------------------------------------
GENERIC = [
    ("speed-1e9", lambda g: set_cell(g / "speed.csv", 1, 1, "1e9"), "above the ceiling of 250 km/h"),
    ("speed-inf", lambda g: set_cell(g / "speed.csv", 1, 2, "inf"), "infinite speed"),
    ("speed-negative", lambda g: set_cell(g / "speed.csv", 0, 3, "-5"), "negative speed -5"),
    ("speed-text", lambda g: set_cell(g / "speed.csv", 4, 1, "fast"), "'fast' in column 'n1' is not a number"),
    ("no-offset-first", lambda g: set_cell(g / "speed.csv", 0, 0, "2025-07-07T08:00:00"), "line 2: timestamp"),
    ("no-offset-later", lambda g: set_cell(g / "speed.csv", 3, 0, "2025-07-07T08:45:00"), "line 5: timestamp"),
    ("date-only", lambda g: set_cell(g / "speed.csv", 3, 0, "2025-07-07"), "has no UTC offset"),
    ("not-iso", lambda g: set_cell(g / "speed.csv", 2, 0, "yesterday"), "'yesterday' is not ISO 8601"),
    ("empty-time", lambda g: set_cell(g / "speed.csv", 2, 0, ""), "line 4: empty timestamp"),
    ("duplicate-time", lambda g: set_cell(g / "speed.csv", 1, 0, "2025-07-07T08:00:00+07:00"), "duplicate timestamp"),
    ("backwards", lambda g: set_cell(g / "speed.csv", 3, 0, "2025-07-07T08:20:00+07:00"), "not in increasing order"),
    ("irregular", lambda g: [set_cell(g / name, 3, 0, "2025-07-07T08:50:00+07:00")
                             for name in ("speed.csv", "weather.csv")],
     "first step of 15 min"),
    ("short-row", lambda g: set_line(g / "speed.csv", 2, "2025-07-07T08:30:00+07:00,16"),
     "line 4: has 2 fields where the header has 4"),
    ("long-row", lambda g: set_line(g / "speed.csv", 2, "2025-07-07T08:30:00+07:00,1,2,3,4"), "has 5 fields"),
    ("empty-speed-file", lambda g: write(g / "speed.csv", ""), "the file is empty"),
    ("binary-speed-file", lambda g: (g / "speed.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff"), "speed.csv"),
    ("all-missing", lambda g: [(g / "weather.csv").unlink(), write(g / "speed.csv", "timestamp,n1,n2,n3\n"
                               "2025-07-07T08:00+07:00,,,\n2025-07-07T08:15+07:00,,,\n")],
     "every speed value is missing"),
    ("unknown-column", lambda g: write(g / "speed.csv", "timestamp,n1,n2,n3,n9\n2025-07-07T08:00+07:00,1,2,3,4\n"),
     "n9 are not node ids"),
    ("missing-column", lambda g: write(g / "speed.csv", "timestamp,n1\n2025-07-07T08:00+07:00,1\n"),
     "no column for node(s) n2, n3"),
    ("weather-nan", lambda g: set_cell(g / "weather.csv", 1, 3, ""), "empty cells"),
    ("weather-1e30-rain", lambda g: set_cell(g / "weather.csv", 1, 3, "1e30"), "precipitation_mm 1e+30"),
    ("weather-hot", lambda g: set_cell(g / "weather.csv", 0, 1, "200"), "temperature_c 200"),
    ("weather-negative-wind", lambda g: set_cell(g / "weather.csv", 5, 2, "-3"), "wind_kmh -3"),
    ("weather-column", lambda g: write(g / "weather.csv", "timestamp,temp\n2025-07-07T08:00+07:00,30\n"),
     "missing column(s) temperature_c"),
    ("no-nodes", lambda g: (g / "nodes.csv").unlink(), "nodes.csv: file not found"),
    ("edge-to-nowhere", lambda g: write(g / "edges.csv", "source,target\nn1,n2\nn2,n9\n"), "'n9' is not a node_id"),
    ("both-link-files", lambda g: write(g / "adjacency.csv", "0,1,0\n0,0,1\n1,0,0\n"), "keep only one"),
    ("bad-provenance", lambda g: write(g / "dataset.json", "{not json"), "is not valid JSON"),
    *[(f"id-with-{kind}", lambda g, text=text: rename_first_node(g, text), "holds a line break, tab or invisible "
       "control character") for kind, text in [("newline", "two\nlines"), ("tab", "n\t1"),
                                                ("rtl-override", "abc\u202eexe"), ("zero-width-space", "n\u200b1")]],
]


@pytest.mark.parametrize("damage,message", [c[1:] for c in GENERIC], ids=[c[0] for c in GENERIC])
def test_generic_import_refuses(tmp_path, capsys, damage, message):
    folder = write_folder(small_dataset(), tmp_path / "given")
    damage(folder)
    cli_fails(["import", "generic", folder, "--out", tmp_path / "out"], message, capsys)
    assert not (tmp_path / "out").exists()


def test_timezone_places_times_without_offset(tmp_path, capsys):
    folder = write_folder(small_dataset(), tmp_path / "given")
    for name in ("speed.csv", "weather.csv"):
        path = folder / name
        path.write_text(path.read_text().replace("+07:00", ""))
    assert main(["import", "generic", str(folder), "--timezone", "Asia/Ho_Chi_Minh", "--out", str(tmp_path / "o")]) == 0
    assert "2025-07-07T08:00:00+07:00" in (tmp_path / "o" / "speed.csv").read_text()
    cli_fails(["import", "generic", folder, "--timezone", "Mars/Olympus", "--out", tmp_path / "p"],
              "unknown time zone 'Mars/Olympus'", capsys)


# ---- other importers, simulator options and what-if values on the command line ------------------
def matrix_files(tmp_path, speed=MATRIX_SPEED):
    return [write(tmp_path / "speed.csv", speed), write(tmp_path / "adj.csv", MATRIX_ADJ)]


ARGS = [
    ("matrix-start", lambda t: ["import", "matrix", *matrix_files(t), "--start", "soon"], "'soon' is not an ISO 8601"),
    ("matrix-freq-negative", lambda t: ["import", "matrix", *matrix_files(t), "--start", "2012-03-01",
                                        "--freq=-5min"], "must be a positive duration"),
    ("matrix-freq-text", lambda t: ["import", "matrix", *matrix_files(t), "--start", "2012-03-01",
                                    "--freq", "often"], "is not a duration"),
    ("matrix-mph-ceiling", lambda t: ["import", "matrix", *matrix_files(t, "101,102,103\n20,300,1\n"),
                                      "--start", "2012-03-01", "--units", "mph"], "ceiling of 155 mph"),
    ("matrix-short-row", lambda t: ["import", "matrix", *matrix_files(t, "101,102,103\n20,30\n"),
                                    "--start", "2012-03-01"], "has 2 fields where the header has 3"),
    ("matrix-zone", lambda t: ["import", "matrix", *matrix_files(t), "--start", "2012-03-01",
                               "--timezone", "Nowhere/City"], "cannot place"),
    ("metr-not-h5", lambda t: ["import", "metr-la", write(t / "s.h5", "text"), write(t / "a.pkl", "x")],
     "cannot be read as a pandas HDF5 table"),
    ("snapshots-empty", lambda t: ["import", "snapshots", t], "no run_* folder"),
    ("sim-weeks-zero", lambda t: ["train", "--data", "sim:weeks=0"], "weeks must be more than 0"),
    ("sim-weeks-negative", lambda t: ["train", "--data", "sim:weeks=-2"], "weeks must be more than 0"),
    ("sim-weeks-nan", lambda t: ["train", "--data", "sim:weeks=nan"], "weeks must be more than 0"),
    ("sim-weeks-huge", lambda t: ["train", "--data", "sim:weeks=1e9"], "at most 520"),
    ("sim-seed-negative", lambda t: ["train", "--data", "sim:seed=-1"], "seed must not be negative"),
    ("sim-option", lambda t: ["train", "--data", "sim:speed=3"], "unknown simulator option"),
    ("simulate-weeks-zero", lambda t: ["simulate", "--weeks", "0"], "must be more than 0"),
    ("simulate-weeks-text", lambda t: ["simulate", "--weeks", "many"], "must be a number, got 'many'"),
    ("simulate-seed-negative", lambda t: ["simulate", "--seed", "-4"], "must be at least 0"),
    ("epochs-zero", lambda t: ["train", "--epochs", "0"], "must be at least 1"),
    ("batch-text", lambda t: ["train", "--batch-size", "big"], "must be a whole number"),
    ("whatif-nan", lambda t: ["forecast", "--run", "r", "--at", "x", "--precipitation", "nan"],
     "must be a finite number"),
    ("whatif-inf", lambda t: ["forecast", "--run", "r", "--at", "x", "--wind", "inf"], "must be a finite number"),
    ("whatif-text", lambda t: ["forecast", "--run", "r", "--at", "x", "--temperature", "warm"], "must be a number"),
    ("run-missing", lambda t: ["forecast", "--run", t / "none", "--at", "2025-08-25T07:00+07:00"],
     "not a finished run"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in ARGS], ids=[c[0] for c in ARGS])
def test_command_line_refuses(tmp_path, capsys, argv, message):
    args = argv(tmp_path)
    cli_fails([*args, "--out", tmp_path / "out" / "x"], message, capsys)
    assert not (tmp_path / "out").exists()


# ---- output paths: nothing of the user's is replaced --------------------------------------------
def users_folder(tmp_path):
    folder = tmp_path / "mine"
    write(folder / "thesis.txt", "three years of work")
    return folder


OUTPUTS = [
    ("import-over-folder", lambda t, g: ["import", "generic", g, "--out", users_folder(t), "--overwrite"],
     "files this tool did not write"),
    ("import-over-file", lambda t, g: ["import", "generic", g, "--out", write(t / "notes.txt", "x")],
     "is an existing file"),
    ("import-over-own", lambda t, g: ["import", "generic", g, "--out", g], "pass --overwrite"),
    ("simulate-over-folder", lambda t, g: ["simulate", "--weeks", "0.1", "--out", users_folder(t), "--overwrite"],
     "files this tool did not write"),
    ("simulate-under-file", lambda t, g: ["simulate", "--weeks", "0.1", "--out", write(t / "f", "x") / "sub"],
     "is a file, not a folder"),
    ("train-over-folder", lambda t, g: ["train", "--data", g, "--out", users_folder(t)],
     "files this tool did not write"),
    ("train-over-file", lambda t, g: ["train", "--data", g, "--out", write(t / "f.txt", "x")], "is an existing file"),
    ("forecast-over-file", lambda t, g: ["forecast", "--run", "r", "--at", "x", "--overwrite",
                                         "--out", write(t / "mine.csv", "a,b\n1,2\n")], "this tool did not write"),
    ("forecast-into-folder", lambda t, g: ["forecast", "--run", "r", "--at", "x", "--out", users_folder(t)],
     "is a folder"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in OUTPUTS], ids=[c[0] for c in OUTPUTS])
def test_outputs_never_replace_what_the_user_owns(tmp_path, capsys, argv, message):
    given = write_folder(small_dataset(), tmp_path / "given")
    args = argv(tmp_path, given)
    before = snapshot(tmp_path)
    cli_fails(args, message, capsys)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_a_dataset_of_ours(tmp_path, capsys):
    given = write_folder(small_dataset(), tmp_path / "given")
    out = write_folder(small_dataset(weather=False), tmp_path / "out")
    assert main(["import", "generic", str(given), "--out", str(out), "--overwrite"]) == 0
    assert (out / "weather.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given", "out"]     # no staging left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    cli_fails(["simulate", "--weeks", "0.1", "--out", locked / "d"], "no permission to write", capsys)


# ---- what-if weather ---------------------------------------------------------------------------
WHAT_IF = [
    ("nan-rain", WeatherScenario(precipitation_mm=float("nan")), "precipitation_mm nan"),
    ("huge-rain", WeatherScenario(precipitation_mm=1e30), "precipitation_mm 1e+30"),
    ("rain-event", WeatherScenario(rain_mm=1000, rain_steps=2), "precipitation_mm 1000"),
    ("boiling", WeatherScenario(temperature_c=100), "temperature_c 100"),
    ("frozen-shift", WeatherScenario(temperature_shift=-200), "temperature_c -1"),
    ("inf-wind", WeatherScenario(wind_kmh=float("inf")), "wind_kmh inf"),
    ("hurricane", WeatherScenario(wind_shift=1000), "wind_kmh 10"),
]


@pytest.mark.parametrize("scenario,message", [c[1:] for c in WHAT_IF], ids=[c[0] for c in WHAT_IF])
def test_what_if_weather_outside_physical_ranges(scenario, message):
    weather = np.tile(np.float32([28, 8, 0]), (2, 12, 1))
    with pytest.raises(DataError, match="what-if weather") as err:
        scenario.apply(weather)
    assert message in str(err.value) and "physical range" in str(err.value)


# ---- checkpoints -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_state():
    graph = small_dataset().graph
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION,
                "state_dict": STMGT(TINY).state_dict(), "model_config": TINY.to_dict(),
                "scaler": Scaler(20.0, 5.0, None, None).to_dict(), "graph_fingerprint": graph.fingerprint(),
                "node_ids": list(graph.node_ids), "meta": {}}, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def edited(state, **changes):
    state = {**state, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del state[key]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


CHECKPOINTS = [
    ("no-fingerprint", {"graph_fingerprint": None}, "'graph_fingerprint' is missing"),
    ("no-node-ids", {"node_ids": None}, "'node_ids' is missing"),
    ("no-scaler", {"scaler": None}, "'scaler' is missing"),
    ("no-weights", {"state_dict": None}, "'state_dict' is missing"),
    ("weights-list", {"state_dict": [1, 2]}, "'state_dict' is missing or not a dict"),
    ("huge-hidden", {"model_config": {**TINY.to_dict(), "hidden_dim": 1_000_000}}, "hidden_dim = 1000000"),
    ("huge-blocks", {"model_config": {**TINY.to_dict(), "num_blocks": 10_000}}, "num_blocks = 10000"),
    ("text-size", {"model_config": {**TINY.to_dict(), "heads": "4"}}, "heads = '4'"),
    ("zero-scale", {"scaler": Scaler(20.0, 0.0, None, None).to_dict()}, "scale"),
    ("text-log1p", {"scaler": {**Scaler(20.0, 5.0, None, None).to_dict(), "precipitation_log1p": "no"}},
     "precipitation_log1p is 'no'"),
    ("wrong-version", {"version": 99}, "version 99 is not supported"),
    ("no-header", {"format": "other"}, "not an STMGT checkpoint"),
    ("too-many-nodes", {"node_ids": ["n"] * 30_000}, "node_ids must be 1 to 20,000"),
]


@pytest.mark.parametrize("changes,message", [c[1:] for c in CHECKPOINTS], ids=[c[0] for c in CHECKPOINTS])
def test_damaged_checkpoints_are_refused(good_state, changes, message):
    with pytest.raises(DataError, match="the uploaded checkpoint") as err:
        load_checkpoint(edited(good_state, **changes))
    assert message in str(err.value)


def test_checkpoint_of_another_graph_does_not_print_fingerprints(good_state):
    other = RoadGraph.hcmc()
    with pytest.raises(DataError, match="another road graph") as err:
        load_checkpoint(edited(good_state), other)
    assert good_state["graph_fingerprint"] not in str(err.value) and other.fingerprint() not in str(err.value)


def test_garbage_bytes_are_not_a_checkpoint():
    with pytest.raises(DataError, match="damaged or is not a PyTorch checkpoint"):
        load_checkpoint(os.urandom(2048))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_any_garbage_is_refused_in_words():
    """Some random bytes read as a legacy pickle stream and trip torch's weights-only unpickler
    with an IndexError or KeyError (about 7 % of 2 KB blobs); each must still be one DataError."""
    for seed in range(300):
        with pytest.raises(DataError, match="damaged or is not a PyTorch checkpoint"):
            load_checkpoint(random.Random(seed).randbytes(2048))


def test_hostile_checkpoint_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    write(run / "config.json", '{"data": {"kind": "simulator", "seed": 0, "weeks": 0.5}}')
    torch.save({"format": FORMAT, "version": VERSION, "payload": Exploit(marker)}, run / "checkpoint.pt")
    with pytest.raises(DataError, match="damaged or is not a PyTorch checkpoint"):
        load_checkpoint(run / "checkpoint.pt")
    cli_fails(["forecast", "--run", run, "--at", "2025-08-25T07:00+07:00", "--out", tmp_path / "f.csv"],
              "damaged or is not a PyTorch checkpoint", capsys)
    assert not marker.exists()


def test_hostile_pickle_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "adj_mx.pkl"
    pkl.write_bytes(pickle.dumps(Exploit(marker)))
    h5 = tmp_path / "speed.h5"
    from tests.samples import metr_table
    metr_table().to_hdf(h5, key="df")
    cli_fails(["import", "metr-la", h5, pkl, "--out", tmp_path / "o"], "refused", capsys)
    assert not marker.exists() and not (tmp_path / "o").exists()


# ---- runs that did not finish ------------------------------------------------------------------
@pytest.mark.parametrize("record,message", [
    ({"state": "running", "pid": 2**22 + 12345, "host": os.uname().nodename}, "interrupted: process"),
    ({"state": "failed", "reason": "CUDA out of memory"}, "failed: CUDA out of memory"),
    ({"state": "running", "pid": os.getpid(), "host": "elsewhere"}, "running (process"),
], ids=["killed", "failed", "running-elsewhere"])
def test_unfinished_runs_are_not_used(tmp_path, good_state, record, message):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    (run.path / "checkpoint.pt").write_bytes(edited(good_state))
    (run.path / "status.json").write_text(__import__("json").dumps(record))
    with pytest.raises(DataError, match="the run is not finished") as err:
        Run.open(run.path)
    assert message in str(err.value)


def test_run_lifecycle_is_recorded(tmp_path):
    run = Run(tmp_path / "run")
    assert run.status.state == "unrecorded" and run.status.usable
    run.mark_running()
    assert run.status.state == "running" and run.status.pid == os.getpid() and not run.status.usable
    run.mark_finished("cancelled", "cancelled by the user")
    status = run.status
    assert (status.state, status.reason, status.pid) == ("cancelled", "cancelled by the user", os.getpid())
    assert status.usable and status.started and status.ended
    run.mark_failed("disk full")
    assert run.status.describe() == "failed: disk full"


# ---- uploads and server paths ------------------------------------------------------------------
def zipped(entries, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


UPLOADS = [
    ("bomb-ratio", lambda: zipped([("speed.csv", b"0" * 20_000_000)]), "expands more than 200 times"),
    ("many-entries", lambda: zipped([(f"f{i}.csv", b"") for i in range(10_001)], zipfile.ZIP_STORED),
     "10,001 entries"),
    ("traversal", lambda: zipped([("../../etc/cron.d/x", b"x")]), "outside the archive's folder"),
    ("absolute", lambda: zipped([("/etc/passwd", b"x")]), "outside the archive's folder"),
    ("not-zip", lambda: b"PK\x03\x04 this is not really a zip", "not a readable zip"),
]


@pytest.mark.parametrize("data,message", [c[1:] for c in UPLOADS], ids=[c[0] for c in UPLOADS])
def test_uploaded_archives_are_refused(tmp_path, data, message):
    with pytest.raises(DataError, match="upload.zip") as err:
        data_import.extract_zip(data(), tmp_path / "upload.zip")
    assert message in str(err.value) and not (tmp_path / "upload.zip").exists()


def test_archive_larger_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data_import, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(DataError, match="unpacks to more than"):
        data_import.extract_zip(zipped([("a.csv", os.urandom(600)), ("b.csv", os.urandom(600))]), tmp_path / "u.zip")


def test_garbage_upload_names_the_file_given(tmp_path):
    class Upload:
        name = "holiday-photo.jpg"

        def getvalue(self):
            return b"\xff\xd8\xff\xe0 not traffic data"

    from stmgt.data.importers import import_generic
    with pytest.raises(DataError, match="holiday-photo.jpg") as err:
        data_import.staged_import(lambda stage: import_generic(stage([Upload()])))
    assert "edges.csv" in str(err.value) and "stmgt-upload" not in str(err.value)


@pytest.mark.parametrize("typed,configured,message", [
    ("/etc/passwd", True, "outside the folder this server allows"),
    ("../../etc", True, "outside the folder this server allows"),
    ("escape", True, "outside the folder this server allows"),   # a link pointing out
    ("data", False, "reading files on the server is turned off"),
], ids=["absolute", "dotdot", "link-out", "off"])
def test_server_paths(tmp_path, monkeypatch, typed, configured, message):
    allowed = tmp_path / "allowed"
    (allowed / "data").mkdir(parents=True)
    (allowed / "escape").symlink_to("/etc")
    config = tmp_path / "stmgt.toml"
    config.write_text(f'[data_page]\nserver_folder = "{allowed}"\n' if configured else "")
    monkeypatch.setenv("STMGT_CONFIG", str(config))
    with pytest.raises(DataError, match=message):
        server_files.allowed_path(typed)


def test_server_path_inside_the_folder_is_read(tmp_path, monkeypatch):
    config = tmp_path / "stmgt.toml"
    config.write_text(f'[data_page]\nserver_folder = "{tmp_path}"\n')
    monkeypatch.setenv("STMGT_CONFIG", str(config))
    assert server_files.allowed_path("sub/data") == tmp_path / "sub" / "data"


# ---- bounds at entry and non-finite models (issue 26) ----


def over(name):
    """The words every refusal of one more than the limit carries: the value and the limit."""
    high = LIMITS[name].high
    return high + 1, f"{name} = {high + 1} is over the limit of {high:,}"


ROUTE = ["route", "--run", "r", "--from", "a", "--to", "b", "--depart", "2025-08-25T07:00+07:00"]
TOO_LARGE_OPTIONS = [
    ("samples-issue", [*ROUTE, "--samples", "1000000000"], "samples = 1000000000 is over the limit of"),
    ("samples", [*ROUTE, "--samples", over("samples")[0]], over("samples")[1]),
    ("epochs", ["train", "--epochs", over("epochs")[0]], over("epochs")[1]),
    ("batch-size", ["train", "--batch-size", over("batch_size")[0]], over("batch_size")[1]),
    ("patience", ["train", "--patience", over("patience")[0]], over("patience")[1]),
    ("max-batches", ["train", "--max-batches", over("max_batches")[0]], over("max_batches")[1]),
    ("seed", ["train", "--seed", over("seed")[0]], over("seed")[1]),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in TOO_LARGE_OPTIONS], ids=[c[0] for c in TOO_LARGE_OPTIONS])
def test_sizes_over_the_limit_on_the_command_line(tmp_path, capsys, argv, message):
    before = snapshot(tmp_path)
    cli_fails([*argv, "--out", tmp_path / "out"], message, capsys)
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


CONFIG_SIZES = [("model", name) for name in MODEL_SIZES] + [("train", name) for name in TRAIN_SIZES]


@pytest.mark.parametrize("section,name", CONFIG_SIZES, ids=[name for _, name in CONFIG_SIZES])
def test_sizes_over_the_limit_in_a_config_file(tmp_path, capsys, section, name):
    value, message = over(name)
    config = write(tmp_path / "settings.json", json.dumps({section: {name: value}}))
    before = snapshot(tmp_path)
    err = cli_fails(["train", "--out", tmp_path / "run", "--config", config], message, capsys)
    assert f"--config {config}" in err and LIMITS[name].why in err
    assert snapshot(tmp_path) == before


def test_the_issues_huge_hidden_dim_is_refused_before_any_allocation(tmp_path, capsys):
    config = write(tmp_path / "settings.json", '{"model": {"hidden_dim": 100000000}}')
    cli_fails(["train", "--out", tmp_path / "run", "--config", config], "hidden_dim = 100000000 is over the limit",
              capsys)
    assert not (tmp_path / "run").exists()


def test_a_training_step_too_large_for_memory_is_refused_with_its_estimate(tmp_path, capsys):
    """Every size within its limit, together far beyond any machine's memory."""
    widest = {name: LIMITS[name].high for name in MODEL_SIZES}
    config = write(tmp_path / "settings.json",
                   json.dumps({"model": widest, "train": {"batch_size": LIMITS["batch_size"].high}}))
    before = snapshot(tmp_path)
    err = cli_fails(["train", "--data", "sim:weeks=0.5", "--out", tmp_path / "run", "--config", config,
                     "--device", "cpu"], "a training step (batch_size 1024 × 62 nodes", capsys)
    assert "GB of memory, more than the" in err and "lower batch_size" in err
    assert snapshot(tmp_path) == before


def one_at_the_limit(name):
    """A tiny model with one size at its maximum (heads must divide hidden_dim; horizon = seq_len)."""
    high = LIMITS[name].high
    sizes = {"hidden_dim": 8, "num_blocks": 1, "heads": 2, "num_mixtures": 2, name: high}
    if name == "heads":
        sizes["hidden_dim"] = high
    if name in ("seq_len", "horizon"):
        sizes["seq_len"] = sizes["horizon"] = high
    return STMGTConfig(**sizes, gat_layout="concat")


@pytest.mark.parametrize("name", MODEL_SIZES)
def test_any_model_the_trainer_accepts_the_loader_loads(tmp_path, name):
    config = one_at_the_limit(name)
    graph = small_dataset().graph
    save_checkpoint(tmp_path / "checkpoint.pt", STMGT(config), Scaler(20.0, 5.0, None, None), graph)
    assert getattr(load_checkpoint(tmp_path / "checkpoint.pt", graph).config, name) == LIMITS[name].high


def test_every_size_at_its_limit_is_a_valid_config_and_one_more_is_not():
    STMGTConfig(**{name: LIMITS[name].high for name in MODEL_SIZES})      # 512 hidden is divisible by 16 heads
    TrainConfig(**{name: LIMITS[name].high for name in TRAIN_SIZES})
    for name in MODEL_SIZES:
        with pytest.raises(ValueError, match=over(name)[1]):
            STMGTConfig.from_dict({**STMGTConfig().to_dict(), name: over(name)[0]})
    for name in TRAIN_SIZES:
        with pytest.raises(ValueError, match=over(name)[1]):
            TrainConfig.from_dict({name: over(name)[0]})


def test_the_train_pages_number_inputs_take_their_bounds_from_the_table(app):
    at = app("views/train.py")
    for name in ("epochs", "patience", "batch_size", "seed", "max_batches", "restart_epochs", "restart_mult",
                 "weather_copies", *MODEL_SIZES[:4]):
        field = at.number_input(key=f"train_{name}")
        assert (field.min, field.max) == (LIMITS[name].low, LIMITS[name].high), name


def test_the_train_page_refuses_a_step_too_large_for_memory_before_starting(app, isolated_workspace):
    at = app("views/train.py")
    for name in ("hidden_dim", "heads", "num_blocks", "batch_size"):
        at.number_input(key=f"train_{name}").set_value(LIMITS[name].high)
    at.button(key="train_start").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "cannot train on this dataset" in errors and "GB of memory" in errors and "lower batch_size" in errors
    assert not (isolated_workspace / "runs").exists() and not at.exception


# Checkpoints whose weights are NaN or infinite, and one whose finite weights overflow to inf.
BAD_WEIGHTS = [
    ("nan-weights", "blocks.0.spatial.gat.lin_l.bias", [0, 1, 2], float("nan"),
     "blocks.0.spatial.gat.lin_l.bias (3 NaN)"),
    ("inf-bias", "mixture_head.output_layer.bias", [0], float("inf"), "mixture_head.output_layer.bias (1 inf)"),
    ("minus-inf", "embedding.linear.weight", [1], float("-inf"), "embedding.linear.weight (1 inf)"),
]


@pytest.fixture(scope="module")
def half_week():
    return simulate(weeks=0.5, seed=0)


def run_with(folder, dataset, tensor=None, where=(), value=None):
    """A run folder of the simulated half week whose TINY model has `value` at `where` in `tensor`."""
    model = STMGT(TINY)
    if tensor is not None:
        with torch.no_grad():
            model.state_dict()[tensor].view(-1)[where] = value
    folder.mkdir()
    write(folder / "config.json", json.dumps({"data": {"kind": "simulator", "seed": 0, "weeks": 0.5}}))
    save_checkpoint(folder / "checkpoint.pt", model, Scaler.fit(dataset, split_ranges(dataset.num_steps)["train"]),
                    dataset.graph)
    return folder


@pytest.mark.parametrize("tensor,where,value,message", [c[1:] for c in BAD_WEIGHTS], ids=[c[0] for c in BAD_WEIGHTS])
def test_non_finite_weights_are_refused_at_load_naming_the_tensors(tmp_path, half_week, tensor, where, value, message):
    run = run_with(tmp_path / "run", half_week, tensor, where, value)
    with pytest.raises(DataError, match="has non-finite weights in") as err:
        load_checkpoint(run / "checkpoint.pt")
    assert message in str(err.value) and "retrain or pick another run" in str(err.value)


def forecast_args(run, dataset, out):
    return ["forecast", "--run", run, "--at", dataset.timestamps[200].isoformat(), "--out", out]


def route_args(run, dataset, out):
    edge = dataset.graph.edges.iloc[0]
    return ["route", "--run", run, "--from", edge.source, "--to", edge.target,
            "--depart", dataset.timestamps[200].isoformat(), "--out", out]


MODEL_PROBLEMS = [
    ("forecast-nan", forecast_args, BAD_WEIGHTS[0], "non-finite weights in: blocks.0.spatial.gat.lin_l.bias"),
    ("route-nan", route_args, BAD_WEIGHTS[0], "non-finite weights in: blocks.0.spatial.gat.lin_l.bias"),
    ("forecast-inf", forecast_args, BAD_WEIGHTS[1], "non-finite weights in: mixture_head.output_layer.bias"),
    ("route-inf", route_args, BAD_WEIGHTS[1], "non-finite weights in: mixture_head.output_layer.bias"),
    ("forecast-overflow", forecast_args, ("", "mixture_head.output_layer.bias", [0], 3e38, ""),
     "is NaN or infinite for 62 node(s)"),
    ("route-overflow", route_args, ("", "mixture_head.output_layer.bias", [0], 3e38, ""),
     "is NaN or infinite for 62 node(s)"),
]


@pytest.mark.parametrize("args,bad,message", [c[1:] for c in MODEL_PROBLEMS], ids=[c[0] for c in MODEL_PROBLEMS])
def test_forecast_and_route_refuse_a_model_that_cannot_forecast(tmp_path, capsys, half_week, args, bad, message):
    run = run_with(tmp_path / "run", half_week, *bad[1:4])
    before = snapshot(tmp_path)
    err = cli_fails(args(run, half_week, tmp_path / "answer"), message, capsys)
    assert "no route" not in err and snapshot(tmp_path) == before


def test_a_forecast_that_overflows_names_nodes_and_steps(tmp_path, half_week):
    run = run_with(tmp_path / "run", half_week, "mixture_head.output_layer.bias", [0], 3e38)
    forecaster = Forecaster(Run.open(run).load(half_week.graph), half_week)
    with pytest.raises(DataError, match="horizon step\\(s\\) 1, 2, 3") as err:
        forecaster.forecast(forecaster.anchor_at(half_week.timestamps[200]))
    assert half_week.graph.node_ids[0] in str(err.value) and "no forecast is given" in str(err.value)


def test_route_samples_over_the_memory_budget_are_refused_with_the_estimate(tmp_path, half_week, monkeypatch):
    forecaster = Forecaster(Run.open(run_with(tmp_path / "run", half_week)).load(half_week.graph), half_week)
    planner = TripPlanner(half_week, ErrorCopula.independent(half_week.num_nodes, forecaster.horizon))
    anchor = forecaster.anchor_at(half_week.timestamps[200])
    edge = half_week.graph.edges.iloc[0]
    monkeypatch.setattr("stmgt.routing.trip.memory_budget", lambda: 10**6)
    with pytest.raises(DataError, match="samples of the trip .* would need about .* more than the 0.0 GB") as err:
        planner.plan(forecaster.forecast(anchor), edge.source, edge.target, half_week.timestamps[200], samples=20_000)
    assert "ask for fewer samples" in str(err.value)
    with pytest.raises(DataError, match=over("samples")[1]):
        planner.plan(forecaster.forecast(anchor), edge.source, edge.target, half_week.timestamps[200],
                     samples=over("samples")[0])


JSON_NON_FINITE = [
    ("top", {"p50_min": float("nan")}, "p50_min is nan"),
    ("nested", {"segments": [{"speed": 3.0}, {"speed": float("inf")}]}, "segments[1].speed is inf"),
    ("deep", {"shortest": {"path": ["a"], "p90_min": float("-inf")}}, "shortest.p90_min is -inf"),
]


@pytest.mark.parametrize("data,message", [c[1:] for c in JSON_NON_FINITE], ids=[c[0] for c in JSON_NON_FINITE])
def test_json_never_holds_a_bare_nan(tmp_path, data, message):
    with pytest.raises(DataError, match="which JSON cannot hold") as err:
        write_json(tmp_path / "answer.json", data)
    assert message in str(err.value) and list(tmp_path.iterdir()) == []


# ---- messages that say what was found, early checks, resume (issue 26) ----


def resaved(path, separator=";", decimal_comma=False):
    """The CSV as a spreadsheet in a decimal-comma locale saves it."""
    text = path.read_text()
    text = text.replace(",", separator)
    path.write_text(text.replace(".", ",") if decimal_comma else text)


def renamed_node(folder, old, new):
    for name in ("nodes.csv", "edges.csv", "speed.csv"):
        path = folder / name
        path.write_text(path.read_text().replace(old, new))


def header(path, text):
    lines = path.read_text().splitlines()
    path.write_text("\n".join([text, *lines[1:]]) + "\n")


LAYOUTS = [
    ("speed-semicolons", lambda g: resaved(g / "speed.csv"),
     "speed.csv: looks `;`-separated (first line: 'timestamp;n1;n2;n3'); save it with commas between fields,"),
    ("speed-decimal-commas", lambda g: resaved(g / "speed.csv", decimal_comma=True),
     "looks `;`-separated with decimal commas (first line: 'timestamp;n1;n2;n3'); save it with commas between "
     "fields and points as decimal marks"),
    ("speed-tabs", lambda g: resaved(g / "speed.csv", "\t"), "speed.csv: looks tab-separated"),
    ("speed-pipes", lambda g: resaved(g / "speed.csv", "|"), "speed.csv: looks `|`-separated"),
    ("weather-semicolons", lambda g: resaved(g / "weather.csv", decimal_comma=True),
     "weather.csv: looks `;`-separated with decimal commas"),
    ("nodes-semicolons", lambda g: resaved(g / "nodes.csv"),
     "nodes.csv: looks `;`-separated (first line: 'node_id;name;lat;lon;road_class')"),
    ("edges-tabs", lambda g: resaved(g / "edges.csv", "\t"), "edges.csv: looks tab-separated"),
    ("adjacency-semicolons",
     lambda g: [(g / "edges.csv").unlink(), write(g / "adjacency.csv", "0;1;0\n0;0;1\n1;0;0\n")],
     "adjacency.csv: looks `;`-separated (first line: '0;1;0')"),
    ("node-called-timestamp", lambda g: renamed_node(g, "n2", "timestamp"),
     "nodes line 3: node_id 'timestamp' is the name of the time column of speed.csv"),
    ("speed-header-repeats-node", lambda g: header(g / "speed.csv", "timestamp,n1,n2,n1"),
     "speed.csv line 1: column 'n1' appears twice in the header (fields 2 and 4)"),
    ("speed-header-repeats-time", lambda g: header(g / "speed.csv", "timestamp,n1,timestamp,n3"),
     "'timestamp' names the time column, so no node may be called that"),
    ("weather-header-repeats", lambda g: header(g / "weather.csv", "timestamp,temperature_c,wind_kmh,wind_kmh"),
     "weather.csv line 1: column 'wind_kmh' appears twice"),
]


@pytest.mark.parametrize("damage,message", [c[1:] for c in LAYOUTS], ids=[c[0] for c in LAYOUTS])
def test_a_file_in_another_layout_is_described(tmp_path, capsys, damage, message):
    folder = write_folder(small_dataset(), tmp_path / "given")
    damage(folder)
    before = snapshot(folder)
    err = cli_fails(["import", "generic", folder, "--out", tmp_path / "out"], message, capsys)
    assert "not node ids" not in err and "no 'timestamp' column" not in err
    assert snapshot(folder) == before and not (tmp_path / "out").exists()


MATRIX_LAYOUTS = [
    ("matrix-speed-semicolons", lambda t: [write(t / "speed.csv", "101;102;103\n20,5;30;1\n22;31;40\n"),
                                           write(t / "adj.csv", MATRIX_ADJ)],
     "speed.csv: looks `;`-separated with decimal commas (first line: '101;102;103')"),
    ("matrix-adjacency-semicolons", lambda t: [write(t / "speed.csv", MATRIX_SPEED),
                                               write(t / "adj.csv", MATRIX_ADJ.replace(",", ";"))],
     "adj.csv: looks `;`-separated"),
    ("matrix-header-repeats", lambda t: [write(t / "speed.csv", "101,102,101\n20,30,1\n22,31,40\n"),
                                         write(t / "adj.csv", MATRIX_ADJ)],
     "column '101' appears twice in the header (fields 1 and 3)"),
]


@pytest.mark.parametrize("files,message", [c[1:] for c in MATRIX_LAYOUTS], ids=[c[0] for c in MATRIX_LAYOUTS])
def test_a_matrix_in_another_layout_is_described(tmp_path, capsys, files, message):
    cli_fails(["import", "matrix", *files(tmp_path), "--start", "2012-03-01", "--out", tmp_path / "out"],
              message, capsys)
    assert not (tmp_path / "out").exists()


def test_import_says_the_cadence_in_minutes_and_names_a_node_never_observed(tmp_path, capsys):
    dataset = small_dataset()
    dataset.speed[:, 1] = np.nan
    folder = write_folder(dataset, tmp_path / "given")
    assert main(["import", "generic", str(folder), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "8 steps every 15 min," in out and "0 days" not in out
    assert "note: 1 node(s) have no speed reading anywhere in the data (n2): their forecasts rest on their " \
           "neighbours" in out


@pytest.fixture(scope="module")
def short_hcmc(tmp_path_factory):
    """Two weeks of the simulator's HCMC data as a folder, node n05 never observed."""
    dataset = simulate(weeks=2, seed=3)
    dataset.speed[:, dataset.graph.index_of["n05"]] = np.nan
    return write_folder(dataset, tmp_path_factory.mktemp("hcmc") / "data")


DEPART = "2025-07-10T08:00+07:00"
ROUTES = [
    ("same-node", ["--from", "n01", "--to", "n01", "--depart", DEPART],
     "--from/--to: origin and destination are the same node (n01); give two different nodes"),
    ("deadline-before", ["--from", "n01", "--to", "n09", "--depart", DEPART, "--deadline", "2025-07-10T07:30+07:00"],
     "the deadline 2025-07-10T07:30:00+07:00 is not after the departure 2025-07-10T08:00:00+07:00"),
    ("deadline-at-departure", ["--from", "n01", "--to", "n09", "--depart", DEPART, "--deadline", DEPART],
     "is not after the departure"),
    ("unknown-origin", ["--from", "n99", "--to", "n01", "--depart", DEPART], "--from: unknown node 'n99'"),
    ("unknown-destination", ["--from", "n01", "--to", "x", "--depart", DEPART], "--to: unknown node 'x'"),
    ("depart-text", ["--from", "n01", "--to", "n09", "--depart", "soon"], "--depart: 'soon' is not a time"),
    ("deadline-text", ["--from", "n01", "--to", "n09", "--depart", DEPART, "--deadline", "late"],
     "--deadline: 'late' is not a time"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in ROUTES], ids=[c[0] for c in ROUTES])
def test_route_refuses_before_the_model_loads(short_hcmc, monkeypatch, capsys, argv, message):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(Run, "load", no_model)
    cli_fails(["route", "--run", BUNDLED_RUN, "--data", short_hcmc, *argv], message, capsys)


def test_forecast_warns_about_a_node_never_observed(short_hcmc, tmp_path, capsys):
    assert main(["forecast", "--run", str(BUNDLED_RUN), "--data", str(short_hcmc), "--at", DEPART,
                 "--out", str(tmp_path / "f.csv")]) == 0
    assert "warning: 1 node(s) have no speed reading anywhere in the data (n05)" in capsys.readouterr().out


def cancelled_run(folder, epochs_done=3):
    """A run of 4 epochs cancelled after `epochs_done`, as `train --resume` finds it (no training
    needed: every refusal below comes before the data is loaded)."""
    run = Run(folder)
    config = json.loads((BUNDLED_RUN / "config.json").read_text())
    run.write_config({**config, "train": {**config["train"], "epochs": 4},
                      "data": {"kind": "simulator", "seed": 0, "weeks": 1.0}})
    run.write_history(pd.DataFrame({"epoch": range(1, epochs_done + 1), "val_mae": 5.0}))
    run.mark_finished("cancelled", "cancelled by the user")
    return run


RESUMES = [
    ("epochs-fewer", ["--epochs", "2"], "the run has already trained 3 epochs, so --epochs 2 leaves nothing to do; "
                                        "give more than 3, or leave --epochs out to train to its own 4"),
    ("epochs-same", ["--epochs", "3"], "--epochs 3 leaves nothing to do"),
    ("lr", ["--lr", "0.1"], "a resumed run keeps its own settings (only --epochs and --device may change); "
                            "leave --lr out"),
    ("batch-and-seed", ["--batch-size", "8", "--seed", "2"], "leave --batch-size, --seed out"),
    ("layout", ["--layout", "mean"], "leave --layout out"),
    ("max-batches", ["--max-batches", "2", "--patience", "3"], "leave --patience, --max-batches out"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in RESUMES], ids=[c[0] for c in RESUMES])
def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys, argv, message):
    run = cancelled_run(tmp_path / "run")
    before = snapshot(run.path)
    cli_fails(["train", "--resume", run.path, *argv], message, capsys)
    assert snapshot(run.path) == before


# ---- injection-safe exports (issue 26) ----
# A hostile dataset (node ids, names and streets a spreadsheet would evaluate) leaves no live
# formula in any CSV the command line or the dashboard writes, and its text reads back exactly.


HOSTILE_IDS = ['=HYPERLINK("http://x")', "@SUM(1)", "+1", "-1+2", "=cmd|' /C calc'!A0"]
HOSTILE_TEXT = ["\tx", "\r=1+1", 'x\r=HYPERLINK("http://x")', "@SUM(1)", "-2+3"]


def csv_cells(data: bytes) -> list[str]:
    """Every cell of a CSV as a spreadsheet splits it (a bare CR ends a row there too)."""
    text = data.decode().replace("\r\n", "\n")
    return [cell for line in csv.reader(text.splitlines(keepends=True)) for cell in line]


PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")       # what the writers print for a number (to_csv, %.3f)


def assert_no_formula(data: bytes) -> None:
    """No cell begins as a formula, unless it is a plain negative number (a number to a spreadsheet)."""
    live = [c for c in csv_cells(data) if c.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(c)]
    assert not live, f"cells a spreadsheet would evaluate: {live[:5]}"


def hostile_dataset(dataset: TrafficDataset) -> TrafficDataset:
    """`dataset` with its first node ids, every name and every street name hostile."""
    g = dataset.graph
    rename = dict(zip(g.node_ids, HOSTILE_IDS))
    nodes = g.nodes.assign(node_id=g.nodes.node_id.replace(rename),
                           name=[HOSTILE_TEXT[i % len(HOSTILE_TEXT)] + str(i) for i in range(g.num_nodes)])
    edges = g.edges.assign(source=g.edges.source.replace(rename), target=g.edges.target.replace(rename),
                           road_name=[HOSTILE_TEXT[i % len(HOSTILE_TEXT)] for i in range(g.num_edges)])
    return TrafficDataset(dataset.timestamps, dataset.speed, dataset.weather, RoadGraph(nodes, edges),
                          {"source": "test"})


@pytest.fixture(scope="module")
def hostile_workspace(tmp_path_factory):
    """A workspace with the hostile dataset and a tiny evaluated run on it (seconds on a CPU)."""
    root = tmp_path_factory.mktemp("hostile")
    data = hostile_dataset(simulate(weeks=2, seed=5))
    folder = write_folder(data, root / "datasets" / "hostile")
    run = root / "runs" / "hostile"
    fit(data, TINY, TrainConfig(epochs=1, batch_size=16, max_batches=1, calibrate=False, device="cpu"), run,
        {"kind": "folder", "path": str(folder)})
    assert main(["evaluate", "--run", str(run)]) == 0
    return root


def hand_written(folder, dataset: TrafficDataset) -> None:
    """The dataset as a user's own folder: text as it is, every cell quoted."""
    folder.mkdir()
    dataset.graph.nodes.to_csv(folder / "nodes.csv", index=False, quoting=csv.QUOTE_ALL)
    dataset.graph.edges.to_csv(folder / "edges.csv", index=False, quoting=csv.QUOTE_ALL)
    for name, frame in (("speed.csv", dataset.speed_frame()), ("weather.csv", dataset.weather_frame())):
        frame.insert(0, "timestamp", [t.isoformat() for t in dataset.timestamps])
        frame.to_csv(folder / name, index=False, quoting=csv.QUOTE_ALL)


IMPORTED_TEXT = [("node_id", '=HYPERLINK("http://x")'), ("node_id", "@SUM(1)"), ("node_id", "-1+2"),
                 ("name", "\tx"), ("name", "x\r=1+1"),
                 ("road_name", "+1"), ("road_name", "\r=1+1")]


@pytest.mark.parametrize("field,text", IMPORTED_TEXT, ids=[f"{f}-{t!r}" for f, t in IMPORTED_TEXT])
def test_imported_hostile_text_is_stored_inert_and_reads_back_exactly(tmp_path, capsys, field, text):
    base = small_dataset()
    nodes, edges = base.graph.nodes.copy(), base.graph.edges.copy()
    if field == "node_id":
        nodes.loc[0, "node_id"] = text
        edges = edges.replace({"source": {"n1": text}, "target": {"n1": text}})
    elif field == "name":
        nodes.loc[0, "name"] = text
    else:
        edges.loc[0, "road_name"] = text
    given = TrafficDataset(base.timestamps, base.speed, base.weather, RoadGraph(nodes, edges), {"source": "test"})
    hand_written(tmp_path / "mine", given)
    before = snapshot(tmp_path / "mine")
    assert main(["import", "generic", str(tmp_path / "mine"), "--out", str(tmp_path / "ours")]) == 0, \
        capsys.readouterr().err
    assert snapshot(tmp_path / "mine") == before
    for name in ("nodes.csv", "edges.csv", "speed.csv", "weather.csv"):
        assert_no_formula((tmp_path / "ours" / name).read_bytes())
    back = read_folder(tmp_path / "ours").graph
    assert back.node_ids == given.graph.node_ids
    assert back.nodes["name"].tolist() == given.graph.nodes["name"].tolist()
    assert back.edges["road_name"].tolist() == given.graph.edges["road_name"].tolist()


CLI_EXPORTS = [(command, node) for command in ("forecast", "whatif") for node in HOSTILE_IDS]


@pytest.mark.parametrize("command,node", CLI_EXPORTS, ids=[f"{c}-{n!r}" for c, n in CLI_EXPORTS])
def test_command_line_exports_carry_no_formula(hostile_workspace, tmp_path, command, node):
    run = hostile_workspace / "runs" / "hostile"
    at = read_folder(hostile_workspace / "datasets" / "hostile").timestamps[-30].isoformat()
    out = tmp_path / f"{command}.csv"
    weather = ["--precipitation", "20"] if command == "whatif" else []
    assert main([command, "--run", str(run), "--at", at, *weather, "--out", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]          # no temporary file left beside it
    data = out.read_bytes()
    assert_no_formula(data)
    assert neutralise(node) in csv_cells(data)
    frame = restored(pd.read_csv(out, dtype={"node_id": str}))
    assert (frame["node_id"] == node).sum() == 12                        # its 12 steps, the text exact
    numbers = [c for c in frame.columns if c in ("mean", "q10", "q50", "q90", "model_change")]
    assert numbers and all(pd.api.types.is_float_dtype(frame[c]) for c in numbers)
    assert (frame[numbers].to_numpy() < 0).any() or command == "forecast"  # negative changes stay numbers


DASHBOARD_EXPORTS = [
    ("views/node_forecast.py", {"node_id": HOSTILE_IDS[0]}, "forecast_", "horizon", "+15 min"),
    ("views/route.py", {}, "route_", "from", HOSTILE_IDS[0]),
    ("views/route.py", {}, "route_", "road_name", None),
    ("views/evaluation.py", {}, "mae_by_horizon", "Horizon", "+15 min"),
]


@pytest.mark.parametrize("view,session,prefix,column,first", DASHBOARD_EXPORTS,
                         ids=["node-forecast", "route-from", "route-street", "evaluation"])
def test_dashboard_downloads_carry_no_formula(app, hostile_workspace, isolated_workspace, downloads,
                                              view, session, prefix, column, first):
    for kind in ("datasets", "runs"):
        shutil.copytree(hostile_workspace / kind, isolated_workspace / kind)
    app(view, dataset="Imported: hostile", model="Run: hostile", **session)
    (name, data), = [(k, v) for k, v in downloads.items() if k.startswith(prefix)]
    assert name.endswith(".csv") and "/" not in name and '"' not in name
    assert_no_formula(data)
    frame = restored(pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False))
    values = frame[column].tolist()
    if first is None:                   # every street of the route is one of the hostile names
        assert set(values) <= set(HOSTILE_TEXT) and values
    else:
        assert values[0] == first


# ---- folders the tool owns, file by file, and one writer at a time (issue 26) ----


REPO = Path(__file__).resolve().parent.parent
DEAD_PID = 2**22 + 12345                      # above Linux's pid_max: never a live process
QUICK_TRAIN = ["--data", "sim:weeks=1", "--epochs", "1", "--max-batches", "1", "--batch-size", "4",
               "--device", "cpu", "--no-evaluate"]
SHORT_DATA = {"kind": "simulator", "seed": 0, "weeks": 0.05}     # 34 steps: too short to train


def train_args(tmp_path, *more):
    """`train` of the smallest model for one batch (seconds on a CPU)."""
    config = tmp_path / "tiny.json"
    if not config.exists():
        config.write_text(json.dumps({"model": TINY.to_dict(), "train": {"calibrate": False}}))
    return ["train", *QUICK_TRAIN, "--config", config, *more]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder of ours, trained once for the tests below to copy."""
    folder = tmp_path_factory.mktemp("trained")
    assert main([str(a) for a in train_args(folder, "--out", folder / "run")]) == 0
    return folder / "run"


def our_run(trained, folder, state=None):
    """A copy of the trained run at `folder`, its recorded state changed to `state` if given."""
    shutil.copytree(trained, folder)
    if state is not None:
        Run(folder).mark_finished(state, "stopped by the test")
    return folder


def tree(folder):
    """Everything under `folder`, links not followed: a file's bytes, a link's target, None for a folder."""
    entries = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top) / name
            entries[path.relative_to(folder)] = (os.readlink(path) if path.is_symlink()
                                                 else None if path.is_dir() else path.read_bytes())
    return entries


@contextmanager
def held_by_another_process(folder):
    """`folder`'s writer lock, held by a child process until the block ends; yields its pid."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; from stmgt.storage.lock import FolderLock; "
                              "lock = FolderLock(sys.argv[1], 'test'); print('held', flush=True); sys.stdin.read()",
                              str(folder)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "held\n"
        yield child.pid
    finally:
        child.stdin.close()
        child.wait(30)


def left_by_a_killed_process(folder):
    """A lock file on `folder` whose holder was killed (SIGKILL: it could not clean up)."""
    with held_by_another_process(folder) as pid:
        os.kill(pid, 9)
    return pid


FOREIGN = [
    ("dataset-notes", "dataset", lambda f: write(f / "NOTES.txt", "call the city on Monday"), "NOTES.txt"),
    ("dataset-script", "dataset", lambda f: write(f / "analysis" / "plot.py", "import matplotlib"), "analysis/"),
    ("dataset-notebook", "dataset", lambda f: write(f / "my_analysis.ipynb", "{}"), "my_analysis.ipynb"),
    ("dataset-empty-folder", "dataset", lambda f: (f / "plots").mkdir(), "plots/"),
    ("dataset-many", "dataset", lambda f: [write(f / f"note{i}.txt", "x") for i in range(7)],
     "note0.txt, note1.txt, note2.txt, note3.txt, note4.txt and 2 more"),
    ("run-notes", "run", lambda f: write(f / "NOTES.txt", "lr 1e-3 was too high"), "NOTES.txt"),
    ("run-script", "run", lambda f: write(f / "analysis" / "plot.py", "import matplotlib"), "analysis/"),
    ("run-notebook", "run", lambda f: write(f / "my_analysis.ipynb", "{}"), "my_analysis.ipynb"),
    ("run-plots", "run", lambda f: write(f / "plots" / "loss.png", "png"), "plots/"),
    ("run-hidden-file", "run", lambda f: write(f / ".notes", "x"), ".notes"),
    ("run-our-name-as-folder", "run", lambda f: (f / "metrics.json").mkdir(), "metrics.json/"),
    ("run-link", "run", lambda f: (f / "data.csv").symlink_to(f.parent / "given" / "speed.csv"), "data.csv"),
    ("run-not-a-temp-file", "run", lambda f: write(f / ".config.json.old", "{}"), ".config.json.old"),
]


def overwriting(tmp_path, trained, kind: str, *options):
    """A dataset or run folder of ours at `tmp_path/out`, and the command line that overwrites it."""
    given = write_folder(small_dataset(weather=False), tmp_path / "given")
    if kind == "dataset":
        out = write_folder(small_dataset(), tmp_path / "out")
        return out, ["import", "generic", given, "--out", out, "--overwrite"]
    out = our_run(trained, tmp_path / "out")
    return out, train_args(tmp_path, "--out", out, "--overwrite", *options)


@pytest.mark.parametrize("kind,add,named", [c[1:] for c in FOREIGN], ids=[c[0] for c in FOREIGN])
def test_overwrite_refuses_a_folder_of_ours_that_holds_the_users_files(tmp_path, capsys, trained, kind, add, named):
    out, argv = overwriting(tmp_path, trained, kind)
    add(out)
    before = tree(tmp_path)
    cli_fails(argv, f"--out {out}: holds files this tool did not write: {named}; move them out or choose "
                    "another folder; nothing was changed", capsys)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind,leftover", [("dataset", None), ("dataset", ".speed.csv.k2j4h6g8"),
                                           ("run", None), ("run", ".checkpoint.pt.a1b2c3d4")],
                         ids=["dataset", "dataset-killed-write", "run", "run-killed-write"])
def test_overwrite_replaces_a_folder_that_holds_only_our_files(tmp_path, capsys, trained, kind, leftover):
    """Also the temporary file of an atomic write that a killed process left is known as ours."""
    out, argv = overwriting(tmp_path, trained, kind, "--seed", "5")
    if leftover:
        write(out / leftover, "half a file")
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert leftover is None or not (out / leftover).exists()
    if kind == "dataset":
        assert not (out / "weather.csv").exists()           # the new dataset's: given has no weather
    else:
        assert Run.open(out).config["train"]["seed"] == 5 and Run(out).status.state == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["given", "out", *(["tiny.json"] * (kind == "run"))])


WRITERS = [   # (the folder it writes, its command line); `dataset` and `run` are ours, `run` cancelled
    ("import-overwrite", "dataset",
     lambda t: ["import", "generic", t / "given", "--out", t / "dataset", "--overwrite"]),
    ("simulate-overwrite", "dataset", lambda t: ["simulate", "--weeks", "0.1", "--out", t / "dataset", "--overwrite"]),
    ("simulate-new", "fresh", lambda t: ["simulate", "--weeks", "0.1", "--out", t / "fresh"]),
    ("train-overwrite", "run", lambda t: train_args(t, "--out", t / "run", "--overwrite")),
    ("train-new", "fresh", lambda t: train_args(t, "--out", t / "fresh")),
    ("train-resume", "run", lambda t: ["train", "--resume", t / "run"]),
    ("evaluate", "run", lambda t: ["evaluate", "--run", t / "run", "--data", t / "dataset"]),
]


@pytest.mark.parametrize("target,argv", [c[1:] for c in WRITERS], ids=[c[0] for c in WRITERS])
def test_a_second_writer_is_refused_while_the_first_lives(tmp_path, capsys, trained, target, argv):
    write_folder(small_dataset(weather=False), tmp_path / "given")
    write_folder(small_dataset(), tmp_path / "dataset")
    our_run(trained, tmp_path / "run", "cancelled")
    args = argv(tmp_path)
    with held_by_another_process(tmp_path / target) as pid:
        before = tree(tmp_path)
        option = next(o for o in ("--resume", "--run", "--out") if o in args)
        err = cli_fails(args, f"{option} {tmp_path / target}: is being written by another process (pid {pid} on ",
                        capsys)
        assert "wait for it to finish or stop it" in err
        assert tree(tmp_path) == before


def test_the_data_page_save_and_a_dashboard_job_are_refused_while_another_writes(tmp_path):
    target, run_dir = write_folder(small_dataset(), tmp_path / "dataset"), tmp_path / "runs" / "job"
    with held_by_another_process(target) as pid, held_by_another_process(run_dir) as job_pid:
        before = tree(tmp_path)
        with pytest.raises(DataError, match=f"Dataset name {target}: is being written by another process "
                                            f"\\(pid {pid} "):
            write_folder(small_dataset(weather=False), target, overwrite=True, option="Dataset name")
        assert tree(tmp_path) == before
        job = JobRegistry().start(simulate(weeks=1), TINY, TrainConfig(epochs=1, max_batches=1, device="cpu"),
                                  run_dir, {"kind": "simulator", "seed": 0, "weeks": 1})
        job.join(60)
        snap = job.snapshot()
        assert snap.status == "failed" and f"is being written by another process (pid {job_pid} " in snap.error
        assert tree(run_dir) == {}                         # the job wrote nothing into it


@pytest.mark.parametrize("target,argv", [c[1:] for c in WRITERS if c[0] not in ("train-resume", "evaluate")],
                         ids=[c[0] for c in WRITERS if c[0] not in ("train-resume", "evaluate")])
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys, trained, target, argv):
    write_folder(small_dataset(weather=False), tmp_path / "given")
    write_folder(small_dataset(), tmp_path / "dataset")
    our_run(trained, tmp_path / "run", "cancelled")
    left_by_a_killed_process(tmp_path / target)
    assert (tmp_path / f".{target}.lock").exists()
    assert main([str(a) for a in argv(tmp_path)]) == 0, capsys.readouterr().err
    assert not (tmp_path / f".{target}.lock").exists()       # released when done


def test_a_run_taken_over_by_a_live_writer_is_not_called_interrupted(tmp_path, capsys, trained):
    run = Run(our_run(trained, tmp_path / "run"))
    record = {"state": "running", "pid": DEAD_PID, "host": os.uname().nodename}
    (run.path / "status.json").write_text(json.dumps(record))
    assert run.status.state == "interrupted"
    with held_by_another_process(run.path) as pid:
        assert (run.status.state, run.status.pid) == ("running", pid)
        assert main(["runs", str(tmp_path)]) == 0
        assert f"running (process {pid} on " in capsys.readouterr().out
    assert run.status.state == "interrupted"


LINKS = [
    ("import", lambda t: ["import", "generic", t / "given", "--out", t / "out"]),
    ("import-overwrite", lambda t: ["import", "generic", t / "given", "--out", t / "out", "--overwrite"]),
    ("simulate", lambda t: ["simulate", "--weeks", "0.1", "--out", t / "out"]),
    ("train", lambda t: train_args(t, "--out", t / "out")),
    ("train-overwrite", lambda t: train_args(t, "--out", t / "out", "--overwrite")),
]


@pytest.mark.parametrize("argv", [c[1] for c in LINKS], ids=[c[0] for c in LINKS])
@pytest.mark.parametrize("dangling", [True, False], ids=["dangling", "to-our-dataset"])
def test_a_link_as_out_is_refused_in_words(tmp_path, capsys, argv, dangling):
    write_folder(small_dataset(weather=False), tmp_path / "given")
    pointed = tmp_path / "gone" if dangling else write_folder(small_dataset(), tmp_path / "real")
    (tmp_path / "out").symlink_to(pointed)
    args = argv(tmp_path)
    before = tree(tmp_path)
    err = cli_fails(args, f"--out {tmp_path / 'out'}: is a symbolic link to {pointed}"
                          + (", which does not exist" if dangling else "") + "; give the path of a real", capsys)
    assert ".partial" not in err and tree(tmp_path) == before


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


DISK_FULL = [   # (what fails to write, command line, what the message says)
    ("import-new", RoadGraph, "write", lambda t: ["import", "generic", t / "given", "--out", t / "new"],
     lambda t: f"--out {t / 'new'}: could not be written: No space left on device"),
    ("import-overwrite", RoadGraph, "write",
     lambda t: ["import", "generic", t / "given", "--out", t / "dataset", "--overwrite"],
     lambda t: f"--out {t / 'dataset'}: could not be written: No space left on device"),
    ("simulate-new", RoadGraph, "write", lambda t: ["simulate", "--weeks", "0.1", "--out", t / "new"],
     lambda t: f"--out {t / 'new'}: could not be written: No space left on device"),
    ("train-overwrite", os, "fsync", lambda t: train_args(t, "--out", t / "run", "--overwrite"),
     lambda t: f"--out {t / 'run'}: could not be written: No space left on device"),
    ("train-new", os, "fsync", lambda t: train_args(t, "--out", t / "new"),
     lambda t: f"{t / 'new' / 'config.json'}: No space left on device"),
]


@pytest.mark.parametrize("owner,name,argv,message", [c[1:] for c in DISK_FULL], ids=[c[0] for c in DISK_FULL])
def test_a_full_disk_names_what_was_being_written_and_leaves_nothing_half_written(
        tmp_path, capsys, monkeypatch, trained, owner, name, argv, message):
    write_folder(small_dataset(weather=False), tmp_path / "given")
    write_folder(small_dataset(), tmp_path / "dataset")
    our_run(trained, tmp_path / "run")
    args = argv(tmp_path)
    before = tree(tmp_path)
    monkeypatch.setattr(owner, name, no_space)
    err = cli_fails(args, message(tmp_path) + "; free some space there or write elsewhere", capsys)
    monkeypatch.undo()
    assert ".partial" not in err
    assert {p: v for p, v in tree(tmp_path).items() if p != Path("new")} == before   # at most an empty new folder


TOO_SHORT = [
    ("train-new", lambda t: [a if a != "sim:weeks=1" else "sim:weeks=0.05" for a in train_args(t, "--out", t / "new")]),
    ("train-overwrite", lambda t: [a if a != "sim:weeks=1" else "sim:weeks=0.05"
                                   for a in train_args(t, "--out", t / "run", "--overwrite")]),
    ("train-resume", lambda t: ["train", "--resume", t / "run"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in TOO_SHORT], ids=[c[0] for c in TOO_SHORT])
def test_data_too_short_to_train_leaves_no_run_behind(tmp_path, capsys, trained, argv):
    run = Run(our_run(trained, tmp_path / "run", "cancelled"))
    run.write_config({**run.config, "data": SHORT_DATA})       # what the resume trains on
    args = argv(tmp_path)
    before = tree(tmp_path)
    err = cli_fails(args, "the data is too short: its val split holds no complete 12+12-step window (34 steps "
                          "in all); give a longer series", capsys)
    assert tree(tmp_path) == before and not (tmp_path / "new").exists()
    assert run.status.state == "cancelled" and "Traceback" not in err


def test_data_too_short_leaves_no_run_of_a_dashboard_job(tmp_path):
    job = JobRegistry().start(simulate(weeks=0.05), TINY, TrainConfig(epochs=1, max_batches=1, device="cpu"),
                              tmp_path / "runs" / "short", SHORT_DATA)
    job.join(60)
    snap = job.snapshot()
    assert snap.status == "failed" and "the data is too short" in snap.error
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == []


def test_a_dataset_being_saved_or_swapped_out_is_not_listed(isolated_workspace):
    """A save builds the dataset in a hidden folder beside its own: the sidebar never lists that."""
    from stmgt.storage.workspace import Workspace
    workspace = Workspace.default()
    mine = write_folder(small_dataset(), workspace.dataset_dir("mine"))
    shutil.copytree(mine, workspace.datasets_dir / ".mine.partial-x1y2z3")
    assert list(workspace.datasets()) == ["mine"]


@pytest.mark.parametrize("add,kept", [(lambda f: write(f / "NOTES.txt", "x"), ["NOTES.txt"]),
                                      (lambda f: write(f / "plots" / "a.png", "png"), ["plots"]),
                                      (lambda f: None, None)], ids=["notes", "plots", "only-ours"])
def test_deleting_a_saved_dataset_removes_only_its_own_files(isolated_workspace, add, kept):
    from stmgt.storage.workspace import Workspace
    from ui.data_import import delete_saved
    workspace = Workspace.default()
    mine = write_folder(small_dataset(), workspace.dataset_dir("mine"))
    add(mine)
    users = {k: v for k, v in tree(mine).items() if str(k).split("/")[0] in (kept or [])}
    assert [p.name for p in delete_saved(mine, workspace.datasets_dir)] == (kept or [])
    assert (tree(mine) == users) if kept else not mine.exists()
    assert list(workspace.datasets()) == []


def test_a_saved_dataset_being_written_is_not_deleted(isolated_workspace):
    from stmgt.storage.workspace import Workspace
    from ui.data_import import delete_saved
    workspace = Workspace.default()
    mine = write_folder(small_dataset(), workspace.dataset_dir("mine"))
    before = tree(mine)
    with held_by_another_process(mine) as pid:
        with pytest.raises(DataError, match=f"is being written by another process \\(pid {pid} "):
            delete_saved(mine, workspace.datasets_dir)
    assert tree(mine) == before


@pytest.mark.filterwarnings("error:The given NumPy array is not writable")
def test_training_on_a_dataset_read_from_files_warns_nothing(short_hcmc):
    """Arrays read from files are read-only (pandas copy-on-write); torch would warn on each."""
    from stmgt.data.folder import read_folder
    from stmgt.training.trainer import TrainConfig, fit
    result = fit(read_folder(short_hcmc), TINY, TrainConfig(epochs=1, batch_size=4, max_batches=1, calibrate=False,
                                                            compile=False, device="cpu"))
    assert result.best_epoch == 1


# ---- hostile text on the dashboard: one escaping rule (issue 26) ----


HOSTILE_TEXT = PAYLOADS + [DATASET_NAME, RUN_NAME]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_text_reads_literally_in_markdown(text):
    assert markdown_dangers(md(text)) == [] and rendered_text(md(text)) == one_line(text)
    assert markdown_dangers(f"Weights: **{md(text)}** · {code(text)}") == []


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_text_reads_literally_in_html(text):
    assert html_dangers(html(text)) == [] and unescape(html(text)) == one_line(text)
    assert html_dangers(legend_html(SPEED_STOPS, f"attention weight {text} gives each road")) == []


def _strings(value) -> list[str]:
    """Every string in a plotly figure's JSON (lists, dicts, arrays)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return [s for v in items for s in _strings(v)]


@pytest.mark.parametrize("figure", ["gate", "attention"])
def test_hostile_ids_and_names_reach_plotly_escaped(figure):
    graph = hostile_graph()
    ids, names = graph.node_ids, graph.nodes["name"].tolist()
    if figure == "gate":
        fig = gate_figure(np.full((1, 2, len(ids)), 0.5), ids, names, ["08:00", "08:15"], ids[0])
    else:
        fig = attention_matrix(np.eye(len(ids)), ids, names, ids[0])
    texts = _strings(fig.to_plotly_json())
    assert [d for t in texts for d in html_dangers(t)] == []
    assert html(ids[0]) in texts and html(names[0]) in " ".join(texts)         # shown, escaped


def test_hostile_names_reach_map_tooltips_on_one_line():
    graph = hostile_graph()
    deck = road_map(graph, graph.nodes[["node_id", "name"]], np.zeros((graph.num_nodes, 3)),
                    tooltip_html="<b>{name}</b><br/>{node_id}")
    layers = {layer.id: layer.data for layer in deck.layers}
    names = [row["name"] for row in layers["nodes"]] + [row["name"] for row in layers["street-names"]]
    assert not [n for n in names if "\n" in n or "\u202e" in n]
    assert "abc[U+202E]exe.txt street" in names and "two lines street" in names
    assert [row["node_id"] for row in layers["nodes"]] == graph.node_ids       # a click still selects by id
