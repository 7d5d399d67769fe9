"""Alerts page under AppTest: it renders with the bundled model on the embedded data; a crafted
incident (a road and its neighbours at a crawl before the forecast time) is a current alert on the
map and in the table, with its road, start and the data's own speeds; a new false-alarm rate
changes the threshold without a new forecast; the exports hold the window's alerts; and data too
short for alerts, or a model without weather, says so in words (a model forecasting too few steps
ahead is refused by the same path: tests/operations/test_alerts.py)."""

import io
import json
import shutil
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from stmgt.data.folder import write_folder
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.alerts import ALERT_COLUMNS, neighbour_matrix
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.exports import restored
from stmgt.storage.runs import Run
from tests.conftest import APP, APP_TIMEOUT
from tests.samples import count_scored_steps
from tests.hostile_data import (DATASET_LABEL, DATASET_NAME, NEVER_RAW, PAYLOADS, hostile_graph,
                                hostile_workspace, html_dangers, markdown_dangers)
from tests.views.page_helpers import deck_layers, table, tiny_run
from ui.alerts import PREPARE_THREAD
from ui.text import md

pytestmark = pytest.mark.slow            # the bundled model's first calibration on the embedded data
PAGE = "views/alerts.py"
CURRENT = "alerts_current"
ROAD = "n20"
TIME = "%a %d %b %H:%M"


@pytest.fixture(scope="module")
def embedded():
    return load_dataset(EMBEDDED)


