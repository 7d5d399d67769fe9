"""Live datasets: started from a recording with its splits, grown by checked appends that swap the
folder whole, so readers never see a mix and an interrupted append changes nothing."""

import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from stmgt.data import live
from stmgt.data.dataset import WEATHER_COLUMNS
from stmgt.data.folder import PROVENANCE_FILE, read_folder, write_folder
from stmgt.data.live import INCIDENTS_FILE, Replay, append_rows, is_live, newest_step, read_rows, start_live
from stmgt.data.simulate import SimulationConfig, TrafficSimulator
from stmgt.errors import DataError
from stmgt.storage import outputs
from stmgt.storage.jsonfile import read_json
from tests.samples import small_dataset, write


@pytest.fixture(scope="module")
def simulation():
    sim = TrafficSimulator(SimulationConfig(seed=3, weeks=1))
    return sim, sim.run()


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def rows_after(dataset, count, speed=20.0, weather=True, start=1):
    """`count` rows continuing `dataset`, times written in UTC."""
    times = dataset.timestamps[-1] + dataset.freq * np.arange(start, start + count)
    frame = pd.DataFrame({"timestamp": [t.tz_convert("UTC").isoformat() for t in times]})
    for i, node in enumerate(dataset.graph.node_ids):
        frame[node] = speed + i
    if weather:
        frame["temperature_c"], frame["wind_kmh"], frame["precipitation_mm"] = 28.0, 5.0, 1.5
    return frame


@pytest.fixture
def folder(tmp_path):
    """A small dataset written by the tool: not live until something is appended."""
    return write_folder(small_dataset(), tmp_path / "feed")


