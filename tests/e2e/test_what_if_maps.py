"""The What-if page's two maps, model and simulator, side by side: level, the same size and the
same view, at a wide and a narrow window, however their captions wrap."""

from __future__ import annotations

import pytest
from e2e_helpers import LOAD_MS, open_page, settle
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]


@pytest.mark.parametrize("width", [1440, 800])
def test_the_two_change_maps_are_aligned(page: Page, dashboard: str, width: int):
    page.set_viewport_size({"width": width, "height": 1000})
    open_page(page, dashboard, "what_if", "Weather what-if")
    maps = page.get_by_test_id("stDeckGlJsonChart")
    expect(maps).to_have_count(2, timeout=LOAD_MS)
    settle(page)
    model, truth = (maps.nth(i).bounding_box() for i in range(2))
    assert abs(model["y"] - truth["y"]) <= 1, (model, truth)
    assert abs(model["height"] - truth["height"]) <= 1 and abs(model["width"] - truth["width"]) <= 1
    assert model["x"] + model["width"] <= truth["x"]                          # beside, not under