@pytest.fixture(scope="module")
def anchor(embedded) -> int:
    """A forecast time in the middle of the test period (a step index)."""
    anchors = Forecaster(Run(BUNDLED_RUN).load(), embedded).test_anchors()
    return int(anchors[len(anchors) // 2])


@pytest.fixture(scope="module")
def no_weather_run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("runs") / "dry", use_weather=False)


def ready(at):
    """The page once its background calibration and scoring are done (in the browser it refreshes
    itself; AppTest runs it again)."""
    for thread in threading.enumerate():
        if thread.name == PREPARE_THREAD:
            thread.join()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def nodes(at) -> pd.DataFrame:
    layer = next(v for k, v in deck_layers(at).items() if k.startswith("nodes"))
    return pd.DataFrame(layer["data"]).set_index("node_id")


def test_renders_with_the_bundled_model_on_the_embedded_data(app, embedded, anchor):
    at = ready(app(PAGE, anchor=anchor))
    assert not at.error
    assert [s.value for s in at.subheader][:2] == ["Current alerts", "History"]
    threshold = float(metric(at, "Threshold"))
    assert threshold > 0
    caption = next(c.value for c in at.caption if "validation days" in c.value)
    val = embedded.splits()["val"]
    assert f"{embedded.timestamps[val.stop - 1]:%d %b %Y}" in caption and "At 1 false alarm(s) per day" in caption
    noise = float(caption.split("raises ")[1].split(" per day")[0])
    assert noise <= 1.0                                        # the rate asked is an upper bound there
    frame = nodes(at)
    assert len(frame) == 62 and set(frame["status"].str.split(" ").str[0]) <= {"No", "In", "Alert"}
    tooltip = json.loads(at.get("deck_gl_json_chart")[0].proto.tooltip)["html"]
    assert "{status}" in tooltip and "observed <b>{observed} km/h</b>, expected {expected} km/h" in tooltip
    # Roads without an alert show the speed observed at the forecast time, the data's own.
    quiet = frame[frame["status"] == "No alert"]
    observed = embedded.speed[anchor, [embedded.graph.index_of[n] for n in quiet.index]]
    np.testing.assert_allclose(quiet["observed"].astype(float), np.round(observed, 1), equal_nan=True)
    assert int(metric(at, "Current alerts")) == (frame["status"].str.startswith("In alert")).sum()


def crawl(embedded, anchor: int):
    """The embedded data with ROAD and its neighbours at a tenth of their speed over the forecast
    time and the two steps before it: an incident the forecasts could not see coming."""
    graph = embedded.graph
    road = graph.index_of[ROAD]
    roads = [road, *np.flatnonzero(neighbour_matrix(embedded)[road])]
    speed = embedded.speed.copy()
    speed[anchor - 2:anchor + 1, roads] *= 0.1
    return replace(embedded, speed=speed), [graph.node_ids[i] for i in roads]


def test_a_crafted_incident_is_a_current_alert_on_the_map_and_in_the_table(app, isolated_workspace, embedded,
                                                                           anchor, monkeypatch):
    data, roads = crawl(embedded, anchor)
    write_folder(data, isolated_workspace / "datasets" / "crawl")
    at = ready(app(PAGE, dataset="Imported: crawl", anchor=anchor, node_id="n01"))
    assert not at.error
    current = table(at, CURRENT).value.set_index("node_id")
    times = data.timestamps
    assert ROAD in current.index
    row = current.loc[ROAD]
    assert row["name"] == data.graph.names[ROAD]
    assert row["since"] == f"{times[anchor - 2]:{TIME}}" and row["lasted"] == "45 min"
    crawling = data.speed[anchor - 2:anchor + 1, data.graph.index_of[ROAD]]
    assert np.isclose(crawling, row["peak_observed_kmh"], atol=0.01).any()         # the data's own speed
    assert row["peak_observed_kmh"] < row["peak_expected_kmh"] / 3 and 0 < row["probability"] < 1e-3
    assert set(current.index) <= set(roads)                  # no alert elsewhere at this time
    assert int(metric(at, "Current alerts")) == len(current)
    frame = nodes(at)
    assert frame.loc[ROAD, "status"] == f"In alert since {times[anchor - 2]:{TIME}}"
    reds = frame.index[(frame[["r", "g", "b"]].to_numpy() == (215, 48, 39)).all(axis=1)]
    assert sorted(reds) == sorted(current.index)

    # Another rate: a new threshold from the same calibration, no new forecast.
    calls = count_scored_steps(monkeypatch)
    threshold = float(metric(at, "Threshold"))
    at.number_input(key="alerts_rate").set_value(10.0).run()
    assert not at.exception and calls == []
    assert float(metric(at, "Threshold")) < threshold
    assert ROAD in table(at, CURRENT).value["node_id"].tolist()


def test_the_exports_hold_every_alert_of_the_window(app, isolated_workspace, embedded, anchor, downloads,
                                                    no_weather_run):
    """A week's window (with the small model: quick to score), as tables and files. At 10 false
    alarms a day, so a barely trained model's week holds alerts whatever its random start."""
    shutil.copytree(no_weather_run, isolated_workspace / "runs" / "dry")
    at = app(PAGE, model="Run: dry", anchor=anchor)
    # A model's first visit calibrates in the background, the page saying so.
    assert any("Calibrating alerts on the validation split" in i.value for i in at.info)
    assert not at.get("deck_gl_json_chart") and not at.metric
    ready(at)
    assert at.get("deck_gl_json_chart")
    at.number_input(key="alerts_rate").set_value(10.0).run()
    at.segmented_control(key="alerts_window").set_value("Last 7 days").run()
    assert any(i.value.startswith("Scoring") for i in at.info)        # a week is more work
    ready(at)
    stamp = f"{embedded.timestamps[anchor]:%Y%m%dT%H%M}"
    csv = restored(pd.read_csv(io.BytesIO(downloads[f"alerts_{stamp}_7days.csv"]), dtype={"node_id": str}))
    report = json.loads(downloads[f"alerts_{stamp}_7days.json"])
    assert list(csv.columns) == [*ALERT_COLUMNS, "name", "current"] and len(csv) > 0
    assert csv["node_id"].tolist() == [r["node_id"] for r in report["alerts"]]
    assert int(metric(at, "Alerts, last 7 days")) == len(csv)
    assert int(metric(at, "Current alerts")) == csv["current"].sum()
    assert report["until"] == embedded.timestamps[anchor].isoformat() and report["false_alarms_per_day"] == 10.0
    ends = pd.to_datetime(csv["end"])
    assert (ends >= pd.Timestamp(report["since"])).all() and (ends <= embedded.timestamps[anchor]).all()
    assert pd.Timestamp(report["since"]) == embedded.timestamps[anchor] - pd.Timedelta(days=7) + embedded.freq
    # The history table (not keyed by a widget: it selects nothing) lists the alerts that cleared, latest first.
    history = [t.value for t in at.dataframe if not t.proto.id.endswith(CURRENT)]
    cleared = csv[~csv["current"]]
    if len(cleared):
        assert history[0]["node_id"].tolist() == cleared["node_id"].tolist()[::-1]
    else:
        assert not history
    assert {"CSV", "JSON"} == {b.label.split("(")[1].rstrip(")") for b in at.get("download_button")
                                if b.label.startswith("All alerts")}


def test_data_too_short_for_alerts_says_so(app, isolated_workspace, embedded):
    short = replace(embedded, timestamps=embedded.timestamps[:200], speed=embedded.speed[:200],
                    weather=embedded.weather[:200], provenance={"source": "a short feed"})
    write_folder(short, isolated_workspace / "datasets" / "short")
    at = app(PAGE, dataset="Imported: short")
    assert any("Alerts cannot be computed here" in e.value and "too short" in e.value for e in at.error)
    assert not at.get("deck_gl_json_chart")


def test_a_model_without_weather_says_what_that_means_for_alerts(app, isolated_workspace, no_weather_run):
    shutil.copytree(no_weather_run, isolated_workspace / "runs" / "dry")
    at = ready(app(PAGE, model="Run: dry"))
    assert any("does not read the weather" in i.value for i in at.info)
    assert [s.value for s in at.subheader][:2] == ["Current alerts", "History"]


def test_hostile_road_names_and_ids_read_as_text_once_alerts_are_drawn(tmp_path, monkeypatch):
    """The hostile-text test opens every page once, which here shows only the calibration under way;
    this one waits for the map, the tables and the exports, with ids, names and road names that
    are payloads, and finds every Markdown and HTML source of the page inert."""
    root = tmp_path / "workspace"
    hostile_workspace(root)
    monkeypatch.setenv("STMGT_WORKSPACE", str(root))
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.session_state["dataset"] = DATASET_LABEL
    at.session_state["alerts_rate"] = 50.0                     # alerts to show with a barely trained model
    at.run()
    at.switch_page(PAGE).run()
    ready(at)
    assert at.get("deck_gl_json_chart") and not at.error, [e.value for e in at.error]
    markdown = [e.value for kind in ("markdown", "caption", "info", "subheader") for e in at.get(kind)]
    markdown += [m.proto.help for m in at.metric] + [w.proto.help for w in at.get("number_input")]
    assert md(DATASET_NAME) in " ".join(markdown)
    assert [d for source in markdown for d in markdown_dangers(source)] == []
    assert [d for h in at.get("html") for d in html_dangers(h.proto.body)] == []
    tooltip = json.loads(at.get("deck_gl_json_chart")[0].proto.tooltip)["html"]
    assert not [p for p in PAYLOADS if p in tooltip]
    names = set(nodes(at)["name"])
    assert not [n for n in names if any(piece in n for piece in NEVER_RAW)]      # one line, bidi shown
    shown = pd.concat([t.value for t in at.dataframe])                            # table cells: as they are
    assert len(shown) and set(shown["node_id"]) <= set(hostile_graph().node_ids)
