"""Every page in a real browser: it renders its main content without an error, it is saved as a
screenshot for a human to look at, and its main control changes what is drawn."""

from __future__ import annotations

import re

import pytest
from e2e_helpers import (RUN_MS, assert_healthy, changed_screenshot, click_node, hover_other_node, keyed, metric,
                         metric_value, nudge, open_page, plotly_traces, screenshot, settle)
from playwright.sync_api import Page, expect

from ui.ranked import ROW_PX

# pytest-playwright 0.10 defines its base_url fixture in a way pytest 9 warns about; not ours to fix.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]


def test_overview(page: Page, dashboard: str):
    open_page(page, dashboard, "", "Overview")
    for label in ("Span", "Nodes", "Road segments", "Mean speed"):
        expect(page.get_by_test_id("stMetric").filter(has_text=label)).to_be_visible()
    expect(page.get_by_test_id("stDeckGlJsonChart").locator("canvas").first).to_be_visible()
    expect(page.get_by_test_id("stMain").get_by_role("heading", name="Model", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()          # STMGT vs the baselines
    screenshot(page, "overview")


def test_forecast_map_follows_the_horizon_and_a_clicked_node(page: Page, dashboard: str):
    open_page(page, dashboard, "forecast_map", "Forecast map")
    deck = page.get_by_test_id("stDeckGlJsonChart")
    expect(deck.locator("canvas").first).to_be_visible()
    expect(page.get_by_text("Median forecast speed, km/h", exact=False)).to_be_visible()      # the legend
    for label in ("Network median speed", "Likely congested", "Slowest node"):
        expect(page.get_by_test_id("stMetric").filter(has_text=label)).to_be_visible()
    screenshot(page, "forecast_map")

    card = page.get_by_test_id("stMarkdownContainer").filter(has_text="80 % interval")   # the selected node
    card_before, map_before = card.inner_text(), deck.screenshot()
    nudge(page, "Forecast horizon")
    expect(card).not_to_have_text(card_before, timeout=RUN_MS)
    settle(page)
    assert_healthy(page)
    map_after = changed_screenshot(deck, map_before)
    assert map_after != map_before, "the map did not change with the horizon"

    # A node's tooltip has its forecast; clicking the node selects it.
    selected = re.search(r"· (\S+)\n", card.inner_text()).group(1)
    node_id, x, y, tooltip = hover_other_node(page, deck, map_after, selected)
    for part in ("median", "80 % interval", "P(speed <"):
        assert part in tooltip
    click_node(page, card, node_id, x, y)
    settle(page)
    assert_healthy(page)


def test_node_forecast_fan_chart_follows_the_node(page: Page, dashboard: str):
    open_page(page, dashboard, "node_forecast", "Node forecast")
    fan = keyed(page, "node_fan")
    expect(fan).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()          # the forecast table
    screenshot(page, "node_forecast")

    def drawn() -> tuple[dict, str]:
        traces = {t["name"]: t["y"] for t in plotly_traces(fan)}
        return traces, metric(page, "Observed at")

    before, observed = drawn()
    assert {"Median forecast (q50)", "Observed (model input)"} <= set(before)
    assert observed == f"{before['Observed (model input)'][-1]:.1f} km/h"
    page.get_by_test_id("stSelectbox").filter(has_text="Node").click()
    page.keyboard.type("n30")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("stCaptionContainer").filter(has_text="n30")).to_be_visible(timeout=RUN_MS)
    settle(page)
    assert_healthy(page)
    after, observed = drawn()
    assert after["Median forecast (q50)"] != before["Median forecast (q50)"]
    # The chart and the headline numbers show the same, newly selected node.
    assert observed == f"{after['Observed (model input)'][-1]:.1f} km/h"


def test_interpretability(page: Page, dashboard: str):
    open_page(page, dashboard, "interpretability", "Interpretability")
    for heading in ("fusion gate", "GATv2 attention", "Which past steps matter", "Which forecast weather matters"):
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.get_by_test_id("stDeckGlJsonChart").locator("canvas").first).to_be_visible()
    assert page.get_by_test_id("stPlotlyChart").count() >= 3
    screenshot(page, "interpretability")


