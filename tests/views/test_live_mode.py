"""Live mode (issue 30) under AppTest: on a live dataset that grows, pages open at its newest step
("now") and follow each new one, stay where the analyst scrubbed back to, return with "Back to
now", keep the forecasts an append does not reach cached, and say how old the data is; a dataset
that is not live gets none of it."""

import gc
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

import stmgt.forecasting.forecast
from stmgt.data.dataset import WEATHER_COLUMNS, TrafficDataset
from stmgt.data.folder import write_folder
from stmgt.data.live import append_rows
from stmgt.data.simulate import simulate
from ui import state

NAME = "feed"
LABEL = f"Imported: {NAME}"
ANCHOR = state.widget_key(state.ANCHOR_KEY)
LIVE_STEPS = 30             # steps of the test period already arrived when the page opens


@pytest.fixture(scope="module")
def recording() -> TrafficDataset:
    """Two simulated weeks (seed 1): the recording a live dataset plays."""
    return simulate(weeks=2, seed=1)


class Feed:
    """A live dataset in the workspace playing `recording` from its test period's start, one step
    at a time, through `append_rows` as any collector would."""

    def __init__(self, workspace: Path, recording: TrafficDataset, shift: pd.Timedelta = pd.Timedelta(0),
                 provenance: dict | None = None):
        self.folder = workspace / "datasets" / NAME
        self.recording = replace(recording, timestamps=recording.timestamps + shift)
        splits = recording.splits()
        self.next = splits["test"].start + LIVE_STEPS
        times = self.recording.timestamps
        recorded = {name: [r.start, r.stop] for name, r in splits.items()} | {"test": [splits["test"].start, None]}
        provenance = {**(provenance or {}), "source": "test feed", "splits": recorded,
                      "live": {"newest": times[self.next - 1].isoformat(),
                               "started": times[splits["test"].start].isoformat()}}
        r = self.recording
        write_folder(TrafficDataset(times[:self.next], r.speed[:self.next], r.weather[:self.next], r.graph,
                                    provenance), self.folder)

    @property
    def now(self) -> int:
        """The newest step's index."""
        return self.next - 1

    def append(self) -> None:
        r, t = self.recording, self.next
        rows = pd.DataFrame(r.speed[t:t + 1], index=r.timestamps[t:t + 1], columns=r.graph.node_ids)
        rows[WEATHER_COLUMNS] = r.weather[t:t + 1]
        assert append_rows(self.folder, rows) == 1
        self.next += 1


def count_forecasts(monkeypatch) -> list[int]:
    """The anchors the model forecasts from (the pages' cache misses) from now on."""
    calls, forecast = [], stmgt.forecasting.forecast.Forecaster.forecast
    monkeypatch.setattr(stmgt.forecasting.forecast.Forecaster, "forecast",
                        lambda self, anchors, *a, **k: calls.append(int(anchors)) or forecast(self, anchors, *a, **k))
    return calls


def time_shown(at) -> str:
    slider = at.select_slider(key=ANCHOR)
    return slider.format_func(slider.value)


def live_badge(at) -> list[str]:
    return [m.value for m in at.sidebar.markdown if "-badge[" in m.value and "Live" in m.value]


def live_caption(at) -> str:
    return next(c.value for c in at.sidebar.caption if c.value.startswith("Newest step"))


def back_to_now(at):
    buttons = [b for b in at.button if b.key == state.BACK_TO_NOW_KEY]
    return buttons[0] if buttons else None


def test_a_page_opens_at_now_and_follows_each_new_step(app, isolated_workspace, recording):
    feed = Feed(isolated_workspace, recording)
    at = app("views/forecast_map.py", dataset=LABEL)
    assert at.select_slider(key=ANCHOR).value == feed.now
    assert time_shown(at).endswith(" · now")
    assert live_badge(at)
    newest = feed.recording.timestamps[feed.now]
    assert f"Newest step {newest:%a %d %b %Y %H:%M}" in live_caption(at)
    assert back_to_now(at) is None
    for _ in range(2):
        feed.append()
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert at.select_slider(key=ANCHOR).value == feed.now
        assert time_shown(at) == f"{feed.recording.timestamps[feed.now]:%a %d %b %H:%M} · now"
    # The slider offers every step of the test period through now, so the analyst can scrub back.
    options = at.select_slider(key=ANCHOR).options
    assert len(options) == LIVE_STEPS + 2 and options[-1] == time_shown(at)
    assert options[0] == f"{feed.recording.timestamps[recording.splits()['test'].start]:%a %d %b %H:%M}"


def test_a_scrubbed_back_time_stays_and_back_to_now_returns(app, isolated_workspace, recording):
    feed = Feed(isolated_workspace, recording)
    at = app("views/node_forecast.py", dataset=LABEL)
    earlier = feed.now - 3
    at.select_slider(key=ANCHOR).set_value(earlier).run()
    feed.append()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.select_slider(key=ANCHOR).value == earlier            # the analyst's time, not the new now
    assert not time_shown(at).endswith("now")
    back_to_now(at).click().run()
    assert at.select_slider(key=ANCHOR).value == feed.now
    assert back_to_now(at) is None
    feed.append()
    at.run()
    assert at.select_slider(key=ANCHOR).value == feed.now           # following again


