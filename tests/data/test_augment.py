"""Counterfactual-weather copies for training: same traffic draws, other weather, appended after
the observed series so validation and test windows are untouched."""

import numpy as np
import pytest
import torch

from stmgt.data.augment import sampled_rain, sampled_weather, sampled_whatif, whatif_pairs, with_weather_copies
from stmgt.data.dataset import Scaler, TrafficDataset, Windows, split_anchors, split_ranges
from stmgt.data.simulate import simulate, simulator_for
from stmgt.errors import DataError


@pytest.fixture(scope="module")
def data():
    return simulate(weeks=1, seed=5)


def test_copies_share_every_draw_but_the_weather(data):
    scaler = Scaler.fit(data, split_ranges(data.num_steps)["train"])
    windows = Windows(data, scaler)
    train = split_anchors(data)["train"]
    joined, anchors = with_weather_copies(data, windows, train, copies=2, seed=0)
    T = data.num_steps
    assert len(joined.speed) == 3 * T
    np.testing.assert_array_equal(anchors, np.concatenate([train, train + T, train + 2 * T]))
    val = split_anchors(data)["val"][:4]
    original = windows.batch(val)
    again = joined.batch(val)
    assert torch.equal(torch.nan_to_num(original.y), torch.nan_to_num(again.y))
    copy_weather = joined.weather[T:2 * T] * torch.tensor(scaler.weather_std) + torch.tensor(scaler.weather_mean)
    copy_weather[:, 2] = torch.expm1(copy_weather[:, 2])                   # precipitation is on a log1p scale
    assert not torch.allclose(copy_weather, torch.tensor(data.weather))
    assert (copy_weather[:, 0] > 33).any() and (copy_weather[:, 1] > 30).any()   # heat and wind to learn from
    # Same traffic draws: at night, before any rain in either, the copy's speeds are the observed ones.
    first_effect = min(int(np.argmax(data.weather[:, 2] > 0.2)), int(torch.argmax((copy_weather[:, 2] > 0.2).int())),
                       int(torch.argmax((copy_weather[:, 0] > 33).int())),
                       int(torch.argmax((copy_weather[:, 1] > 30).int())))
    assert first_effect > 4
    same = slice(0, first_effect)
    assert torch.equal(torch.nan_to_num(joined.speed[T:][same]), torch.nan_to_num(joined.speed[:T][same]))
    assert torch.equal(joined.tod[T:2 * T], joined.tod[:T]) and torch.equal(joined.dow[T:2 * T], joined.dow[:T])


def test_copies_need_the_simulators_data(data):
    other = TrafficDataset(data.timestamps, data.speed, data.weather, data.graph, {"source": "folder"})
    scaler = Scaler.fit(other, split_ranges(other.num_steps)["train"])
    with pytest.raises(DataError, match="simulator's own data"):
        with_weather_copies(other, Windows(other, scaler), split_anchors(other)["train"], copies=1, seed=0)


def test_copies_rain_more_and_at_every_hour():
    """The observed weeks rain ~6 % of the time, mostly in the afternoon; a model learns rain's
    effect on the morning rush only if the copies bring rain there."""
    data = simulate(weeks=4, seed=3)
    copy = sampled_weather(simulator_for(data), np.random.default_rng(0))
    raining, observed = copy[:, 2] > 0.2, data.weather[:, 2] > 0.2
    assert raining.mean() > 2 * observed.mean()
    onsets = np.flatnonzero(raining[1:] & ~raining[:-1]) + 1
    hours = data.timestamps[onsets].hour
    assert ((hours >= 6) & (hours < 10)).sum() >= 4              # rain starting into the morning rush


def test_whatif_pairs_are_the_simulators_answer_to_an_edited_horizon(data):
    sim = simulator_for(data)
    anchors = split_anchors(data)["train"][::40]
    observed, edited, change = whatif_pairs(sim, anchors, 12, np.random.default_rng(0))
    assert observed.shape == edited.shape == (len(anchors), 12, 3) and change.shape == (len(anchors), 12, 62)
    for b, anchor in enumerate(anchors):
        np.testing.assert_allclose(observed[b], data.weather[anchor + 1:anchor + 13], rtol=1e-6)
        np.testing.assert_allclose(change[b], sim.horizon_speed(anchor, edited[b])
                                   - sim.horizon_speed(anchor, observed[b]), atol=1e-4)
        edited_steps = np.flatnonzero(np.any(np.abs(edited[b] - observed[b]) > 1e-6, axis=1))
        first = edited_steps[0] if len(edited_steps) else 12
        assert np.all(np.abs(np.nan_to_num(change[b, :first])) < 1e-4)     # nothing moves before the edit
    again = whatif_pairs(sim, anchors, 12, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], edited)


def test_sampled_whatifs_cover_rain_a_dry_spell_heat_and_wind_over_spans():
    rng = np.random.default_rng(1)
    scenarios = [sampled_whatif(rng, 12) for _ in range(400)]
    rain = [s.precipitation_mm for s in scenarios if s.precipitation_mm is not None]
    assert 0.0 in rain and min(r for r in rain if r > 0) < 1 and max(rain) > 20
    assert any(s.temperature_shift > 3 for s in scenarios) and any(s.temperature_shift < 0 for s in scenarios)
    assert any(s.wind_shift > 15 for s in scenarios) and any(s.wind_shift < 0 for s in scenarios)
    spans = {(s.first_step, s.last_step) for s in scenarios}
    assert (1, 12) in spans and any(first > 1 for first, _ in spans) and any(last < 12 for _, last in spans)


def test_pair_rain_falls_evenly_in_each_stretch_of_the_rain_response():
    rng = np.random.default_rng(2)
    rain = np.array([sampled_rain(rng) for _ in range(3000)])
    assert rain.min() >= 0.5 and rain.max() <= 40.0
    shares = [np.mean((rain >= low) & (rain < high)) for low, high in ((0.5, 5.0), (5.0, 10.0), (10.0, 40.0))]
    assert np.allclose(shares, 1 / 3, atol=0.03), shares     # log-uniform over 0.5-40 gave 5-10 mm/h 16 %
