"""Live mode in a real browser (issue 30): a feed replayed into the workspace (`stmgt replay`) drives
the dashboard. Rows appended with `stmgt ingest` appear on the open Forecast map as the new "now"
without a reload; a time scrubbed back stays while steps arrive, and "Back to now" returns."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from e2e_helpers import LOAD_MS, RUN_MS, assert_healthy, nudge, settle, slider
from playwright.sync_api import Page, expect

from stmgt.data.dataset import WEATHER_COLUMNS
from stmgt.data.live import newest_step
from stmgt.data.sources import load_dataset, parse_data_arg
from tests.e2e.conftest import ROOT, serve

# pytest-playwright 0.10 defines its base_url fixture in a way pytest 9 warns about; not ours to fix.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]

DATA = "sim:seed=1"             # weeks the bundled model never trained on
FEED = "live"
TIME = "Forecast made at"
COMMAND_S = 300


def stmgt(*args: str) -> None:
    """Run the `stmgt` command as a collector of the user's would."""
    done = subprocess.run([sys.executable, "-m", "stmgt", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=COMMAND_S)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def live_dashboard(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The dashboard on a workspace holding a feed replayed for two steps; its URL and the feed's folder."""
    root = tmp_path_factory.mktemp("live")
    folder = root / "workspace" / "datasets" / FEED
    stmgt("replay", "--data", DATA, "--into", str(folder), "--speed", "0", "--steps", "2")
    with serve(root / "workspace", root / "streamlit.log") as url:
        yield url, folder


@pytest.fixture(scope="module")
def recording():
    return load_dataset(parse_data_arg(DATA))


def ingest_next_step(folder: Path, recording, rows: Path) -> pd.Timestamp:
    """Append the recording's step after the feed's newest with `stmgt ingest`; its time."""
    t = recording.timestamps.get_loc(newest_step(folder)) + 1
    frame = recording.speed_frame().iloc[t:t + 1].join(recording.weather_frame().iloc[t:t + 1][WEATHER_COLUMNS])
    frame.insert(0, "timestamp", [recording.timestamps[t].isoformat()])
    frame.to_csv(rows, index=False)
    stmgt("ingest", "--data", str(folder), "--rows", str(rows))
    return recording.timestamps[t]


def now_label(when: pd.Timestamp) -> str:
    return f"{when:%a %d %b %H:%M} · now"


def test_new_steps_appear_on_the_open_page_without_a_reload(page: Page, live_dashboard, recording, tmp_path):
    url, folder = live_dashboard
    page.goto(f"{url}/forecast_map")
    expect(page.get_by_role("heading", name="Forecast map", exact=True)).to_be_visible(timeout=LOAD_MS)
    settle(page, LOAD_MS)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name=f"Imported: {FEED}", exact=True).click()
    newest = newest_step(folder)
    expect(slider(page, TIME)).to_have_attribute("aria-valuetext", now_label(newest), timeout=LOAD_MS)
    expect(sidebar).to_contain_text("Live · replay")
    expect(sidebar).to_contain_text(f"Newest step {newest:%a %d %b %Y %H:%M}")
    settle(page, LOAD_MS)
    assert_healthy(page)
    page.evaluate("window.stmgtNoReload = true")            # gone if the page reloads

    new = ingest_next_step(folder, recording, tmp_path / "rows.csv")
    expect(slider(page, TIME)).to_have_attribute("aria-valuetext", now_label(new), timeout=RUN_MS)
    expect(sidebar).to_contain_text(f"Newest step {new:%a %d %b %Y %H:%M}", timeout=RUN_MS)
    delta = page.get_by_test_id("stMetric").filter(has_text="Network median speed").get_by_test_id("stMetricDelta")
    expect(delta).to_contain_text(f"vs {new:%H:%M}", timeout=RUN_MS)     # the forecast made at the new step
    expect(page.get_by_role("button", name="Back to now")).to_have_count(0)

    scrubbed = nudge(page, TIME, "ArrowLeft")               # back one step: the analyst looks at the past
    settle(page)
    newer = ingest_next_step(folder, recording, tmp_path / "rows.csv")
    expect(sidebar).to_contain_text(f"Newest step {newer:%a %d %b %Y %H:%M}", timeout=RUN_MS)
    settle(page)
    expect(slider(page, TIME)).to_have_attribute("aria-valuetext", scrubbed)
    page.get_by_role("button", name="Back to now").click()
    expect(slider(page, TIME)).to_have_attribute("aria-valuetext", now_label(newer), timeout=RUN_MS)
    settle(page)
    assert_healthy(page)
    assert page.evaluate("window.stmgtNoReload === true"), "the page reloaded"