def test_a_scrubbed_back_time_stays_across_pages_and_another_dataset_returns_to_now(app, isolated_workspace,
                                                                                    recording):
    feed = Feed(isolated_workspace, recording)
    at = app("views/node_forecast.py", dataset=LABEL)
    earlier = feed.now - 5
    at.select_slider(key=ANCHOR).set_value(earlier).run()
    feed.append()
    at.switch_page("views/forecast_map.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.select_slider(key=ANCHOR).value == earlier and back_to_now(at) is not None
    at.selectbox(key=state.DATASET_KEY).set_value(state.EMBEDDED_LABEL).run()
    assert not live_badge(at) and back_to_now(at) is None
    at.selectbox(key=state.DATASET_KEY).set_value(LABEL).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.select_slider(key=ANCHOR).value == feed.now               # back on the feed: at now


def test_a_new_step_recomputes_only_the_forecasts_that_reach_it(app, isolated_workspace, recording, monkeypatch):
    feed = Feed(isolated_workspace, recording)
    at = app("views/node_forecast.py", dataset=LABEL)
    old_now = feed.now
    settled = old_now - 20                                          # its horizon ends before now
    at.select_slider(key=ANCHOR).set_value(settled).run()
    at.select_slider(key=ANCHOR).set_value(old_now).run()
    calls = count_forecasts(monkeypatch)
    feed.append()
    at.run()                                                        # follows to the new now
    at.select_slider(key=ANCHOR).set_value(settled).run()
    at.select_slider(key=ANCHOR).set_value(old_now).run()
    assert not at.exception, [e.message for e in at.exception]
    assert calls == [feed.now, old_now], "only the new now and the forecast the new step reaches are made again"


def test_the_age_is_against_the_wall_clock(app, isolated_workspace, recording):
    newest = pd.Timestamp.now(tz="UTC").floor("15min") - pd.Timedelta(minutes=15)
    Feed(isolated_workspace, recording, shift=newest - recording.timestamps[recording.splits()["test"].start
                                                                            + LIVE_STEPS - 1])
    at = app("views/node_forecast.py", dataset=LABEL)
    caption = live_caption(at)
    assert re.search(r" · \d+ min ago\.", caption) and "behind the clock" not in caption, caption


def test_a_feed_of_past_weeks_says_how_old_it_is(app, isolated_workspace, recording):
    Feed(isolated_workspace, recording)                 # simulated weeks of 2025: long before the wall clock
    at = app("views/overview.py", dataset=LABEL)
    caption = live_caption(at)
    days = (pd.Timestamp.now(tz="UTC") - recording.timestamps[recording.splits()["test"].start + LIVE_STEPS - 1]).days
    assert f" · {days} days ago." in caption or f" · {days + 1} days ago." in caption, caption
    assert "behind the clock" in caption and "replay" not in caption
    assert live_badge(at) and "orange-badge" in live_badge(at)[0]


def test_a_replay_says_it_is_one(app, isolated_workspace, recording):
    Feed(isolated_workspace, recording, provenance={state.REPLAY_MARK: {"kind": "simulator", "seed": 1}})
    at = app("views/overview.py", dataset=LABEL)
    assert "A replay of recorded data" in live_caption(at)
    assert "Live · replay" in live_badge(at)[0]


def test_a_dataset_that_is_not_live_gets_no_live_mode(app):
    at = app("views/forecast_map.py")
    assert not live_badge(at)
    assert not any(c.value.startswith("Newest step") for c in at.sidebar.caption)
    assert not time_shown(at).endswith("now")
    at.select_slider(key=ANCHOR).set_value(at.select_slider(key=ANCHOR).value - 4).run()
    assert back_to_now(at) is None


@pytest.mark.parametrize("age, words", [
    (pd.Timedelta(seconds=20), "just now"), (pd.Timedelta(minutes=2, seconds=50), "2 min ago"),
    (pd.Timedelta(hours=3, minutes=5), "3 h 5 min ago"), (pd.Timedelta(hours=2), "2 h ago"),
    (pd.Timedelta(days=1, hours=1), "1 day ago"), (pd.Timedelta(days=468), "468 days ago"),
    (-pd.Timedelta(minutes=30), "30 min ahead of this machine's clock")])
def test_data_age_in_words(age, words):
    assert state.data_age(age) == words


def test_old_versions_of_a_growing_dataset_do_not_pile_up(app, isolated_workspace, recording):
    feed = Feed(isolated_workspace, recording)
    at = app("views/node_forecast.py", dataset=LABEL)
    for _ in range(6):
        feed.append()
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    gc.collect()
    versions = [o for o in gc.get_objects()
                if type(o) is TrafficDataset and o.provenance.get("source") == "test feed"]
    assert len(versions) <= 4, [v.num_steps for v in versions]