def test_a_live_dataset_starts_with_the_recordings_splits_and_names_its_newest_step(simulation, tmp_path):
    sim, recording = simulation
    replay = Replay(recording, tmp_path / "feed", {"source": "replay", "units": "km/h"}, sim.incident_log)
    history = replay.start()
    dataset = read_folder(tmp_path / "feed")
    splits, full = dataset.splits(), recording.splits()
    assert splits["train"] == full["train"] and splits["val"] == full["val"]
    assert dataset.num_steps == full["test"].start == splits["test"].start == history.num_steps
    assert is_live(dataset) and dataset.provenance["source"] == "replay"
    assert newest_step(tmp_path / "feed") == recording.timestamps[full["test"].start - 1]
    assert pd.Timestamp(dataset.provenance["live"]["started"]) == recording.timestamps[full["test"].start]
    np.testing.assert_allclose(dataset.speed, recording.speed[:dataset.num_steps], atol=1e-3, equal_nan=True)

    for _ in range(3):
        replay.step()
    grown = read_folder(tmp_path / "feed")
    assert grown.num_steps == dataset.num_steps + 3 and grown.splits()["val"] == full["val"]
    assert list(grown.splits()["test"]) == list(range(full["test"].start, grown.num_steps))
    np.testing.assert_allclose(grown.speed, recording.speed[:grown.num_steps], atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(grown.weather, recording.weather[:grown.num_steps], atol=1e-3)
    assert newest_step(tmp_path / "feed") == grown.timestamps[-1]

    incidents = pd.read_csv(tmp_path / "feed" / INCIDENTS_FILE)
    begun = [i for i in sim.incident_log if i.start < grown.num_steps]
    assert list(incidents.columns) == ["node_id", "start", "end", "severity"] and len(incidents) == len(begun) > 0
    first = min(begun, key=lambda i: (i.start, i.node))
    assert incidents.iloc[0].tolist() == [recording.graph.node_ids[first.node],
                                          recording.timestamps[first.start].isoformat(),
                                          recording.timestamps[first.stop - 1].isoformat(), round(first.severity, 3)]


def test_a_dataset_that_is_not_live_has_no_newest_step(folder, tmp_path):
    assert newest_step(folder) is None and not is_live(read_folder(folder))
    assert newest_step(tmp_path / "nowhere") is None
    (folder / PROVENANCE_FILE).write_text("{half")          # unreadable mid-write: not an error for a poller
    assert newest_step(folder) is None


def test_a_live_dataset_needs_its_training_and_validation_steps(simulation, tmp_path):
    _, recording = simulation
    with pytest.raises(DataError, match="at least its training and validation steps"):
        start_live(recording, recording.splits()["val"].stop - 1, tmp_path / "feed")
    assert not (tmp_path / "feed").exists()


def test_appended_rows_continue_the_dataset_and_keep_its_bytes(folder):
    before = folder.joinpath("speed.csv").read_bytes(), folder.joinpath("weather.csv").read_bytes()
    dataset = read_folder(folder)
    assert append_rows(folder, rows_after(dataset, 2)) == 2
    grown = read_folder(folder)
    assert grown.num_steps == dataset.num_steps + 2 and str(grown.timestamps.tz) == str(dataset.timestamps.tz)
    assert grown.timestamps[-1] == dataset.timestamps[-1] + 2 * dataset.freq
    np.testing.assert_allclose(grown.speed[-1], 20.0 + np.arange(dataset.num_nodes))
    np.testing.assert_allclose(grown.weather[-2:], [[28.0, 5.0, 1.5]] * 2)
    assert folder.joinpath("speed.csv").read_bytes().startswith(before[0])
    assert folder.joinpath("weather.csv").read_bytes().startswith(before[1])
    recorded = read_json(folder / PROVENANCE_FILE)
    assert recorded["splits"] == live.recorded_splits(dataset.splits())          # fixed as they were
    assert recorded["live"] == {"newest": grown.timestamps[-1].isoformat(),
                                "started": grown.timestamps[-2].isoformat()}
    assert newest_step(folder) == grown.timestamps[-1]
    append_rows(folder, rows_after(grown, 1).set_index("timestamp").set_axis(
        pd.DatetimeIndex(rows_after(grown, 1)["timestamp"]), axis=0))           # a DatetimeIndex will do
    assert read_json(folder / PROVENANCE_FILE)["live"]["started"] == recorded["live"]["started"]
    assert read_folder(folder).num_steps == grown.num_steps + 1


def test_rows_read_from_a_csv_keep_their_lines_for_messages(folder, tmp_path):
    dataset = read_folder(folder)
    frame = rows_after(dataset, 3).astype({"n2": object})
    frame.loc[2, "n2"] = "fast"
    path = write(tmp_path / "rows.csv", frame.to_csv(index=False))
    with pytest.raises(DataError, match=r"rows.csv line 4: value 'fast' in column 'n2' is not a number"):
        append_rows(folder, read_rows(path), where=str(path))
    frame.loc[2, "n2"] = ""                         # an empty cell is a missing reading
    path.write_text(frame.to_csv(index=False))
    assert append_rows(folder, read_rows(path), where=str(path)) == 3
    assert np.isnan(read_folder(folder).speed[-1, 1])


def _edit(frame, **cells):
    frame = frame.copy()
    for key, value in cells.items():
        frame[key] = value
    return frame


REFUSED = [
    ("unknown-node", lambda d: _edit(rows_after(d, 1), n9=20.0), "column.s. n9 are not node ids"),
    ("missing-node", lambda d: rows_after(d, 1).drop(columns="n3"), r"no column for node\(s\) n3"),
    ("missing-weather", lambda d: rows_after(d, 1).drop(columns="wind_kmh"), "missing column.s. wind_kmh: the dataset"),
    ("nan-weather", lambda d: _edit(rows_after(d, 2), precipitation_mm=[0.0, np.nan]),
     "weather has empty cells .precipitation_mm at"),
    ("weather-out-of-range", lambda d: _edit(rows_after(d, 1), temperature_c=99.0), "temperature_c 99 at"),
    ("already-present", lambda d: rows_after(d, 2, start=0), "is already in the dataset, whose newest step"),
    ("gap", lambda d: rows_after(d, 1, start=2), "leaves a gap after the dataset's newest step"),
    ("cadence", lambda d: rows_after(d, 3).drop(index=1), "comes 30 min after the one before; the dataset has a "
                                                          "step every 15 min"),
    ("duplicate", lambda d: pd.concat([rows_after(d, 1)] * 2), "line 3: duplicate timestamp"),
    ("bad-number", lambda d: _edit(rows_after(d, 1), n1="12,5"), "value '12,5' in column 'n1' is not a number"),
    ("negative-speed", lambda d: _edit(rows_after(d, 1), n2=-4.0), "negative speed -4 for node 'n2'"),
    ("no-offset", lambda d: _edit(rows_after(d, 1), timestamp="2025-07-07T10:00:00"), "has no UTC offset"),
    ("no-rows", lambda d: rows_after(d, 0), "no rows"),
    ("no-timestamp", lambda d: rows_after(d, 1).drop(columns="timestamp"), "no 'timestamp' column"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_rows_are_refused_in_words_and_change_nothing(folder, make, message):
    before = snapshot(folder)
    with pytest.raises(DataError, match=f"^rows.*{message}"):
        append_rows(folder, make(read_folder(folder)))
    assert snapshot(folder) == before and sorted(p.name for p in folder.parent.iterdir()) == ["feed"]


def test_weather_rows_for_a_dataset_without_weather_are_refused(tmp_path):
    folder = write_folder(small_dataset(weather=False), tmp_path / "dry")
    with pytest.raises(DataError, match="the dataset has no weather; leave out the column.s. temperature_c"):
        append_rows(folder, rows_after(read_folder(folder), 1))
    assert append_rows(folder, rows_after(read_folder(folder), 1, weather=False)) == 1


def test_only_a_dataset_of_ours_is_appended_to(folder, tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    for name in ("nodes.csv", "edges.csv", "speed.csv"):
        (users / name).write_bytes((folder / name).read_bytes())
    rows = rows_after(read_folder(folder), 1)
    for target in (users, tmp_path / "missing"):
        with pytest.raises(DataError, match="is not a dataset folder this tool wrote"):
            append_rows(target, rows)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds files this tool did not write: notes.txt"):
        append_rows(folder, rows)


def test_an_append_that_fails_while_staging_leaves_the_folder_as_it_was(folder, monkeypatch):
    before = snapshot(folder)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(live, "_append_table", broken)
    with pytest.raises(DataError, match="could not be written: No space left on device; .*nothing was changed"):
        append_rows(folder, rows_after(read_folder(folder), 1))
    assert snapshot(folder) == before and sorted(p.name for p in folder.parent.iterdir()) == ["feed"]


KILLED = """
import os, signal, sys
import pandas as pd
from stmgt.data import live
real = live.write_files
def kill(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGKILL)      # the staged folder is complete: killed just before the swap
live.write_files = kill
rows = pd.read_csv(sys.argv[2], dtype={"timestamp": str})
live.append_rows(sys.argv[1], rows)
"""


def test_an_append_killed_mid_write_leaves_the_folder_as_it_was(folder, tmp_path):
    before = snapshot(folder)
    rows = rows_after(read_folder(folder), 1)
    path = write(tmp_path / "rows.csv", rows.to_csv(index=False))
    done = subprocess.run([sys.executable, "-c", KILLED, str(folder), str(path)], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert snapshot(folder) == before and newest_step(folder) is None
    assert append_rows(folder, rows) == 1            # the dead writer's lock is taken over


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_a_reader_never_sees_a_mix_or_nothing_while_steps_arrive(simulation, tmp_path, monkeypatch, atomic):
    sim, recording = simulation
    if not atomic:                                   # a system without renameat2: readers wait the gap out
        monkeypatch.setattr(outputs, "exchange", lambda a, b: False)
    replay = Replay(recording, tmp_path / "feed", {"source": "replay"}, sim.incident_log)
    replay.start()
    failures, seen = [], []

    def write_steps():
        try:
            for _ in range(12):
                replay.step()
        except Exception as exc:   # noqa: BLE001 - reported by the test below
            failures.append(exc)

    writer = threading.Thread(target=write_steps)
    writer.start()
    while writer.is_alive():
        newest = newest_step(tmp_path / "feed")
        assert newest is not None or not atomic
        dataset = read_folder(tmp_path / "feed")     # raises on a mix or a missing folder
        assert dataset.timestamps[-1] == pd.Timestamp(dataset.provenance["live"]["newest"])
        assert dataset.weather.shape[0] == dataset.num_steps
        seen.append(dataset.num_steps)
        time.sleep(0.005)
    writer.join()
    assert not failures, failures
    assert len(set(seen)) > 1 and seen == sorted(seen)       # it saw the folder grow, step by step
    assert read_folder(tmp_path / "feed").num_steps == replay.next
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["feed"]


def test_the_replay_plays_every_weather_value(simulation, tmp_path):
    _, recording = simulation
    replay = Replay(recording, tmp_path / "feed", {"source": "replay"})
    replay.start()
    replay.step()
    dataset = read_folder(tmp_path / "feed")
    assert not (tmp_path / "feed" / INCIDENTS_FILE).exists()
    np.testing.assert_allclose(dataset.weather_frame()[WEATHER_COLUMNS].to_numpy()[-1],
                               recording.weather[dataset.num_steps - 1], atol=1e-3)
