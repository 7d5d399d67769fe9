"""The Forecast quality page under AppTest, with the bundled model: the network figures are the
monitor's and move with the forecast time, a degraded copy of the data is flagged in words, a run
without a card says so, a live dataset's figures roll on as a step arrives, and the fine-tune link
opens the Train page with the model chosen. Forecast times near the test period's start keep the
windows short (and the tests fast)."""

import shutil

import numpy as np
import pandas as pd
import pytest

from stmgt.data.dataset import WEATHER_COLUMNS, TrafficDataset
from stmgt.data.folder import read_folder, write_folder
from stmgt.data.live import append_rows
from stmgt.data.simulate import simulate
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.quality import Monitor, read_card
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from ui import state
from ui.train_form import FINE_TUNE_LR, START_KEY

PAGE = "views/quality.py"
ANCHOR = state.widget_key(state.ANCHOR_KEY)
LATE = 20                   # steps into the test period the forecast time sits
MINUTES = [15 * k for k in range(1, 13)]     # the bundled model's horizon


def network(at) -> pd.DataFrame:
    (table,) = at.table
    return table.value


@pytest.fixture(scope="module")
def embedded() -> Monitor:
    """The monitor of the bundled model on the embedded data."""
    data = load_dataset(dict(EMBEDDED))
    return Monitor(Forecaster(Run(BUNDLED_RUN).load(data.graph), data))


def test_the_network_figures_are_the_monitors_and_move_with_the_forecast_time(app, embedded):
    monitor = embedded
    now = monitor.first_anchor + LATE
    at = app(PAGE, anchor=now)
    assert [s.value for s in at.subheader][:1] == ["Network figures"]
    figures = network(at)
    assert list(figures.columns) == ["Last 24 h", "Last 7 days", "Test (model card)"]
    expected = monitor.assess(now, read_card(Run(BUNDLED_RUN), MINUTES))
    assert figures.loc["STMGT MAE (km/h)", "Last 24 h"] == f"{expected.windows[0].network.pooled('mae')[0]:.2f}"
    assert figures.loc["Forecasts scored", "Last 24 h"] == str(len(expected.windows[0].window.anchors))
    assert figures.loc["STMGT MAE (km/h)", "Test (model card)"] == f"{expected.card.pooled('mae'):.2f}"
    before = len(expected.windows[0].window.anchors)
    at.select_slider(key=ANCHOR).set_value(now + 4).run()                   # an hour later: one more forecast
    assert not at.exception, [e.message for e in at.exception]
    moved = network(at)
    assert moved.loc["Forecasts scored", "Last 24 h"] == str(before + 1)
    later = monitor.assess(now + 4, expected.card).windows[0].network
    assert moved.loc["STMGT CRPS (km/h)", "Last 24 h"] == f"{later.pooled('crps')[0]:.2f}"
    scores = ["STMGT MAE (km/h)", "STMGT CRPS (km/h)", "Persistence MAE (km/h)", "80 % interval coverage"]
    assert (moved.loc[scores, "Last 24 h"] != figures.loc[scores, "Last 24 h"]).any()
    assert moved.loc["STMGT MAE (km/h)", "Test (model card)"] == figures.loc["STMGT MAE (km/h)", "Test (model card)"]


@pytest.fixture(scope="module")
def recording() -> TrafficDataset:
    """Two simulated weeks of the embedded graph (seed 1), which the bundled model reads."""
    return simulate(weeks=2, seed=1)


def test_a_degraded_copy_of_the_data_is_flagged(app, isolated_workspace):
    """Speeds 40 % lower and noisier from the test period on: the forecasts miss, and the page says so
    for the network and, six days in (a road needs more than a day's forecasts to be judged), roads."""
    recording = simulate(weeks=8, seed=1)
    test = recording.splits()["test"]
    speed = recording.speed.copy()
    rng = np.random.default_rng(0)
    speed[test.start:] = 0.6 * speed[test.start:] + rng.normal(0, 4, speed[test.start:].shape)
    write_folder(TrafficDataset(recording.timestamps, speed.clip(1), recording.weather, recording.graph,
                                {"source": "degraded copy"}), isolated_workspace / "datasets" / "degraded")
    at = app(PAGE, dataset=state.imported_label("degraded"), anchor=test.start + 6 * 96)
    flags = [w.value for w in at.warning]
    for window in ("24 h", "7 days"):
        assert any(f.startswith("**Network**") and "held" in f and f"last {window}, below 70 %: too narrow" in f
                   for f in flags), flags
        assert any(f.startswith("**Network**") and f"MAE in the last {window}" in f for f in flags), flags
    assert any("roads** flagged in the last 7 days" in f for f in flags), flags
    at.segmented_control(key="quality_road_window").set_value("7 days").run()
    roads = at.dataframe[-1].value
    assert roads["flags"].iloc[0] != "" and not at.success
    assert any("not of dataset degraded" in i.value for i in at.info)      # the card was scored elsewhere


