"""The simulator reproduces DESIGN §3's calibration figures, is deterministic, and its
counterfactual gives the true effect of a weather change.

The figures are measured here from the dataset arrays alone (not from the simulator's internals),
the way one would measure them on real recordings."""

import numpy as np
import pandas as pd
import pytest

from stmgt.data.dataset import TrafficDataset
from stmgt.data.simulate import SimulationConfig, TrafficSimulator, simulate


@pytest.fixture(scope="module")
def sim():
    return TrafficSimulator(SimulationConfig(seed=0, weeks=8))


@pytest.fixture(scope="module")
def data(sim):
    return sim.run()


@pytest.fixture(scope="module")
def frame(data):
    return data.speed_frame()


def time_of_week(index: pd.DatetimeIndex) -> np.ndarray:
    return (index.day_of_week * 96 + index.hour * 4 + index.minute // 15).to_numpy()


@pytest.fixture(scope="module")
def deviation(data, frame):
    """Each node's deviation from its own mean at the same time of week, on dry steps."""
    dry = data.weather[:, 2] < 0.1
    dry_frame = frame[dry]
    profile = dry_frame.groupby(time_of_week(dry_frame.index)).mean()
    expected = profile.reindex(time_of_week(frame.index)).to_numpy()
    return frame.to_numpy() - expected


def test_default_span_and_cadence(data):
    assert data.num_nodes == 62 and data.graph.num_edges == 144
    assert data.num_steps == 8 * 7 * 96
    assert data.freq == pd.Timedelta("15min")
    assert str(data.timestamps.tz) == "Asia/Ho_Chi_Minh"
    assert 5 <= data.timestamps[0].month <= 11          # rainy season
    assert 0 < np.isnan(data.speed).mean() < 0.02       # a few sensor gaps


def test_network_mean_spread_and_range(data):
    v = data.speed[~np.isnan(data.speed)]
    assert 17 <= v.mean() <= 19
    assert 6 <= v.std() <= 8
    assert 3 <= v.min() <= 5
    assert 45 <= v.max() <= 56


@pytest.mark.parametrize("road_class,target", [("trunk", 21.5), ("primary", 16.8), ("secondary", 15.7)])
def test_road_class_means(data, frame, road_class, target):
    nodes = data.graph.nodes
    ids = nodes.loc[nodes.road_class == road_class, "node_id"]
    assert abs(np.nanmean(frame[ids].to_numpy()) - target) <= 1.0


def test_daily_profile_has_two_rush_hours(frame):
    weekday = frame[frame.index.day_of_week < 5]
    hourly = weekday.mean(axis=1).groupby(weekday.index.hour + weekday.index.minute / 60).mean()
    assert 24 <= hourly.loc[3.0] <= 28
    assert 24 <= hourly.loc[0:4.75].mean() <= 28
    morning, evening = hourly.loc[7:9], hourly.loc[17:19]
    assert 13 <= morning.min() <= 16 and 13 <= evening.min() <= 16
    # two separate minima: midday recovers between them
    assert hourly.loc[11:14].mean() > max(morning.min(), evening.min()) + 1.5


def test_weekend_lift(frame):
    weekend = frame.index.day_of_week >= 5
    lift = np.nanmean(frame[weekend].to_numpy()) / np.nanmean(frame[~weekend].to_numpy()) - 1
    assert 0.095 <= lift <= 0.125


def test_temporal_persistence(deviation):
    d = pd.DataFrame(deviation)
    lag1 = d.apply(lambda col: col.autocorr(1))
    assert lag1.median() >= 0.8


def _residual_correlations(data, deviation):
    resid = deviation - np.nanmean(deviation, axis=1, keepdims=True)
    corr = pd.DataFrame(resid).corr().to_numpy()
    adj = np.zeros_like(corr, dtype=bool)
    src, dst = data.graph.edge_index.numpy()
    adj[src, dst] = adj[dst, src] = True
    off = ~np.eye(len(corr), dtype=bool)
    return corr, adj, off


def test_adjacent_nodes_correlate_non_adjacent_do_not(data, deviation):
    corr, adj, off = _residual_correlations(data, deviation)
    assert 0.2 <= corr[adj].mean() <= 0.4
    assert abs(corr[~adj & off].mean()) <= 0.05


def test_congestion_spreads_upstream_with_delay(data, deviation):
    """On one-way segments a→b, b's deviation now predicts a's next step (beyond a's own
    persistence); a's does not predict b's: congestion backs up against the flow, a step later."""
    d = np.nan_to_num(deviation - np.nanmean(deviation, axis=1, keepdims=True))
    src, dst = data.graph.edge_index.numpy()
    pairs = set(zip(src.tolist(), dst.tolist()))
    one_way = [(a, b) for a, b in pairs if (b, a) not in pairs]

    def effect(node, neighbour):
        X = np.stack([d[:-1, node], d[:-1, neighbour]], axis=1)
        return np.linalg.lstsq(X, d[1:, node], rcond=None)[0][1]

    assert len(one_way) >= 5
    upstream_response = np.mean([effect(a, b) for a, b in one_way])
    downstream_response = np.mean([effect(b, a) for a, b in one_way])
    assert upstream_response > 0.05 and upstream_response > 3 * downstream_response


def test_incidents_last_30_to_120_minutes_and_spread(sim):
    hit = sim.incidents < 1.0
    assert hit.any()
    lengths = []
    for n in range(hit.shape[1]):
        padded = np.concatenate([[0], hit[:, n].astype(int), [0]])
        starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
        lengths += list(ends - starts)
    lengths = np.array(lengths)
    assert np.median(lengths) * 15 >= 30 and np.percentile(lengths, 90) * 15 <= 150
    # a typical incident touches more than one node (1–3 hops)
    assert (hit.sum(axis=1) >= 2).mean() > 0.3 * (hit.sum(axis=1) >= 1).mean()


def test_weather_ranges_and_rain_timing(data):
    w = data.weather_frame()
    assert 24 <= w.temperature_c.min() and w.temperature_c.max() <= 34
    by_hour = w.temperature_c.groupby(w.index.hour).mean()
    assert by_hour.loc[13:15].mean() - by_hour.loc[3:5].mean() >= 4
    assert 3 <= w.wind_kmh.min() and w.wind_kmh.max() <= 25
    rain = w.precipitation_mm > 0.2
    afternoon = (w.index.hour >= 13) & (w.index.hour < 20)
    assert rain[afternoon].mean() > 2 * rain[~afternoon].mean()
    padded = np.concatenate([[0], rain.astype(int).to_numpy(), [0]])
    durations = (np.flatnonzero(np.diff(padded) == -1) - np.flatnonzero(np.diff(padded) == 1)) * 15
    assert 30 <= np.median(durations) <= 180
    assert (w.precipitation_mm >= 10).sum() > 20          # heavy rain happens


def _rain_ratio(data, frame, lo, hi):
    """Speed in rain of [lo, hi) mm/h against the same node and time of week when dry."""
    precip = data.weather[:, 2]
    tow = time_of_week(frame.index)
    dry_mean = frame[precip < 0.1].groupby(tow[precip < 0.1]).mean()
    rainy = (precip >= lo) & (precip < hi)
    ratio = frame[rainy].to_numpy() / dry_mean.reindex(tow[rainy]).to_numpy()
    return np.nanmean(ratio) - 1


def test_light_and_heavy_rain_slow_roads(data, frame):
    assert -0.15 <= _rain_ratio(data, frame, 0.5, 5) <= -0.10
    assert -0.35 <= _rain_ratio(data, frame, 10, np.inf) <= -0.25


def test_deterministic_for_a_seed():
    a, b = simulate(weeks=1, seed=3), simulate(weeks=1, seed=3)
    np.testing.assert_array_equal(a.speed, b.speed)
    np.testing.assert_array_equal(a.weather, b.weather)
    assert a.timestamps.equals(b.timestamps)
    assert not np.array_equal(np.nan_to_num(simulate(weeks=1, seed=4).speed), np.nan_to_num(a.speed))


def test_counterfactual_heavy_rain(sim, data):
    """Heavy rain over a dry afternoon: −25–35 % against the dry run, more on congested roads,
    and nothing before the window changes."""
    dry_days = [d for d, g in data.weather_frame().groupby(data.timestamps.date)
                if g.precipitation_mm.max() == 0]
    day = pd.Timestamp(dry_days[len(dry_days) // 2]).tz_localize(data.timestamps.tz)
    start, end = day + pd.Timedelta("14h"), day + pd.Timedelta("16h45min")
    wet = sim.counterfactual(start, end, precipitation_mm=20.0)
    window = (data.timestamps >= start) & (data.timestamps <= end)
    before = data.timestamps < start
    np.testing.assert_array_equal(np.nan_to_num(wet.speed[before]), np.nan_to_num(data.speed[before]))
    np.testing.assert_array_equal(wet.weather[before], data.weather[before])
    ratio = wet.speed[window] / data.speed[window]
    assert -0.35 <= np.nanmean(ratio) - 1 <= -0.25
    congested = data.speed[window] < np.nanpercentile(data.speed[window], 25)
    free = data.speed[window] > np.nanpercentile(data.speed[window], 75)
    assert np.nanmean(ratio[congested]) < np.nanmean(ratio[free]) - 0.03


def test_true_change_of_a_scenario(sim, data):
    """`true_change` edits only the anchor's horizon weather: heavy rain slows traffic, and the
    unchanged weather changes nothing."""
    from stmgt.forecasting.what_if import true_change
    from stmgt.data.scenario import WeatherScenario

    anchors = np.array([1000, 3000])
    wet = true_change(sim, anchors, 12, WeatherScenario(precipitation_mm=20.0))
    assert wet.shape == (2, 12, data.num_nodes)
    assert np.nanmean(wet) < -2
    same = true_change(sim, anchors, 12, WeatherScenario())
    assert np.nanmax(np.abs(same)) == 0


# ---- weather physics (DESIGN §3: rain acts as traffic does) --------------------------------

def _dry_afternoon(data) -> int:
    """Step index of 14:00 on a day without rain."""
    dry_days = [d for d, g in data.weather_frame().groupby(data.timestamps.date)
                if g.precipitation_mm.max() == 0]
    day = pd.Timestamp(dry_days[len(dry_days) // 3]).tz_localize(data.timestamps.tz)
    return int(data.timestamps.get_loc(day + pd.Timedelta("14h")))


def _relative_change(sim, data, weather, start, stop) -> np.ndarray:
    """Network mean change (fraction of actual speed) per step from `start` to `stop`."""
    wet = sim.run(weather).speed
    return np.nanmean(wet[start:stop] / data.speed[start:stop], axis=1) - 1


def test_rain_builds_up_over_15_to_30_minutes_and_lingers_30_to_90_after(sim, data):
    start = _dry_afternoon(data)
    weather = sim.weather.copy()
    weather[start:start + 8, 2] = 20.0                   # two hours of heavy rain
    change = _relative_change(sim, data, weather, start, start + 16)
    settled = change[7]
    assert settled < -0.2
    assert change[0] > 0.7 * settled                    # not at full strength in the first step...
    assert change[1] <= 0.75 * settled                  # ...most of it within 30 minutes
    assert change[2] <= 0.9 * settled
    after = change[8:]                                  # the rain stopped
    assert after[1] <= 0.3 * settled                    # still ≥ 30 % of it 30 minutes later
    assert after[5] >= 0.25 * settled                   # mostly gone after 90 minutes
    assert np.all(np.diff(after) > 0)                   # recovering all the time


def test_rain_slowdown_spreads_upstream():
    """One node's slowdown target set high: the nodes feeding it slow a step later, and only
    they (not the node it feeds on a one-way segment)."""
    from stmgt.data.simulate import downstream_matrix, weather_response
    from stmgt.data.graph import RoadGraph

    graph = RoadGraph.hcmc()
    src, dst = graph.edge_index.numpy()
    pairs = set(zip(src.tolist(), dst.tolist()))
    a, b = next((a, b) for a, b in sorted(pairs) if (b, a) not in pairs)     # one-way a -> b
    downstream = downstream_matrix(graph)
    target = np.full((6, graph.num_nodes), 0.1)
    target[:, b] = 0.4
    base = weather_response(np.full_like(target, 0.1), downstream, np.full(graph.num_nodes, 0.1))
    slow = weather_response(target, downstream, np.full(graph.num_nodes, 0.1))
    assert slow[0, a] == pytest.approx(base[0, a])      # a step later...
    assert slow[1, a] > base[1, a] + 0.003              # ...upstream a slows
    feeding_b = downstream[:, b] > 0
    changed = ~np.isclose(slow[1], base[1])
    np.testing.assert_array_equal(changed, feeding_b | (np.arange(graph.num_nodes) == b))


def test_heat_above_33_and_strong_wind_slow_traffic_a_little(sim, data):
    start = _dry_afternoon(data)
    hot, windy = sim.weather.copy(), sim.weather.copy()
    hot[start:start + 8, 0] = 36.0
    windy[start:start + 8, 1] = 40.0
    heat = _relative_change(sim, data, hot, start + 4, start + 8).mean()
    wind = _relative_change(sim, data, windy, start + 4, start + 8).mean()
    assert -0.08 <= heat <= -0.03                       # 3 °C over: about −6 %
    assert -0.06 <= wind <= -0.02                       # 10 km/h over: about −4 %
    mild = sim.weather.copy()
    mild[start:start + 8, 0] = 32.5                     # below the onset: no effect
    np.testing.assert_array_equal(sim.run(mild).speed[start:start + 8], data.speed[start:start + 8])


def test_counterfactual_keeps_every_other_draw(sim, data):
    """Same weather, same speeds exactly; another weather changes nothing before it, keeps the
    sensor gaps, and its effect fades after the window; the one-forecast shortcut agrees."""
    np.testing.assert_array_equal(sim.run(sim.weather.copy()).speed, data.speed)
    start = _dry_afternoon(data)
    weather = sim.weather.copy()
    weather[start:start + 12, 2] = 10.0
    wet = sim.run(weather).speed
    np.testing.assert_array_equal(np.isnan(wet), np.isnan(data.speed))
    np.testing.assert_array_equal(wet[:start], data.speed[:start])
    assert np.nanmax(np.abs(wet[start + 40:] - data.speed[start + 40:])) < 0.01
    np.testing.assert_array_equal(sim.horizon_speed(start - 1, weather[start:start + 12]), wet[start:start + 12])


def test_weather_forecast_errs_more_with_lead_time(sim):
    anchors = np.arange(1000, 5000, 7)
    forecast = sim.weather_forecast(anchors, 12)
    actual = sim.weather[anchors[:, None] + np.arange(1, 13)]
    error = np.abs(forecast - actual).mean(axis=0)                     # [H, 3]
    assert np.all(error[-1] > 2 * error[0])
    assert error[0, 0] < 0.5 and error[0, 1] < 2.0
    np.testing.assert_array_equal(sim.weather_forecast(anchors[:3], 12), forecast[:3])   # deterministic


def test_simulator_is_built_back_from_provenance(data, tmp_path):
    from stmgt.data.folder import read_folder, write_folder
    from stmgt.data.simulate import simulator_for

    again = simulator_for(read_folder(write_folder(data, tmp_path / "sim")))
    assert again is not None
    np.testing.assert_array_equal(again.run().speed, data.speed)
    edited = TrafficDataset(data.timestamps, data.speed, data.weather + 1.0, data.graph, data.provenance)
    assert simulator_for(edited) is None
    assert simulator_for(TrafficDataset(data.timestamps, data.speed, data.weather, data.graph, {})) is None
