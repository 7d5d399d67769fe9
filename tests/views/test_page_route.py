"""Route page under AppTest: the trip's figures, map lines, histogram and tables agree with each
other; a map click moves the origin or destination; a deadline adds P(on time) for both routes,
starting at the median arrival plus a margin, with the on-time draws hatched on the histogram."""

import numpy as np
import pytest

from stmgt.data.graph import RoadGraph

from tests.views.page_helpers import array, click_node, deck_layers, plotly, trace

PAGE = "views/route.py"
pytestmark = pytest.mark.slow        # the page plans a trip of 2,000 joint draws (seconds)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def minutes(text: str) -> float:
    return float(text.split()[0])


def test_route_page_shows_a_consistent_trip(app):
    at = app(PAGE, route_from="n01", route_to="n40")
    graph = RoadGraph.hcmc()
    segments = at.dataframe[1].value
    assert segments["from"].iloc[0] == graph.names["n01"] and segments["to"].iloc[-1] == graph.names["n40"]
    assert (segments["expected_speed_kmh"] > 0).all() and segments["entry_time"].is_monotonic_increasing
    compare = at.dataframe[0].value.set_index("Route")
    assert compare.loc["Shortest", "Length (km)"] <= compare.loc["Fastest", "Length (km)"] + 1e-9
    assert compare.loc["Fastest", "Length (km)"] == pytest.approx(segments["length_m"].sum() / 1000)
    p50 = minutes(metric(at, "Median (P50)"))
    assert p50 == pytest.approx(compare.loc["Fastest", "P50 (min)"], abs=0.05)
    lo, hi = map(float, metric(at, "80 % interval, min").split("–"))
    assert lo < p50 < hi
    assert minutes(metric(at, "Actual")) > 0            # simulated data: the true time is known
    assert minutes(metric(at, "Historical avg.")) > 0
    draws = array(trace(plotly(at, "route_histogram"), "Fastest route")["x"])
    assert len(draws) == 2000 and np.quantile(draws, 0.5) == pytest.approx(p50, abs=0.05)
    lines = deck_layers(at)["arrows"]["data"]
    assert len([row for row in lines if row["width"] == 9]) == len(segments)     # the fastest route, drawn


def test_map_click_and_deadline(app):
    at = app(PAGE, route_from="n01", route_to="n40", route_click="Destination")
    click_node(at, "n20", 19)
    assert not at.exception
    assert at.session_state["route_to"] == "n20" and at.session_state["route_from"] == "n01"
    assert at.dataframe[1].value["to"].iloc[-1] == RoadGraph.hcmc().names["n20"]
    at.toggle(key="route_use_deadline").set_value(True).run()
    assert not at.exception
    on_time = next(m for m in at.metric if m.label.startswith("P(arrive by "))
    assert 0 <= float(on_time.value.rstrip("%")) <= 100


def test_first_visit_offers_a_cross_town_trip(app):
    at = app(PAGE)
    assert at.session_state["route_from"] == "n01" and at.session_state["route_to"] != "n01"
    assert len(at.dataframe[1].value) >= 5                      # the farthest node by road: many segments


def test_same_origin_and_destination_is_a_message(app):
    at = app(PAGE, route_from="n05", route_to="n05")
    assert any("same node" in e.value for e in at.error)


def on_time_metric(at):
    return next(m for m in at.metric if m.label.startswith("P(arrive by "))


def test_deadline_starts_at_the_median_arrival_plus_a_margin(app):
    at = app(PAGE)                                                  # the first visit's cross-town trip
    at.toggle(key="route_use_deadline").set_value(True).run()
    assert not at.exception
    spec = plotly(at, "route_histogram")
    draws = array(trace(spec, "Fastest route")["x"])
    p50, p90 = np.quantile(draws, [0.5, 0.9])
    (deadline,) = [s for s in at.select_slider if s.label == "Arrive by"]
    assert deadline.value == int(np.ceil(p50 + (p90 - p50) / 2))   # the median plus half the way to P90
    share = float(on_time_metric(at).value.rstrip("%")) / 100
    assert share == pytest.approx((draws <= deadline.value).mean(), abs=0.005)
    assert 0.5 <= share < 1                                         # an answer worth reading, not 0 % or 100 %
    compare = at.dataframe[0].value.set_index("Route")
    assert compare.loc["Fastest", "P(on time)"] == pytest.approx(100 * (draws <= deadline.value).mean())
    (hatched,) = [t for t in spec["data"] if t.get("name", "").startswith("On time")]
    assert array(hatched["y"]).sum() == pytest.approx((draws <= deadline.value).mean())
    names = [t.get("name") for t in spec["data"]]
    assert names.index("Actual") > names.index("Deadline")          # drawn over the deadline, not hidden


def test_p_on_time_for_both_routes_follows_the_deadline(app):
    at = app(PAGE, route_from="n05", route_to="n44", route_use_deadline=True)
    compare = at.dataframe[0].value.set_index("Route")
    assert compare.loc["Fastest", "Via"] != compare.loc["Shortest", "Via"]     # two routes to compare
    spec = plotly(at, "route_histogram")
    fastest, shortest = (array(trace(spec, name)["x"]) for name in ("Fastest route", "Shortest route"))
    (deadline,) = [s for s in at.select_slider if s.label == "Arrive by"]
    for budget in (deadline.value, int(np.ceil(np.quantile(shortest, 0.2)))):
        deadline.set_value(budget).run()
        assert not at.exception
        (deadline,) = [s for s in at.select_slider if s.label == "Arrive by"]
        compare = at.dataframe[0].value.set_index("Route")
        assert compare.loc["Fastest", "P(on time)"] == pytest.approx(100 * (fastest <= budget).mean())
        assert compare.loc["Shortest", "P(on time)"] == pytest.approx(100 * (shortest <= budget).mean())
        assert on_time_metric(at).value == f"{(fastest <= budget).mean():.0%}"
        assert on_time_metric(at).delta == f"shortest route {(shortest <= budget).mean():.0%}"
