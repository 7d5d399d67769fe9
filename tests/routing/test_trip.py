"""Trips planned on the small trained model's forecast of simulated data: both routes with their
travel-time spread from one set of joint draws, the chance of arriving on time, the historical and
the true travel time, and the JSON answer. (Refused requests are in tests/test_bad_inputs.py.)"""

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecaster
from stmgt.routing.copula import ErrorCopula
from stmgt.routing.trip import TripPlanner, actual_speeds, check_request

SAMPLES = 2000


@pytest.fixture(scope="module")
def forecaster(trained, data):
    return Forecaster(trained[0].run.load(data.graph), data)


@pytest.fixture(scope="module")
def planner(forecaster, data):
    return TripPlanner(data, ErrorCopula.independent(data.num_nodes, forecaster.horizon), actual_speeds(data))


@pytest.fixture(scope="module")
def forecast(forecaster):
    return forecaster.forecast(forecaster.test_anchors()[5])


@pytest.fixture(scope="module")
def ends(planner, data):
    """The first node and the node farthest from it in segments: a trip of many segments."""
    origin = data.graph.node_ids[0]
    routes = [planner.network.shortest(origin, other) for other in data.graph.node_ids[1:]]
    longest = max(routes, key=lambda route: len(route.edges))
    assert len(longest.edges) >= 3
    return origin, longest.nodes[-1]


def test_a_trip_answers_both_routes_between_its_ends(planner, forecast, ends):
    depart = forecast.anchor_times[0]
    trip = planner.plan(forecast, *ends, depart, samples=SAMPLES)
    assert trip.anchor_time == depart and trip.depart == depart and trip.deadline is None
    for answer in (trip.fastest, trip.shortest):
        assert (answer.route.nodes[0], answer.route.nodes[-1]) == ends
        assert len(answer.travel.samples) == SAMPLES and answer.travel.p10 < answer.travel.p50 < answer.travel.p90
        assert answer.historical_min > 0 and answer.true_min is not None and answer.true_min > 0
        segments = answer.segments
        assert len(segments) == len(answer.route.edges) and list(segments["from"]) == answer.route.nodes[:-1]
        assert segments.entry_time.iloc[0] == depart and segments.entry_time.is_monotonic_increasing
        assert answer.length_m == pytest.approx(segments.length_m.sum())
    assert trip.shortest.length_m <= trip.fastest.length_m
    assert trip.fastest.segments.minutes.sum() <= trip.shortest.segments.minutes.sum() + 1e-9


def test_both_routes_are_driven_through_the_same_draws_and_a_seed_repeats_them(planner, forecast, ends):
    depart = forecast.anchor_times[0]
    trip = planner.plan(forecast, *ends, depart, samples=SAMPLES, seed=3)
    assert trip.fastest.route.nodes == trip.shortest.route.nodes          # one road between these ends
    np.testing.assert_array_equal(trip.fastest.travel.samples, trip.shortest.travel.samples)
    again = planner.plan(forecast, *ends, depart, samples=SAMPLES, seed=3)
    np.testing.assert_array_equal(again.fastest.travel.samples, trip.fastest.travel.samples)
    other = planner.plan(forecast, *ends, depart, samples=SAMPLES, seed=4)
    assert not np.array_equal(other.fastest.travel.samples, trip.fastest.travel.samples)


def test_the_chance_of_arriving_on_time_follows_the_deadline(planner, forecast, ends):
    depart = forecast.anchor_times[0]
    travel = planner.plan(forecast, *ends, depart, samples=SAMPLES).fastest.travel
    chances = []
    for minutes in (travel.p10, travel.p50, travel.p90):
        trip = planner.plan(forecast, *ends, depart, depart + pd.Timedelta(minutes=minutes), samples=SAMPLES)
        chances.append(trip.p_on_time)
    assert chances == pytest.approx([0.1, 0.5, 0.9], abs=0.01)


def test_a_later_departure_drives_the_later_forecast_steps(planner, forecast, ends):
    later = forecast.anchor_times[0] + pd.Timedelta(minutes=100)
    trip = planner.plan(forecast, *ends, later, samples=SAMPLES)
    assert trip.depart == later and trip.fastest.segments.entry_time.iloc[0] == later
    now = planner.plan(forecast, *ends, forecast.anchor_times[0], samples=SAMPLES)
    assert trip.fastest.travel.p50 != now.fastest.travel.p50
    last = forecast.target_times(0)[-1]
    latest = re.escape((last - forecast.freq).isoformat())
    with pytest.raises(DataError, match=f"outside the forecast made at .* and {latest}"):
        planner.plan(forecast, *ends, last, samples=SAMPLES)


def test_dependent_errors_widen_the_spread(planner, forecast, ends, data):
    depart = forecast.anchor_times[0]
    independent = planner.plan(forecast, *ends, depart, samples=SAMPLES).fastest.travel
    together = ErrorCopula(np.ones((data.num_nodes,) * 2), np.ones((forecast.horizon,) * 2))
    comonotone = planner.plan(forecast, *ends, depart, samples=SAMPLES, copula=together).fastest.travel
    assert comonotone.p90 - comonotone.p10 > 1.5 * (independent.p90 - independent.p10)


def test_the_answer_is_plain_json(planner, forecast, ends):
    depart = forecast.anchor_times[0]
    trip = planner.plan(forecast, *ends, depart, depart + pd.Timedelta(minutes=40), samples=SAMPLES)
    answer = json.loads(json.dumps(trip.summary(), allow_nan=False))
    assert answer["path"] == trip.fastest.route.nodes and answer["shortest"]["path"] == trip.shortest.route.nodes
    assert answer["p50_min"] == round(trip.fastest.travel.p50, 2) and answer["samples"] == SAMPLES
    assert answer["p_on_time"] == round(trip.p_on_time, 4)
    assert answer["depart"] == answer["forecast_made_at"] == depart.isoformat()
    assert pd.Timestamp(answer["deadline"]) == depart + pd.Timedelta(minutes=40)
    assert [s["entry_time"] for s in answer["segments"]] == [t.isoformat() for t in trip.fastest.segments.entry_time]


def test_without_actual_speeds_there_is_no_true_travel_time(planner, forecast, ends, data):
    blind = TripPlanner(data, planner.copula)
    trip = blind.plan(forecast, *ends, forecast.anchor_times[0], samples=SAMPLES)
    assert trip.fastest.true_min is None and trip.summary()["true_min"] is None
    assert trip.fastest.historical_min > 0


def test_the_actual_speeds_are_the_simulators_without_the_sensor_gaps(data):
    actual = actual_speeds(data)
    observed = ~np.isnan(data.speed)
    assert not observed.all() and not np.isnan(actual).any()
    np.testing.assert_allclose(actual[observed], data.speed[observed], rtol=1e-5)
    assert actual_speeds(replace(data, provenance={"source": "upload"})) is None
    assert actual_speeds(replace(data, speed=data.speed + 1)) is None        # not this simulator's output


def test_a_request_that_needs_no_model_passes_the_early_check(planner, forecast, ends):
    depart = forecast.anchor_times[0]
    assert check_request(planner.network, *ends, depart, depart + pd.Timedelta(minutes=5)) is None
    with pytest.raises(DataError, match="--to: unknown node"):
        check_request(planner.network, ends[0], "no-such-node", depart, None, options=("--from", "--to"))
