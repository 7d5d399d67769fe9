"""TrafficDataset: validation, windows, chronological splits with gaps, a scaler that sees only the
training split, and the generic folder format's round trip."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.data.dataset import (HORIZON, SEQ_LEN, Scaler, TrafficDataset, Windows, split_anchors,
                                split_ranges, window_anchors)
from stmgt.data.folder import read_folder, write_folder
from stmgt.data.simulate import simulate
from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph


@pytest.fixture(scope="module")
def week():
    return simulate(weeks=1, seed=1)


def tiny_graph(n=3):
    nodes = pd.DataFrame({"node_id": [f"s{i}" for i in range(n)], "lat": 10.7 + 0.01 * np.arange(n),
                          "lon": [106.7] * n, "name": "", "road_class": "primary"})
    edges = pd.DataFrame({"source": [f"s{i}" for i in range(n)], "target": [f"s{(i + 1) % n}" for i in range(n)],
                          "length_m": 500.0, "road_name": ""})
    return RoadGraph(nodes, edges)


def stamps(T, freq="15min"):
    return pd.date_range("2025-01-06", periods=T, freq=freq, tz="Asia/Ho_Chi_Minh")


def test_splits_are_chronological_with_gaps():
    r = split_ranges(1000)
    assert r["train"] == range(0, 700)
    assert r["val"] == range(712, 800) and r["test"] == range(812, 1000)


def test_recorded_splits_hold_as_the_data_grows(week):
    """A live dataset records its splits: steps appended later join the test period only."""
    recorded = {"train": [0, 400], "val": [412, 500], "test": [512, None]}
    fixed = TrafficDataset(week.timestamps, week.speed, week.weather, week.graph, {"splits": recorded})
    assert fixed.splits() == {"train": range(0, 400), "val": range(412, 500), "test": range(512, week.num_steps)}
    assert split_anchors(fixed)["val"].tolist() == window_anchors(range(412, 500)).tolist()
    assert week.splits() == split_ranges(week.num_steps)


def test_windows_stay_inside_their_split(week):
    ranges = split_ranges(week.num_steps)
    for name, anchors in split_anchors(week).items():
        assert anchors.min() - (SEQ_LEN - 1) >= ranges[name].start
        assert anchors.max() + HORIZON < ranges[name].stop
    assert window_anchors(range(0, 24)).tolist() == [11]


def test_scaler_uses_the_training_split_only(week):
    train = split_ranges(week.num_steps)["train"]
    scaler = Scaler.fit(week, train)
    # Make val/test wildly different: the scaler must not move.
    poisoned = TrafficDataset(week.timestamps, week.speed.copy(), week.weather.copy(), week.graph)
    poisoned.speed[train.stop:] *= 5
    poisoned.weather[train.stop:] += 100
    assert Scaler.fit(poisoned, train) == scaler
    np.testing.assert_allclose(scaler.speed_mean, np.nanmean(week.speed[:train.stop]), rtol=1e-6)
    assert scaler.weather_mean[0] == pytest.approx(week.weather[:train.stop, 0].mean(), rel=1e-6)
    assert Scaler.from_dict(scaler.to_dict()) == scaler


def test_precipitation_is_scaled_on_a_log1p_scale_and_old_runs_keep_theirs(week):
    train = split_ranges(week.num_steps)["train"]
    scaler = Scaler.fit(week, train)
    rain = np.log1p(week.weather[:train.stop, 2].astype(np.float64))
    assert scaler.precipitation_log1p
    assert scaler.weather_mean[2] == pytest.approx(rain.mean(), rel=1e-6)
    assert scaler.weather_std[2] == pytest.approx(rain.std(), rel=1e-6)
    w = np.array([[30.0, 10.0, 0.0], [30.0, 10.0, 0.5], [30.0, 10.0, 30.0]])
    z = scaler.scale_weather(w)
    np.testing.assert_allclose(z[:, 2], (np.log1p(w[:, 2]) - rain.mean()) / rain.std(), rtol=1e-6)
    np.testing.assert_allclose(scaler.scale_weather(torch.tensor(w)).numpy(), z, rtol=1e-6)
    assert z[1, 2] - z[0, 2] > 0.5                       # light rain is told apart from dry
    old = {k: v for k, v in scaler.to_dict().items() if k != "precipitation_log1p"}
    raw = Scaler.from_dict(old).scale_weather(w)          # a run fitted before keeps the raw scale
    np.testing.assert_allclose(raw[:, 2], (w[:, 2] - scaler.weather_mean[2]) / scaler.weather_std[2])


def test_batch_contents(week):
    scaler = Scaler.fit(week, split_ranges(week.num_steps)["train"])
    windows = Windows(week, scaler)
    batch = windows.batch([100, 200])
    assert batch.x.shape == (2, 12, week.num_nodes) and batch.y.shape == (2, 12, week.num_nodes)
    assert batch.weather.shape == (2, 12, 3)
    expected_y = week.speed[101:113]
    np.testing.assert_array_equal(np.nan_to_num(batch.y[0].numpy(), nan=-1), np.nan_to_num(expected_y, nan=-1))
    np.testing.assert_allclose(batch.weather[0].numpy(), scaler.scale_weather(week.weather[101:113]), rtol=1e-5)
    observed = ~np.isnan(week.speed[89:101])
    assert (batch.x_mask[0].numpy() == observed).all()
    assert (batch.x[0].numpy()[~observed] == 0).all()
    tod, dow = week.time_features()
    np.testing.assert_allclose(batch.time_of_day[0].numpy(), tod[89:101])
    assert batch.day_of_week[0].tolist() == dow[89:101].tolist()


def test_batch_past_the_end_marks_targets_unknown(week):
    scaler = Scaler.fit(week, split_ranges(week.num_steps)["train"])
    batch = Windows(week, scaler).batch([week.num_steps - 1])
    assert torch.isnan(batch.y).all()


def test_time_features_use_local_time():
    d = TrafficDataset(stamps(4), np.ones((4, 3)), None, tiny_graph())
    tod, dow = d.time_features()
    assert tod[0] == 0.0 and tod[1] == pytest.approx(15 / 1440)
    assert dow[0] == 0       # 2025-01-06 is a Monday


@pytest.mark.parametrize("timestamps,speed,message", [
    (stamps(4).tz_localize(None), np.ones((4, 3)), "time zone"),
    (stamps(4)[[0, 1, 1, 2]], np.ones((4, 3)), "duplicate timestamp"),
    (stamps(4)[[0, 2, 1, 3]], np.ones((4, 3)), "backwards"),
    (stamps(5).delete(2), np.ones((4, 3)), "irregular cadence"),
    (stamps(4), np.ones((4, 2)), "expected (4 time steps, 3 nodes)"),
    (stamps(4), -np.ones((4, 3)), "non-negative"),
    (stamps(4), np.full((4, 3), np.nan), "every speed value is missing"),
])
def test_bad_datasets_are_refused(timestamps, speed, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrafficDataset(timestamps, speed, None, tiny_graph())


def test_too_short_for_windows():
    d = TrafficDataset(stamps(40), np.ones((40, 3)), None, tiny_graph())
    with pytest.raises(DataError, match="too short"):
        split_anchors(d)


def test_folder_round_trip_is_identical(tmp_path, week):
    out = write_folder(week, tmp_path / "hcmc")
    assert sorted(p.name for p in out.iterdir()) == [".stmgt", "dataset.json", "edges.csv", "nodes.csv", "speed.csv",
                                                     "weather.csv"]
    back = read_folder(out)
    assert back.timestamps.equals(week.timestamps) and str(back.timestamps.tz) == "Asia/Ho_Chi_Minh"
    np.testing.assert_allclose(back.speed, week.speed, atol=5e-4, equal_nan=True)
    np.testing.assert_allclose(back.weather, week.weather, atol=5e-4)
    assert back.graph.fingerprint() == week.graph.fingerprint()
    assert back.provenance["seed"] == 1
    header = (out / "speed.csv").read_text().splitlines()[1]
    assert header.startswith("2025-07-07T00:00:00+07:00,")


def test_failed_write_leaves_no_half_written_folder(tmp_path, week, monkeypatch):
    target = tmp_path / "data"
    write_folder(week, target)
    before = (target / "speed.csv").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(DataError, match=f"--out {target}: could not be written: disk full; nothing was changed"):
        write_folder(week, target, overwrite=True)
    assert (target / "speed.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.replace("2025-07-07T00:15:00+07:00", "2025-07-07T00:00:00+07:00", 1), "duplicate timestamp"),
    (lambda s: s.replace("2025-07-07T00:15:00+07:00", "yesterday", 1), "not ISO 8601"),
    (lambda s: re.sub(r"(\n2025-07-07T00:00:00\+07:00,)[^,]*", r"\1fast", s, count=1),
     "'fast' in column 'n01' is not a number"),
])
def test_malformed_speed_csv(tmp_path, week, edit, message):
    out = write_folder(week, tmp_path / "d")
    path = out / "speed.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(DataError, match=message) as err:
        read_folder(out)
    assert "speed.csv" in str(err.value)
