"""The live-feed commands end to end: `replay` writes a live dataset and appends steps to it,
`ingest` appends checked rows or refuses them in one line leaving the folder as it was, and
`monitor --follow` scores the steps that arrive until it is stopped."""

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

from stmgt.cli import main
from stmgt.data.folder import read_folder
from stmgt.data.live import append_rows, newest_step
from stmgt.data.simulate import simulate
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.jsonfile import read_json

RECORDING = "sim:seed=3,weeks=1"


@pytest.fixture
def feed(tmp_path, capsys):
    """A replayed week of simulated HCMC, three steps into its test period."""
    assert main(["replay", "--data", RECORDING, "--into", str(tmp_path / "feed"), "--speed", "0", "--steps", "3"]) == 0
    return tmp_path / "feed", capsys.readouterr().out


@pytest.fixture(scope="module")
def recording():
    return simulate(weeks=1, seed=3)


def rows_csv(path, recording, steps, speed=None):
    """The recording's rows at `steps` in the generic format (all speeds set to `speed` if given)."""
    frame = recording.speed_frame().join(recording.weather_frame()).iloc[steps].round(3)
    if speed is not None:
        frame[recording.graph.node_ids] = speed
    frame.index = [t.isoformat() for t in frame.index]
    frame.rename_axis("timestamp").to_csv(path)
    return path


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_replay_writes_the_history_then_one_line_per_step(feed, recording):
    folder, out = feed
    lines = out.strip().splitlines()
    start = recording.splits()["test"].start
    assert lines[0].startswith(f"wrote {folder}: {start} steps of history up to "
                               f"{recording.timestamps[start - 1].isoformat()}; replaying 3 step(s)")
    assert [line.split()[0] for line in lines[1:]] == [t.isoformat() for t in recording.timestamps[start:start + 3]]
    assert "step 3/3: mean speed" in lines[3] and "incident(s) under way" in lines[3]
    dataset = read_folder(folder)
    assert dataset.num_steps == start + 3 and newest_step(folder) == recording.timestamps[start + 2]
    np.testing.assert_allclose(dataset.speed, recording.speed[:start + 3], atol=1e-3, equal_nan=True)
    provenance = read_json(folder / "dataset.json")
    assert provenance["source"] == "replay" and provenance["replay_of"]["seed"] == 3
    assert provenance["splits"]["test"] == [start, None]
    incidents = pd.read_csv(folder / "incidents.csv")
    assert list(incidents.columns) == ["node_id", "start", "end", "severity"]
    assert pd.to_datetime(incidents.start).max() <= recording.timestamps[start + 2]
    assert incidents.severity.between(0.3, 0.6).all()


def test_replay_replaces_only_a_dataset_of_ours(feed, tmp_path, capsys):
    folder, _ = feed
    argv = ["replay", "--data", RECORDING, "--into", str(folder), "--speed", "0", "--steps", "1"]
    assert main(argv) == 2 and "already holds a dataset; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert read_folder(folder).num_steps == read_json(folder / "dataset.json")["splits"]["test"][0] + 1
    (folder / "notes.txt").write_text("mine")
    assert main([*argv, "--overwrite"]) == 2
    assert "holds files this tool did not write: notes.txt" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "mine"


def test_replay_paces_the_steps_by_speed(tmp_path, capsys):
    began = time.monotonic()
    assert main(["replay", "--data", RECORDING, "--into", str(tmp_path / "feed"), "--speed", "900",
                 "--steps", "2"]) == 0            # a 15-minute step every second
    assert time.monotonic() - began >= 2
    assert "one every 1 s" in capsys.readouterr().out


