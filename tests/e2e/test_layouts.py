"""What only a browser shows: a clicked node keeps the map in its legend colours, and the pages
lay out at 1440, 1024 and 800 px without a cut metric or overlapping labels. Screenshots of each
width land in test-results/screenshots/ for a human to look at."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from e2e_helpers import RUN_MS, changed_screenshot, click_node, hover_other_node, open_page, screenshot, settle
from PIL import Image
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]

PAGES = [("", "Overview"), ("forecast_map", "Forecast map"), ("node_forecast", "Node forecast")]


def vivid_share(shot: bytes) -> float:
    """The share of the map's pixels in a strong colour: faded (translucent) nodes and roads lose it."""
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 90).mean())


def test_a_clicked_node_keeps_the_map_in_its_legend_colours(page: Page, dashboard: str):
    open_page(page, dashboard, "forecast_map", "Forecast map")
    deck = page.get_by_test_id("stDeckGlJsonChart")
    expect(deck.locator("canvas").first).to_be_visible()
    card = page.get_by_test_id("stMarkdownContainer").filter(has_text="80 % interval")
    selected = re.search(r"· (\S+)\n", card.inner_text()).group(1)
    page.wait_for_timeout(2000)
    before = deck.screenshot()
    node_id, x, y, _ = hover_other_node(page, deck, before, selected)
    click_node(page, card, node_id, x, y)
    settle(page)
    page.mouse.move(5, 5)                                  # off the map: no hover effect in the shot
    after = changed_screenshot(deck, before)               # the ring moves to the clicked node
    screenshot(page, "forecast_map_after_click")
    # Streamlit fades everything but a held selection to 40 % opacity: that would halve the vivid pixels.
    assert vivid_share(after) > 0.8 * vivid_share(before), (vivid_share(before), vivid_share(after))


def overlaps(boxes: list[dict]) -> list[tuple[int, int]]:
    def hit(a, b):
        return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
            a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if hit(boxes[i], boxes[j])]


@pytest.mark.parametrize("width", [1440, 1024, 800])
def test_pages_lay_out_at_common_widths(page: Page, dashboard: str, width: int):
    page.set_viewport_size({"width": width, "height": 1000})
    for path, title in PAGES:
        open_page(page, dashboard, path, title)
        page.wait_for_timeout(1000)
        values = page.get_by_test_id("stMetricValue")
        assert values.count() >= 3
        for i in range(values.count()):                    # no value cut to "13.2 …": it fits its box
            text, fits = values.nth(i).evaluate(
                "el => { const t = el.querySelector('div,p') || el;"
                " return [el.innerText, t.scrollWidth <= t.clientWidth + 1 && el.scrollWidth <= el.clientWidth + 1]; }")
            assert fits, f"{title} at {width} px: metric {text!r} is cut"
        labels = [b for b in (page.get_by_test_id("stWidgetLabel").nth(i).bounding_box()
                              for i in range(page.get_by_test_id("stWidgetLabel").count())) if b]
        labels += [b for b in (page.get_by_test_id("stMetricLabel").nth(i).bounding_box()
                               for i in range(page.get_by_test_id("stMetricLabel").count())) if b]
        assert not overlaps(labels), f"{title} at {width} px: labels overlap"
        if path == "forecast_map":                          # the map's toolbar row stays clear of the sliders
            horizon = page.get_by_role("group", name="Forecast horizon", exact=True).bounding_box()
            deck = page.get_by_test_id("stDeckGlJsonChart").bounding_box()
            assert deck["y"] - (horizon["y"] + horizon["height"]) > 40
        screenshot(page, f"{path or 'overview'}_{width}px")
    expect(page.get_by_test_id("stException")).to_have_count(0, timeout=RUN_MS)