def test_a_run_without_test_figures_says_so(app, isolated_workspace, embedded):
    run = isolated_workspace / "runs" / "nocard"
    run.mkdir(parents=True)
    for name in ("checkpoint.pt", "config.json", "status.json"):
        shutil.copy(BUNDLED_RUN / name, run / name)
    at = app(PAGE, model="Run: nocard", anchor=embedded.first_anchor + 8)
    assert any("no test figures yet" in i.value for i in at.info)
    assert set(network(at)["Test (model card)"]) == {"—"}


def live_feed(workspace, recording: TrafficDataset, arrived: int):
    """A live dataset in the workspace holding `recording`'s first `arrived` steps, its test period open."""
    splits, times = recording.splits(), recording.timestamps
    recorded = {name: [r.start, r.stop] for name, r in splits.items()} | {"test": [splits["test"].start, None]}
    provenance = {"source": "test feed", "splits": recorded,
                  "live": {"newest": times[arrived - 1].isoformat(), "started": times[recorded["test"][0]].isoformat()}}
    return write_folder(TrafficDataset(times[:arrived], recording.speed[:arrived], recording.weather[:arrived],
                                       recording.graph, provenance), workspace / "datasets" / "feed")


def test_a_live_datasets_figures_roll_on_as_a_step_arrives(app, isolated_workspace, recording):
    arrived = recording.splits()["test"].start + LATE
    times = recording.timestamps
    folder = live_feed(isolated_workspace, recording, arrived)
    at = app(PAGE, dataset=state.imported_label("feed"))
    assert at.select_slider(key=ANCHOR).value == arrived - 1                 # now: the newest step
    before = network(at)
    rows = pd.DataFrame(recording.speed[arrived:arrived + 1], index=times[arrived:arrived + 1],
                        columns=recording.graph.node_ids)
    rows[WEATHER_COLUMNS] = recording.weather[arrived:arrived + 1]
    assert append_rows(folder, rows) == 1
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    after = network(at)
    assert at.select_slider(key=ANCHOR).value == arrived
    assert int(after.loc["Speeds scored", "Last 24 h"].replace(",", "")) > \
        int(before.loc["Speeds scored", "Last 24 h"].replace(",", ""))         # the new step's truth counts
    grown = read_folder(folder)
    monitor = Monitor(Forecaster(Run(BUNDLED_RUN).load(grown.graph), grown))
    network_now = monitor.assess(arrived, read_card(Run(BUNDLED_RUN), MINUTES)).windows[0].network
    assert after.loc["STMGT CRPS (km/h)", "Last 24 h"] == f"{network_now.pooled('crps')[0]:.2f}"


def test_the_fine_tune_link_opens_train_with_the_model_chosen(app, embedded):
    at = app(PAGE, anchor=embedded.first_anchor + 8)
    at.button(key="quality_fine_tune").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key=START_KEY).value == state.BUNDLED_LABEL
    assert at.session_state["train_lr"] == FINE_TUNE_LR                    # the rate a fine-tune starts from


def test_a_time_with_no_truth_yet_and_data_without_weather_say_so(app, isolated_workspace, recording):
    test = recording.splits()["test"]
    live_feed(isolated_workspace, recording, test.start + LATE)
    at = app(PAGE, dataset=state.imported_label("feed"))
    at.select_slider(key=ANCHOR).set_value(test.start).run()                 # the feed's first forecast time
    assert not at.exception and not at.table
    assert any("has any truth yet" in i.value for i in at.info)
    write_folder(TrafficDataset(recording.timestamps, recording.speed, None, recording.graph, {"source": "test"}),
                 isolated_workspace / "datasets" / "dry")
    at = app(PAGE, dataset=state.imported_label("dry"))
    assert any("this dataset has no weather" in e.value for e in at.error) and not at.table
