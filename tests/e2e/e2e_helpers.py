"""What the e2e tests do in the browser: open a page and wait for it, check it is healthy, read
metrics and chart data, move a slider with the keyboard, save a screenshot."""

from __future__ import annotations

import io
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
# Generous but bounded: a page's first render loads data and model on a slow, shared CPU.
LOAD_MS = 120_000
RUN_MS = 60_000


def settle(page: Page, timeout: float = RUN_MS) -> None:
    """Wait until the app is connected, no script run is in progress and every element's code
    has loaded (Streamlit draws grey skeletons until then)."""
    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout)
    page.wait_for_timeout(300)      # a rerun may start just after; let it begin, then wait again
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=timeout)


def assert_healthy(page: Page) -> None:
    """No uncaught-exception box and no error message on the page."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def open_page(page: Page, base: str, path: str, title: str) -> Page:
    """Open a page by its URL, wait until it is drawn, and check it is the whole app: the page's
    title, the navigation (by page titles) and the sidebar's pickers, without errors."""
    page.goto(f"{base}/{path}")
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=LOAD_MS)
    settle(page, LOAD_MS)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(sidebar.get_by_text("Data & model", exact=True)).to_be_visible()
    assert_healthy(page)
    return page


def go_to(page: Page, title: str) -> None:
    """Open a page from the sidebar, in the same session (so the dataset chosen stays chosen)."""
    page.get_by_test_id("stSidebar").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=LOAD_MS)
    settle(page, LOAD_MS)


def metric_value(page: Page, label: str, exact: bool = False) -> Locator:
    """The value box of the st.metric whose label contains `label` (is `label`, when `exact`)."""
    label_box = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=exact)
    box = page.get_by_test_id("stMetric").filter(has=label_box)
    return box.get_by_test_id("stMetricValue")


def metric(page: Page, label: str, exact: bool = False) -> str:
    """The value shown by the st.metric whose label contains `label` (is `label`, when `exact`)."""
    return metric_value(page, label, exact).inner_text()


def keyed(page: Page, key: str) -> Locator:
    """The element drawn with `key=key` (Streamlit gives its container the class st-key-<key>)."""
    return page.locator(f".st-key-{key}")


def plotly_traces(chart: Locator) -> list[dict]:
    """Name and y values of every trace of the plotly chart inside `chart`, as drawn."""
    return chart.locator(".js-plotly-plot").evaluate(
        "el => el._fullData.map(t => ({name: t.name, y: Array.from(t.y || [])}))")


def slider(page: Page, label: str) -> Locator:
    """A slider's thumb (the range input behind it), found by the slider's label."""
    return page.get_by_role("group", name=label, exact=True).get_by_role("slider")


def nudge(page: Page, label: str, key: str = "ArrowRight", times: int = 1) -> str:
    """Move a slider with the keyboard; returns its new value's text once the app's rerun is over
    (read as soon as the value first changed, it could miss the last key presses: CI saw it one
    step short)."""
    thumb = slider(page, label)
    before = thumb.get_attribute("aria-valuetext")
    thumb.focus()
    for _ in range(times):
        thumb.press(key)
    expect(thumb).not_to_have_attribute("aria-valuetext", before or "", timeout=RUN_MS)
    settle(page)
    return thumb.get_attribute("aria-valuetext")


def screenshot(page: Page, name: str) -> Path:
    """The whole page, all of it, in test-results/screenshots/<name>.png. Streamlit scrolls inside
    its main pane, so the window is made as tall as that pane's content for the shot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.get_by_test_id("stMain").evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    try:
        page.wait_for_timeout(1000)        # charts and maps redraw at the new size
        settle(page)
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


def changed_screenshot(element: Locator, before: bytes, timeout_s: float = 20) -> bytes:
    """The element's screenshot once it differs from `before` (WebGL redraws a moment after the
    rerun), or the last one taken after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = element.screenshot()
        if after != before or time.monotonic() > deadline:
            return after
        time.sleep(0.5)


def node_marks(shot: bytes, cell: int = 12) -> list[tuple[float, float]]:
    """Where the map draws node outlines (its only near-black pixels), as (x, y) centres of
    `cell`-pixel groups, fullest first."""
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    ys, xs = np.nonzero(pixels.max(axis=2) < 70)
    groups = defaultdict(list)
    for x, y in zip(xs, ys):
        groups[x // cell, y // cell].append((x, y))
    return [tuple(np.mean(g, axis=0)) for g in sorted(groups.values(), key=len, reverse=True)]


def hover_other_node(page: Page, deck: Locator, shot: bytes, selected: str) -> tuple[str, float, float, str]:
    """Hover node marks until the tooltip names a node other than `selected`; returns that node's
    id, where it is, and the tooltip's text."""
    box = deck.bounding_box()
    tooltip = page.locator(".deck-tooltip")
    for x, y in node_marks(shot)[:20]:
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_timeout(500)
        if tooltip.count() and tooltip.first.is_visible():
            text = tooltip.first.inner_text()
            node_id = text.splitlines()[1].split(" · ")[0]
            if node_id != selected:
                return node_id, box["x"] + x, box["y"] + y, text
    pytest.fail("no node of the map showed a tooltip")


def click_node(page: Page, card: Locator, node_id: str, x: float, y: float) -> None:
    """Click the map at (x, y) until `card` names `node_id`: deck.gl drops a click now and then
    while a loaded CPU redraws the map."""
    for _ in range(3):
        page.mouse.click(x, y)
        try:
            expect(card).to_contain_text(f"· {node_id}", timeout=15_000)
            break
        except AssertionError:
            settle(page)
    expect(card).to_contain_text(f"· {node_id}")
