"""The Route page in a real browser: the route is drawn on the map, the travel-time histogram and
the tables show, and a later departure changes the answer."""

from __future__ import annotations

import pytest
from e2e_helpers import LOAD_MS, RUN_MS, assert_healthy, keyed, metric, nudge, open_page, screenshot, settle
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]


def test_route_page_draws_the_trip_and_follows_the_departure(page: Page, dashboard: str):
    open_page(page, dashboard, "route", "Route")
    expect(keyed(page, "route_histogram").locator(".js-plotly-plot")).to_be_visible(timeout=LOAD_MS)
    expect(keyed(page, "route_map").locator("canvas").first).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)             # fastest vs shortest, segments
    screenshot(page, "route")
    draws = keyed(page, "route_histogram").locator(".js-plotly-plot").evaluate("el => el._fullData[0].x.length")
    assert draws == 2000
    before = metric(page, "Arrive (P50)")
    nudge(page, "Leave at", times=2)                                        # 30 minutes later
    expect(page.get_by_test_id("stMetricValue").filter(has_text=before)).to_have_count(0, timeout=RUN_MS)
    settle(page)
    assert_healthy(page)
    assert float(metric(page, "Median (P50)").split()[0]) > 0
