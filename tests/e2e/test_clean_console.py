"""Every page, at 800, 1024 and 1440 px, leaves the browser's console without an error
and asks no other host for anything (icons, fonts and map styles are served by the dashboard itself
while street tiles are off)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from e2e_helpers import assert_healthy, go_to, open_page
from playwright.sync_api import ConsoleMessage, Page

from ui import pages

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]
DRAW_MS = 1500          # maps and charts draw after the page settles


WIDTHS = [800, 1024, 1440]     # each page is drawn at each width in turn: a resize redraws maps and charts


def test_no_console_error_and_no_other_host_on_any_page(page: Page, dashboard: str):
    errors: list[str] = []
    elsewhere: list[str] = []
    home = urlsplit(dashboard).netloc

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" or message.text.lower().startswith("deck"):
            errors.append(f"{message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("request", lambda request: urlsplit(request.url).netloc in (home, "")
            or request.url.startswith(("data:", "blob:")) or elsewhere.append(request.url))
    page.set_viewport_size({"width": WIDTHS[0], "height": 1000})

    open_page(page, dashboard, "", pages.OVERVIEW.title)
    by_page = {}
    for target in pages.ALL:
        go_to(page, target.title)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(DRAW_MS)
            assert_healthy(page)
            if errors:
                by_page[f"{target.title} at {width} px"], errors[:] = list(errors), []
        page.set_viewport_size({"width": WIDTHS[0], "height": 1000})

    assert by_page == {}, f"console errors: {by_page}"
    assert elsewhere == [], f"requests to other hosts: {elsewhere}"
