"""The chosen forecast time and horizon stay when changing pages in a real browser (issue 27: the
time jumped to the test period's first step on every second page change)."""

from __future__ import annotations

import pytest
from e2e_helpers import assert_healthy, go_to, nudge, open_page, settle, slider
from playwright.sync_api import Page, expect

# pytest-playwright 0.10 defines its base_url fixture in a way pytest 9 warns about; not ours to fix.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]

TIME, HORIZON = "Forecast made at", "Forecast horizon"
# Pages and how each labels the horizon (None: the page has no forecast time), back and forth.
TOUR = [("Weather what-if", "Map horizon"), ("Node forecast", "Horizon"), ("Overview", None),
        ("Forecast map", HORIZON), ("Node forecast", "Horizon")]


def test_the_chosen_time_and_horizon_stay_across_pages(page: Page, dashboard: str):
    open_page(page, dashboard, "forecast_map", "Forecast map")
    time = nudge(page, TIME, "ArrowLeft", times=3)
    settle(page)
    horizon = nudge(page, HORIZON, "ArrowRight", times=2)
    settle(page)
    for title, horizon_label in TOUR:
        go_to(page, title)
        assert_healthy(page)
        if horizon_label is not None:
            expect(slider(page, TIME)).to_have_attribute("aria-valuetext", time)
            expect(slider(page, horizon_label)).to_have_attribute("aria-valuetext", horizon)
