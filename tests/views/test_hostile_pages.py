"""Every page, under AppTest, on a dataset and model whose ids, names, road names and folder names are
hostile (tests/hostile_data.py): all text Streamlit renders as Markdown (bodies, labels, help,
metric deltas, radio options, tabs, expanders) reads literally, st.html and plotly text carry no
payload tag, map tooltip templates hold no user text (Streamlit escapes the values it fills in), and
select box options (plain text) no newline or bidi override.
The real browser's view of the same is tests/e2e/test_hostile_data.py."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import APP, APP_TIMEOUT
from tests.hostile_data import (DATASET_LABEL, DATASET_NAME, NEVER_RAW, PAYLOADS, RUN_NAME, html_dangers,
                                hostile_workspace, markdown_dangers)
from ui.text import html, md

PAGES = ["views/overview.py", "views/forecast_map.py", "views/node_forecast.py", "views/alerts.py", "views/route.py",
         "views/interpretability.py", "views/what_if.py", "views/train.py", "views/evaluation.py", "views/data.py",
         "views/quality.py"]
MARKDOWN_BODIES = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success",
                   "toast"}
MARKDOWN_OPTIONS = {"radio"}                    # select boxes, sliders and tables show theirs as plain text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "workspace"
    hostile_workspace(root)
    return root


def fields(proto, *names) -> list[str]:
    return [getattr(proto, n) for n in names if n in proto.DESCRIPTOR.fields_by_name and getattr(proto, n)]


def markdown_sources(at: AppTest) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown."""
    found = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if proto is None or not hasattr(proto, "DESCRIPTOR"):
            continue
        if node.type in MARKDOWN_BODIES:
            found += fields(proto, "body")
        found += fields(proto, "label", "help", "delta")            # widgets, metrics, tabs, expanders
        if node.type in MARKDOWN_OPTIONS:
            found += list(proto.options)
        if node.type == "button_group":
            found += [option.content for option in proto.options]
    return found


def strings(value) -> list[str]:
    """Every string inside decoded JSON."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def html_sources(at: AppTest) -> list[str]:
    """st.html bodies, every string of every plotly figure, and every map's tooltip template."""
    found = [h.proto.body for h in at.get("html")]
    found += [s for chart in at.get("plotly_chart") for s in strings(json.loads(chart.proto.spec))]
    return found + [json.loads(deck.proto.tooltip)["html"] for deck in at.get("deck_gl_json_chart")
                    if deck.proto.tooltip]


@pytest.mark.slow
def test_every_page_shows_hostile_names_as_text(workspace, monkeypatch):
    monkeypatch.setenv("STMGT_WORKSPACE", str(workspace))
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.session_state["dataset"] = DATASET_LABEL
    problems, shown = {}, []
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.message for e in at.exception])
        markdown, markup = markdown_sources(at), html_sources(at)
        found = [d for source in markdown for d in markdown_dangers(source)]
        found += [d for source in markup for d in html_dangers(source)]
        templates = [json.loads(d.proto.tooltip)["html"] for d in at.get("deck_gl_json_chart") if d.proto.tooltip]
        found += [p for t in templates for p in PAYLOADS if p in t]
        found += [option for node in at._tree if node.type in ("selectbox", "multiselect")
                  for option in node.proto.options if any(piece in option for piece in NEVER_RAW)]
        if found:
            problems[page] = found
        shown += markdown + markup
    assert problems == {}
    # The hostile text was on the pages, escaped: the selected node, the dataset's and the run's names.
    for expected in (md(PAYLOADS[0]), md(DATASET_NAME), md(RUN_NAME), html(PAYLOADS[0])):
        assert any(expected in source for source in shown), expected