def test_what_if_precipitation_changes_the_forecast(page: Page, dashboard: str):
    open_page(page, dashboard, "what_if", "Weather what-if")
    expect(keyed(page, "whatif_weather")).to_be_visible()
    expect(page.get_by_test_id("stDeckGlJsonChart").first.locator("canvas").first).to_be_visible()
    screenshot(page, "what_if")

    change = metric(page, "Network · model", exact=True)          # over the horizon (another is at the map's step)
    shift = float(nudge(page, "Precipitation shift (mm/h)", times=10))
    assert shift == pytest.approx(15.0)
    network = metric_value(page, "Network · model", exact=True)
    expect(network).not_to_have_text(change, timeout=RUN_MS)
    settle(page)
    assert_healthy(page)
    # The weather the model read is the observed rain plus the new shift (panels: temperature, wind, rain).
    traces = plotly_traces(keyed(page, "whatif_weather"))
    observed, scenario = traces[4]["y"], traces[5]["y"]
    assert [s - o for s, o in zip(scenario, observed)] == pytest.approx([shift] * len(observed), abs=1e-3)


@pytest.mark.parametrize(("path", "title", "table"), [("forecast_map", "Forecast map", "forecast_map_roads"),
                                                      ("what_if", "Weather what-if", "whatif_roads")])
def test_a_ranked_road_table_row_selects_its_road(page: Page, dashboard: str, path: str, title: str, table: str):
    page.set_viewport_size({"width": 1440, "height": 1000})
    open_page(page, dashboard, path, title)
    grid = keyed(page, table)
    grid.scroll_into_view_if_needed()
    canvas = grid.locator("canvas").first
    expect(canvas).to_be_visible()
    row = 2                                   # the third road; the grid's accessible rows mirror the canvas
    cells = grid.locator(f'tr[aria-rowindex="{row + 2}"] td')
    expect(cells.filter(has_text=re.compile(r"^n\d+$"))).to_have_count(1)      # drawn once in view
    cells = cells.all_inner_texts()
    node_id = next(c for c in cells if re.fullmatch(r"n\d+", c))
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + ROW_PX * (row + 1) + ROW_PX / 2)     # its row marker
    settle(page)
    assert_healthy(page)
    expect(grid.locator('tr[aria-selected="true"]')).to_have_attribute("aria-rowindex", str(row + 2))
    if path == "forecast_map":                # the selected node's card
        expect(page.get_by_test_id("stMarkdownContainer").filter(has_text="80 % interval")).to_contain_text(node_id)
    else:                                     # the selected road's headline numbers
        expect(page.get_by_test_id("stMetricLabel").filter(has_text=f"{node_id} · model").first).to_be_visible()
    screenshot(page, f"{path}_roads_1440px")


def test_evaluation(page: Page, dashboard: str):
    open_page(page, dashboard, "evaluation", "Evaluation")
    for label in ("MAE at +60 min", "Gain vs persistence", "80 % interval coverage"):
        expect(page.get_by_test_id("stMetric").filter(has_text=label)).to_be_visible()
    for heading in ("Accuracy by forecast horizon", "Calibration: are the intervals honest?"):
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert page.get_by_test_id("stPlotlyChart").count() >= 5
    screenshot(page, "evaluation")


def test_data(page: Page, dashboard: str):
    open_page(page, dashboard, "data", "Data")
    expect(page.get_by_role("tab", name="Import a dataset")).to_be_visible()
    expect(page.get_by_role("tab", name="Imported datasets")).to_be_visible()
    screenshot(page, "data")


def test_deep_link_on_a_fresh_server(page: Page, fresh_dashboard: str):
    """A bookmarked page is the first thing a restarted server serves: it must come with the
    app's navigation and sidebar, not as a bare script."""
    open_page(page, fresh_dashboard, "data", "Data")