def test_ingest_appends_rows_and_says_what_it_appended(feed, recording, tmp_path, capsys):
    folder, _ = feed
    start = read_folder(folder).num_steps
    rows = rows_csv(tmp_path / "new.csv", recording, slice(start, start + 2))
    assert main(["ingest", "--data", str(folder), "--rows", str(rows)]) == 0
    assert capsys.readouterr().out.strip() == (f"appended 2 step(s) to {folder}; its newest step is now "
                                               f"{recording.timestamps[start + 1].isoformat()}")
    dataset = read_folder(folder)
    np.testing.assert_allclose(dataset.speed, recording.speed[:start + 2], atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(dataset.weather, recording.weather[:start + 2], atol=1e-3)


def _cell(row, column, text):
    def edit(frame):
        frame.loc[row, column] = text
        return frame
    return edit


def _damage(path, edit):
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


BAD_ROWS = [
    ("unknown-node", lambda f: f.rename(columns={"n05": "n99"}), "column(s) n99 are not node ids"),
    ("missing-node", lambda f: f.drop(columns="n05"), "no column for node(s) n05"),
    ("missing-weather", lambda f: f.drop(columns="precipitation_mm"),
     "missing column(s) precipitation_mm: the dataset has weather"),
    ("empty-weather", _cell(1, "wind_kmh", ""), "weather has empty cells (wind_kmh at"),
    ("bad-number", _cell(0, "n07", "12,5"), "line 2: value '12,5' in column 'n07' is not a number"),
    ("too-fast", _cell(0, "n07", "900"), "speed above the ceiling of 250 km/h: 900 for node 'n07'"),
    ("cadence", _cell(1, "timestamp", "2025-07-12T18:35:00+07:00"),
     "line 3: timestamp 2025-07-12T18:35:00+07:00 comes 20 min after the one before; the dataset has a step "
     "every 15 min"),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_ingest_refuses_bad_rows_in_one_line_and_changes_nothing(feed, recording, tmp_path, capsys, edit, message):
    folder, _ = feed
    start = read_folder(folder).num_steps
    rows = rows_csv(tmp_path / "new.csv", recording, slice(start, start + 2))
    _damage(rows, edit)
    before = snapshot(folder)
    assert main(["ingest", "--data", str(folder), "--rows", str(rows)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {rows}") and message in err and err.count("\n") == 1
    assert snapshot(folder) == before


def test_ingest_refuses_steps_already_there_or_after_a_gap_and_a_folder_that_is_not_a_dataset(
        feed, recording, tmp_path, capsys):
    folder, _ = feed
    start = read_folder(folder).num_steps
    before = snapshot(folder)
    for steps, message in ((slice(start - 1, start + 1), "is already in the dataset, whose newest step is"),
                           (slice(start + 1, start + 2), "leaves a gap after the dataset's newest step")):
        rows = rows_csv(tmp_path / "new.csv", recording, steps)
        assert main(["ingest", "--data", str(folder), "--rows", str(rows)]) == 2
        assert message in capsys.readouterr().err
    assert snapshot(folder) == before
    assert main(["ingest", "--data", str(tmp_path), "--rows", str(rows)]) == 2
    assert "is not a dataset folder this tool wrote" in capsys.readouterr().err


def test_monitor_follow_scores_the_steps_that_arrive_until_stopped(feed, recording, tmp_path, capsys):
    """Two steps at a crawl on every road arrive while it follows: one alert per road opens at the
    first and grows with the second (not a second alert); SIGINT ends it with exit status 130."""
    folder, _ = feed
    out = tmp_path / "alerts.csv"
    start = read_folder(folder).num_steps
    failures, finished = [], threading.Event()

    def arrive():
        try:
            _wait_for(lambda: out.is_file(), finished)
            for step in (start, start + 1):
                append_rows(folder, pd.read_csv(rows_csv(tmp_path / "jam.csv", recording, slice(step, step + 1),
                                                         speed=3.0), dtype={"timestamp": str}))
                when = recording.timestamps[step].isoformat()
                _wait_for(lambda: when in out.read_text(), finished)
        except Exception as exc:   # noqa: BLE001 - reported by the test below
            failures.append(exc)
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGINT)          # Ctrl-C

    helper = threading.Thread(target=arrive)
    helper.start()
    try:
        code = main(["monitor", "--run", str(BUNDLED_RUN), "--data", str(folder), "--follow", "--poll", "0.2",
                     "--out", str(out)])
    finally:
        finished.set()
        helper.join()
    assert not failures, failures
    captured = capsys.readouterr()
    assert code == 130 and "stopped following" in captured.err and f"following {folder}" in captured.out
    alerts = pd.read_csv(out)
    jam = alerts[alerts.start == recording.timestamps[start].isoformat()]
    assert len(jam) == recording.num_nodes and jam.node_id.is_unique
    assert (jam.end == recording.timestamps[start + 1].isoformat()).all() and (jam.peak_observed_kmh == 3.0).all()
    assert not (alerts.start == recording.timestamps[start + 1].isoformat()).any()


def test_monitor_follow_needs_a_folder_and_no_until(capsys, tmp_path):
    out = str(tmp_path / "alerts.csv")
    assert main(["monitor", "--run", str(BUNDLED_RUN), "--data", "sim", "--follow", "--out", out]) == 2
    assert "--follow: watches a dataset folder that grows" in capsys.readouterr().err
    assert main(["monitor", "--run", str(BUNDLED_RUN), "--data", str(tmp_path), "--follow", "--until",
                 "2025-07-12T18:00+07:00", "--out", out]) == 2
    assert "--until: --follow watches until it is stopped" in capsys.readouterr().err


def _wait_for(condition, finished, timeout=120.0):
    """Wait until `condition` holds; give up when the follower has `finished` or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if finished.is_set() or time.monotonic() > deadline:
            raise TimeoutError("the follower did not write what was expected")
        time.sleep(0.05)
