"""The session's forecast time, horizon and road carry across pages (issue 27): Streamlit drops a
widget's state on a run without its page, so they live in plain session keys (`ui.state`)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from stmgt.data.dataset import split_anchors
from stmgt.data.folder import write_folder
from stmgt.data.sources import EMBEDDED, load_dataset
from ui import state

ANCHOR, HORIZON, NODE = (state.widget_key(k) for k in (state.ANCHOR_KEY, state.HORIZON_KEY, state.NODE_KEY))
# Every page with a forecast time, and the Overview (without one), back and forth.
TOUR = ["views/what_if.py", "views/route.py", "views/forecast_map.py", "views/node_forecast.py",
        "views/overview.py", "views/interpretability.py", "views/what_if.py", "views/node_forecast.py",
        "views/forecast_map.py"]
HORIZON_PAGES = {"views/forecast_map.py", "views/node_forecast.py", "views/what_if.py"}
NODE_PAGES = {"views/node_forecast.py", "views/interpretability.py", "views/what_if.py"}


def test_time_road_and_horizon_stay_when_changing_pages(app):
    at = app("views/forecast_map.py")
    anchor = at.select_slider(key=ANCHOR)
    chosen_time = anchor.value - 9                  # anchors are step indices: neither the default nor the first
    anchor.set_value(chosen_time).run()
    at.select_slider(key=HORIZON).set_value(9).run()
    at.switch_page("views/node_forecast.py").run()
    at.selectbox(key=NODE).set_value("n17").run()
    chosen = {ANCHOR: chosen_time, HORIZON: 9, NODE: "n17"}
    for page in TOUR:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.message for e in at.exception])
        if page != "views/overview.py":
            assert at.select_slider(key=ANCHOR).value == chosen[ANCHOR], page
        if page in HORIZON_PAGES:
            assert at.select_slider(key=HORIZON).value == chosen[HORIZON], page
        if page in NODE_PAGES:
            assert at.selectbox(key=NODE).value == chosen[NODE], page
    assert (at.session_state[state.ANCHOR_KEY], at.session_state[state.HORIZON_KEY],
            at.session_state[state.NODE_KEY]) == (chosen[ANCHOR], chosen[HORIZON], chosen[NODE])


def test_a_road_or_horizon_the_page_cannot_show_falls_back_to_the_default(app):
    at = app("views/node_forecast.py", node_id="no-such-road", horizon=99, anchor=-1)
    assert at.selectbox(key=NODE).value == "n01"
    assert at.select_slider(key=HORIZON).value == state.DEFAULT_STEP
    assert at.select_slider(key=ANCHOR).value == app("views/node_forecast.py").select_slider(key=ANCHOR).value


def later_copy(workspace: Path, name: str, days: int) -> tuple[str, np.ndarray]:
    """The embedded data without its first `days` days, imported as `name`: the same clock times
    sit at other step indices, and the test period ends as the embedded one does. Its label in the
    sidebar and its test anchors."""
    data = load_dataset(EMBEDDED)
    cut = int(pd.Timedelta(days=days) / data.freq)
    copy = replace(data, timestamps=data.timestamps[cut:], speed=data.speed[cut:], weather=data.weather[cut:])
    write_folder(copy, workspace / "datasets" / name)
    return f"Imported: {name}", split_anchors(copy)["test"]


def time_shown(at) -> str:
    slider = at.select_slider(key=ANCHOR)
    return slider.format_func(slider.value)


def test_the_time_follows_the_clock_to_another_dataset_or_says_why_not(app, isolated_workspace):
    shifted, shifted_anchors = later_copy(isolated_workspace, "shifted", days=1)
    later, _ = later_copy(isolated_workspace, "later", days=14)
    at = app("views/node_forecast.py")
    chosen_step = at.select_slider(key=ANCHOR).value - 5
    at.select_slider(key=ANCHOR).set_value(chosen_step).run()
    chosen = time_shown(at)
    at.selectbox(key="dataset").set_value(shifted).run()
    assert not at.exception
    assert time_shown(at) == chosen                           # the same clock time, at another step index
    assert at.session_state[state.ANCHOR_KEY] != chosen_step

    at.select_slider(key=ANCHOR).set_value(int(shifted_anchors[0])).run()      # before the later copy's test period
    first = time_shown(at)
    at.selectbox(key="dataset").set_value(later).run()
    assert not at.exception
    assert time_shown(at) != first
    assert any("outside this dataset's test period" in c.value and first in c.value for c in at.caption)
