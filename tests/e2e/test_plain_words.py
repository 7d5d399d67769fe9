"""In a real browser: the Interpretability page's sentence and glossary, and the Data page's
column list and template download (a .zip of the folder format, made when the button is pressed)."""

from __future__ import annotations

import io
import zipfile

import pytest
from e2e_helpers import LOAD_MS, open_page, screenshot
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]


def test_interpretability_says_it_in_plain_words(page: Page, dashboard: str):
    open_page(page, dashboard, "interpretability", "Interpretability")
    sentence = page.get_by_test_id("stMarkdownContainer").filter(has_text="listens most to").first
    expect(sentence).to_contain_text("gate α =")
    page.get_by_test_id("stExpander").filter(has_text="What these words mean").locator("summary").click()
    for term in ("Block", "Gate α", "GATv2", "Head", "Query / key step"):
        expect(page.get_by_test_id("stExpander").get_by_text(term, exact=True)).to_be_visible()
    screenshot(page, "interpretability_glossary")


def test_data_page_lists_the_columns_and_hands_out_a_template(page: Page, dashboard: str):
    open_page(page, dashboard, "data", "Data")
    guide = page.get_by_test_id("stExpander").filter(has_text="Files and columns a dataset folder needs")
    guide.locator("summary").click()
    table = guide.get_by_test_id("stTable")
    for column in ("node_id", "source", "target", "timestamp", "precipitation_mm"):
        expect(table.get_by_text(column, exact=True).first).to_be_visible()
    with page.expect_download(timeout=LOAD_MS) as download:
        guide.get_by_role("button", name="Download a template (.zip)").click()
    archive = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))
    names = {name.split("/")[-1] for name in archive.namelist()}
    assert {"nodes.csv", "edges.csv", "speed.csv", "weather.csv"} <= names
    screenshot(page, "data_columns")
