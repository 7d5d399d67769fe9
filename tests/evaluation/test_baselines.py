"""The baselines on data small enough to work out by hand, and on two simulated weeks."""

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.evaluation.baselines import HistoricalAverage, persistence, time_of_week_slot
from stmgt.data.dataset import Batch, Scaler, TrafficDataset, Windows, split_ranges
from stmgt.data.simulate import simulate
from tests.samples import small_dataset

GRAPH = small_dataset().graph   # 3 nodes


def daily(values, start="2025-07-07"):   # 2025-07-07 is a Monday
    ts = pd.date_range(start, periods=len(values), freq="1D", tz="Asia/Ho_Chi_Minh")
    speed = np.repeat(np.asarray(values, dtype=np.float32)[:, None], 3, axis=1)
    return TrafficDataset(ts, speed, None, GRAPH)


def test_time_of_week_slots():
    ts = pd.DatetimeIndex(["2025-07-07 00:00", "2025-07-07 00:15", "2025-07-13 23:45"]).tz_localize("UTC")
    assert time_of_week_slot(ts).tolist() == [0, 1, 671]     # Monday 00:00, 00:15; Sunday 23:45


def test_historical_average_is_the_mean_per_slot_of_the_training_steps():
    data = daily(np.arange(14))                 # day d has speed d; slots are days of the week
    average = HistoricalAverage(data, range(0, 14))
    # Monday = mean(0, 7) = 3.5, Sunday = mean(6, 13) = 9.5; past the end the week goes on: Monday.
    got = average.predict(torch.tensor([[0, 13, 14]]))
    assert got[0, :, 0].tolist() == pytest.approx([3.5, 9.5, 3.5])


def test_historical_average_ignores_the_test_steps_and_falls_back_to_the_node_mean():
    data = daily([1, 2, 3, 100, 100, 100, 100])
    average = HistoricalAverage(data, range(0, 3))   # Mon-Wed train; Thu-Sun never seen in training
    got = average.predict(torch.tensor([[1, 5]]))
    assert got[0, :, 0].tolist() == pytest.approx([2.0, 2.0])   # Tuesday; then the training mean (1+2+3)/3


def test_persistence_holds_the_last_observation():
    scaler = Scaler(20.0, 5.0, None, None)
    x = torch.tensor([[[0.0, 0.0, 1.0], [0.4, 0.0, -1.0], [0.0, 0.0, 0.0]]])     # [B=1, 3 steps, 3 nodes]
    mask = torch.tensor([[[True, False, True], [True, False, True], [False, False, False]]])
    batch = Batch(torch.tensor([2]), x, mask, torch.zeros(1, 2, 3), None, torch.zeros(1, 3),
                  torch.zeros(1, 3, dtype=torch.long))
    fallback = torch.full((1, 2, 3), 99.0)
    got = persistence(batch, scaler, fallback)
    # Node 1: last seen at step 1 (0.4 → 22 km/h); node 2 never seen → fallback; node 3 → 15 km/h.
    assert got[0].tolist() == [[22.0, 99.0, 15.0], [22.0, 99.0, 15.0]]


def test_baselines(data):
    ranges = split_ranges(data.num_steps)
    ha = HistoricalAverage(data, ranges["train"])
    step = ranges["test"].start + 20
    pred = ha.predict(torch.tensor([[step]]))[0, 0].numpy()
    slot_mates = np.arange(step % 672, ranges["train"].stop, 672)
    np.testing.assert_allclose(pred, np.nanmean(data.speed[slot_mates], axis=0), rtol=1e-5)
    scaler = Scaler.fit(data, ranges["train"])
    batch = Windows(data, scaler).batch([step])
    held = persistence(batch, scaler, torch.zeros(1, 12, data.num_nodes))[0].numpy()
    last = data.speed[step]
    observed = ~np.isnan(last)
    np.testing.assert_allclose(held[:, observed], np.broadcast_to(last[observed], (12, observed.sum())), atol=1e-4)


def test_historical_average_falls_back_to_time_of_day_for_unseen_slots():
    """One week of data trains on Monday–Friday only; a Sunday 08:00 slot falls back to the
    training mean at 08:00 (rush hour), not the all-day node mean."""
    week = simulate(weeks=1, seed=1)
    train = split_ranges(week.num_steps)["train"]
    ha = HistoricalAverage(week, train)
    sunday = int(np.flatnonzero((week.timestamps.day_of_week == 6) & (week.timestamps.hour == 8)
                                & (week.timestamps.minute == 0))[0])
    assert sunday >= train.stop
    at_eight = [s for s in train if week.timestamps[s].hour == 8 and week.timestamps[s].minute == 0]
    pred = ha.predict(torch.tensor([[sunday]]))[0, 0].numpy()
    np.testing.assert_allclose(pred, np.nanmean(week.speed[at_eight], axis=0), rtol=1e-5)

