"""The linear autoregressive baseline: it recovers a linear process, fits on the training windows
only, fills missing inputs by its rule and leaves missing targets out of its fit."""

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.data.dataset import TrafficDataset, split_anchors, split_ranges
from stmgt.evaluation.baselines import RIDGE_PENALTIES, HistoricalAverage, LinearAutoregressive
from tests.samples import small_dataset

GRAPH = small_dataset().graph          # 3 nodes in a ring: n1 → n2 → n3 → n1
OWN, NEIGHBOUR, WAVE = 0.6, 0.3, 2.0


def linear_process(weeks: int = 4, noise: float = 1.0, seed: int = 0) -> tuple[TrafficDataset, np.ndarray]:
    """Speeds around 50 km/h that follow x_t − 50 = OWN·(x_{t−1} − 50) + NEIGHBOUR·(in-neighbour's x_{t−1} − 50)
    + WAVE·sin(2π·time of day) + noise, and each step's expected value given the step before."""
    ts = pd.date_range("2025-07-07", periods=weeks * 7 * 96, freq="15min", tz="Asia/Ho_Chi_Minh")
    wave = WAVE * np.sin(2 * np.pi * (ts.hour * 60 + ts.minute).to_numpy() / 1440)
    rng = np.random.default_rng(seed)
    upstream = [2, 0, 1]                 # the in-neighbour of n1, n2, n3
    speed, expected = np.full((len(ts), 3), 50.0), np.full((len(ts), 3), 50.0)
    for t in range(1, len(ts)):
        expected[t] = 50 + OWN * (speed[t - 1] - 50) + NEIGHBOUR * (speed[t - 1, upstream] - 50) + wave[t]
        speed[t] = expected[t] + noise * rng.standard_normal(3)
    return TrafficDataset(ts, speed, None, GRAPH), expected


def fitted(data: TrafficDataset) -> LinearAutoregressive:
    ranges = split_ranges(data.num_steps)
    return LinearAutoregressive(data, ranges["train"], ranges["val"], HistoricalAverage(data, ranges["train"]))


def test_it_recovers_a_linear_process_almost_exactly():
    data, expected = linear_process()
    model = fitted(data)
    anchors = split_anchors(data)["test"]
    one_step = model.predict(torch.from_numpy(anchors))[:, 0].numpy()              # [B, N]
    truth = expected[anchors + 1]
    assert np.abs(one_step - truth).mean() < 0.1           # a tenth of the noise: its sd is 1
    assert np.abs(one_step - data.speed[anchors + 1]).mean() == pytest.approx(np.sqrt(2 / np.pi), abs=0.05)
    assert model.penalty in RIDGE_PENALTIES


def test_its_fit_uses_the_training_windows_only():
    data, _ = linear_process()
    test = split_ranges(data.num_steps)["test"]
    scrambled = data.speed.copy()
    scrambled[test.start:] = np.random.default_rng(1).uniform(5, 90, (len(scrambled) - test.start, 3))
    model, again = fitted(data), fitted(TrafficDataset(data.timestamps, scrambled, None, GRAPH))
    assert again.penalty == model.penalty
    assert torch.equal(again.weights, model.weights)
    anchors = torch.from_numpy(split_anchors(data)["test"])
    assert not torch.equal(again.predict(anchors), model.predict(anchors))      # it does read the test inputs


def test_a_missing_input_is_the_last_reading_in_the_window_else_the_historical_average():
    data, _ = linear_process()
    model = fitted(data)
    anchor = int(split_anchors(data)["test"][40])
    gappy = data.speed.copy()
    gappy[anchor - 2:anchor + 1, 0] = np.nan                  # node n1's last three inputs missing
    gappy[anchor - 11:anchor + 1, 1] = np.nan                 # node n2 unseen over the whole window
    held = data.speed.copy()
    held[anchor - 2:anchor + 1, 0] = data.speed[anchor - 3, 0]
    held[anchor - 11:anchor + 1, 1] = model.historical[anchor - 11:anchor + 1, 1].numpy()

    def forecast(speed):            # the fit is the same: only test steps differ
        other = fitted(TrafficDataset(data.timestamps, speed, None, GRAPH))
        assert torch.equal(other.weights, model.weights)
        return other.predict(torch.tensor([anchor]))

    assert torch.allclose(forecast(gappy), forecast(held), atol=1e-4)
    assert not torch.isnan(forecast(gappy)).any()


def test_missing_targets_are_left_out_of_the_fit():
    """The last steps of the training range are targets of training windows and inputs of none: as
    NaN they leave the fit almost as it was; as 0 km/h (what a NaN read as zero would be) they would not."""
    data, _ = linear_process()
    train = split_ranges(data.num_steps)["train"]
    anchors = torch.from_numpy(split_anchors(data)["test"])
    clean = fitted(data).predict(anchors)

    def with_last_targets(value):
        speed = data.speed.copy()
        speed[train.stop - 12:train.stop] = value
        return fitted(TrafficDataset(data.timestamps, speed, None, GRAPH))

    missing = with_last_targets(np.nan)
    assert torch.isfinite(missing.weights).all()
    assert (missing.predict(anchors) - clean).abs().mean() < 0.02
    assert (with_last_targets(0.0).predict(anchors) - clean).abs().mean() > 0.2


def test_scattered_missing_readings_leave_a_finite_fit_that_beats_persistence():
    data, expected = linear_process()
    gappy = data.speed.copy()
    gappy[np.random.default_rng(2).random(gappy.shape) < 0.2] = np.nan
    model = fitted(TrafficDataset(data.timestamps, gappy, None, GRAPH))
    anchors = split_anchors(data)["test"]
    one_step = model.predict(torch.from_numpy(anchors))[:, 0].numpy()
    assert torch.isfinite(model.weights).all() and np.isfinite(one_step).all()
    truth = expected[anchors + 1]
    assert np.abs(one_step - truth).mean() < 0.5 * np.abs(data.speed[anchors] - truth).mean()


def test_a_node_never_observed_in_training_forecasts_the_training_mean():
    data, _ = linear_process(weeks=2)
    train = split_ranges(data.num_steps)["train"]
    speed = data.speed.copy()
    speed[:, 2] = np.nan
    model = fitted(TrafficDataset(data.timestamps, speed, None, GRAPH))
    got = model.predict(torch.from_numpy(split_anchors(data)["test"][:5]))[..., 2]
    assert torch.allclose(got, torch.full_like(got, float(np.nanmean(speed[train.start:train.stop]))), atol=1e-3)
