"""What only a browser shows: a clicked node keeps the map in its legend colours, and every page lays
out at 1440, 1024 and 800 px with no metric, label or button cut short, no word broken over two lines,
no chart title overlapping another or cut at the chart's edge and no table cut off unless it scrolls
on purpose. Screenshots of each page and width land in test-results/screenshots/<page>_<width>px.png
for a human to look at."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from e2e_helpers import RUN_MS, changed_screenshot, click_node, hover_other_node, open_page, screenshot, settle
from PIL import Image
from playwright.sync_api import Locator, Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]


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


def visible_boxes(elements: Locator) -> list[dict]:
    """Where each visible element is (a collapsed expander's content has boxes, stacked unseen)."""
    return [box for i in range(elements.count())
            if elements.nth(i).is_visible() and (box := elements.nth(i).bounding_box())]


# Every page as a new user opens it. The first three draw at least three headline numbers each.
PAGES = [("", "Overview"), ("forecast_map", "Forecast map"), ("node_forecast", "Node forecast"), ("route", "Route"),
         ("alerts", "Alerts"),
         ("interpretability", "Interpretability"), ("what_if", "Weather what-if"), ("train", "Train & load"),
         ("evaluation", "Evaluation"), ("data", "Data"), ("quality", "Forecast quality")]
MIN_METRICS = {"": 3, "forecast_map": 3, "node_forecast": 3, "alerts": 3}
# Pages that draw their content after background work (the Alerts page's first calibration): the
# heading that says it is drawn, and how long to wait for it.
DRAWN = {"alerts": "Current alerts"}
DRAWN_MS = 300_000
# Tables (by key) wider than the page below a width on purpose: they scroll sideways, their first
# column pinned, rather than squeeze their columns; at 1440 px they fit.
SCROLLS_BELOW = {"eval_horizon_table": 1440, "eval_fidelity_table": 1440, "route_compare_table": 1440,
                 "route_segments_table": 1440, "forecast_map_roads": 1440, "whatif_roads": 1440,
                 "data_datasets_table": 1440, "alerts_current": 1440, "alerts_history": 1440,
                 "quality_horizon_table": 1440, "quality_roads": 1440}

# What a reader sees cut or overlapping, as sentences. Cut: an element whose text is wider than its
# box (Streamlit then ends it with "…" or hides the rest): a metric value or anything inside it, a
# metric or widget label, a toggle's label, a button's label, a tab. Broken: a word of letters split
# over two lines. Charts: a plotly title, axis title, annotation or legend overlapping another, or
# running past the chart's edge. Tables: a data grid that scrolls sideways, unless its key (or its
# container's) says so.
LAYOUT_PROBLEMS = """(scrollsOnPurpose) => {
  const problems = [];
  const text = el => (el.innerText || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
  const shown = el => el.getClientRects().length > 0;
  const cut = el => shown(el) && el.clientWidth > 1 && el.scrollWidth > el.clientWidth + 1;   // 1 px: visually hidden
  const broken = el => {
    const words = [];
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode())
      for (const m of node.data.matchAll(/[\\p{L}\\p{N}]+/gu)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) words.push(m[0]);
      }
    return words;
  };
  for (const value of document.querySelectorAll('[data-testid="stMetricValue"]'))
    if ([value, ...value.querySelectorAll('*')].some(cut)) problems.push(`metric value "${text(value)}" is cut`);
  const labels = '[data-testid="stMetricLabel"], [data-testid="stMetricDelta"], [data-testid="stWidgetLabel"], '
    + '[data-testid="stCheckbox"] label, [data-testid^="stBaseButton"], [data-testid="stTab"]';
  for (const label of document.querySelectorAll(labels)) {
    if (!shown(label)) continue;
    if ([label, ...label.querySelectorAll('*')].some(cut)) problems.push(`label "${text(label)}" is cut`);
    for (const word of broken(label)) problems.push(`label "${text(label)}" breaks "${word}" over two lines`);
  }
  const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const frame = plot.querySelector('.main-svg').getBoundingClientRect();
    const parts = [...plot.querySelectorAll('.gtitle, .annotation-text, text[class$="title"], .legend > .bg')]
      .map(el => [el.classList.contains('bg') ? 'the legend' : `"${text(el)}"`, el.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0 && r.height > 0);
    for (const [name, r] of parts)
      if (r.left < frame.left - 1 || r.right > frame.right + 1) problems.push(`chart text ${name} runs past the chart`);
    for (let i = 0; i < parts.length; i++)
      for (let j = i + 1; j < parts.length; j++)
        if (hit(parts[i][1], parts[j][1])) problems.push(`chart texts ${parts[i][0]} and ${parts[j][0]} overlap`);
  }
  for (const table of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    const scroller = table.querySelector('.dvn-scroller');
    const holder = table.closest('.stElementContainer');          // keyed itself, or a keyed container's only child
    const key = ((holder.className + ' ' + holder.parentElement.className).match(/st-key-(\\S+)/) || [])[1];
    if (!scroller) problems.push(`table ${key || '(no key)'} has no .dvn-scroller: this check cannot measure it`);
    else if (scroller.scrollWidth > scroller.clientWidth + 1 && !scrollsOnPurpose.includes(key))
      problems.push(`table ${key || '(no key)'} with "${text(table).slice(0, 30)}…" is cut: `
                    + `${scroller.scrollWidth} px of columns in ${scroller.clientWidth} px`);
  }
  return problems;
}"""


# The narrowest first: the page is opened there (its first draw is where a squeeze shows), then widened.
# The layout follows the window (CSS, and the charts' and tables' resize observers), so a resize
# draws what an open at that width draws, at a third of the page opens.
WIDTHS = [800, 1024, 1440]


@pytest.mark.parametrize("path, title", PAGES, ids=[path or "overview" for path, _ in PAGES])
def test_pages_lay_out_at_common_widths(page: Page, dashboard: str, path: str, title: str):
    page.set_viewport_size({"width": WIDTHS[0], "height": 1000})
    open_page(page, dashboard, path, title)
    if path in DRAWN:
        expect(page.get_by_role("heading", name=DRAWN[path])).to_be_visible(timeout=DRAWN_MS)
        settle(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1000)
        settle(page)
        screenshot(page, f"{path or 'overview'}_{width}px")
        assert page.get_by_test_id("stMetricValue").count() >= MIN_METRICS.get(path, 0)
        problems = page.evaluate(LAYOUT_PROBLEMS, [key for key, below in SCROLLS_BELOW.items() if width < below])
        assert not problems, f"{title} at {width} px:\n" + "\n".join(problems)
        labels = [*visible_boxes(page.get_by_test_id("stWidgetLabel")),
                  *visible_boxes(page.get_by_test_id("stMetricLabel"))]
        assert not overlaps(labels), f"{title} at {width} px: labels overlap"
        if path == "forecast_map":                      # the map's toolbar row stays clear of the sliders
            horizon = page.get_by_role("group", name="Forecast horizon", exact=True).bounding_box()
            deck = page.get_by_test_id("stDeckGlJsonChart").bounding_box()
            assert deck["y"] - (horizon["y"] + horizon["height"]) > 40, f"{title} at {width} px"
        expect(page.get_by_test_id("stException")).to_have_count(0, timeout=RUN_MS)
