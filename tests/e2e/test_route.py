"""The Route page in a real browser: the route is drawn on the map, the travel-time histogram and
the tables show, and a later departure changes the answer; the deadline starts where its answer
says something; the maps with arrows draw them without a console error; tooltips stay inside the map."""

from __future__ import annotations

import pytest
from e2e_helpers import (LOAD_MS, RUN_MS, assert_healthy, go_to, keyed, metric, node_marks, nudge, open_page,
                         plotly_traces, screenshot, settle)
from playwright.sync_api import ConsoleMessage, Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]
DRAW_MS = 3000          # deck.gl builds its layers a moment after the canvas shows


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


def test_the_deadline_starts_with_an_answer_and_shades_it(page: Page, dashboard: str):
    open_page(page, dashboard, "route", "Route")
    page.get_by_test_id("stCheckbox").filter(has_text="Arrival deadline").locator("label").click()
    settle(page)
    assert_healthy(page)
    share = page.get_by_test_id("stMetric").filter(has_text="P(arrive by").get_by_test_id("stMetricValue")
    expect(share).to_be_visible(timeout=RUN_MS)
    assert 50 <= int(share.inner_text().rstrip("%")) < 100                   # not the 0 % a fixed budget gave
    names = [t["name"] for t in plotly_traces(keyed(page, "route_histogram"))]
    assert any(name.startswith("On time") for name in names)                 # the on-time draws, hatched
    assert names.index("Actual") > names.index("Deadline")
    screenshot(page, "route_deadline")


def test_maps_with_arrows_draw_without_console_errors(page: Page, dashboard: str):
    """The Route and Interpretability maps draw arrowheads with a TextLayer; deck.gl reports a layer
    it cannot build on the console ("deck: initialization/update of TextLayer…")."""
    errors: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "error" or message.text.startswith("deck"):
            errors.append(message.text)

    page.on("console", record)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_page(page, dashboard, "route", "Route")
    expect(keyed(page, "route_map").locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_timeout(DRAW_MS)
    go_to(page, "Interpretability")
    expect(page.get_by_test_id("stDeckGlJsonChart").locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_timeout(DRAW_MS)
    assert [e for e in errors if "deck" in e.lower()] == [], errors
    assert_healthy(page)


def test_tooltips_stay_inside_the_map(page: Page, dashboard: str):
    """The nodes nearest the map's right and bottom edges open their tooltips inwards."""
    open_page(page, dashboard, "route", "Route")
    deck = keyed(page, "route_map").get_by_test_id("stDeckGlJsonChart")
    expect(deck.locator("canvas").first).to_be_visible(timeout=LOAD_MS)
    page.wait_for_timeout(DRAW_MS)
    deck.scroll_into_view_if_needed()
    box, marks = deck.bounding_box(), node_marks(deck.screenshot())
    tip = page.locator(".deck-tooltip > div").first
    checked = 0
    for x, y in sorted(marks, key=lambda m: -m[0])[:4] + sorted(marks, key=lambda m: -m[1])[:4]:
        page.mouse.move(box["x"] + x, box["y"] + y)
        try:
            expect(tip).to_be_visible(timeout=2000)
        except AssertionError:
            continue                                # between nodes, or deck.gl busy on a loaded CPU
        shown = tip.bounding_box()
        assert box["x"] <= shown["x"] and shown["x"] + shown["width"] <= box["x"] + box["width"], (x, y, shown)
        assert box["y"] <= shown["y"] and shown["y"] + shown["height"] <= box["y"] + box["height"], (x, y, shown)
        checked += 1
    assert checked >= 2, "no edge node showed a tooltip"
