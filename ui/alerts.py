"""The Alerts page's parts: the rate and window settings, the alerts up to the session's forecast
time (in live mode, the newest step), the map of roads in alert, the current alerts ranked, the
history and the exports. The calibration and the evidence live in one `EvidenceStore` per model,
cached for every session: a new rate only re-reads the threshold, and a new step scores only the
steps it adds."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from stmgt.data.dataset import TrafficDataset
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.alerts import (ALERT_COLUMNS, EVIDENCE_PIECE, LEADS, Calibration, EvidenceStore, alerts_until,
                                     calibration_steps, check_steps, data_digest, earliest_step)
from stmgt.storage.exports import csv_bytes
from ui import state
from ui.maps import basemap_toggle, road_map, rounded
from ui.ranked import road_table
from ui.text import md

RATE_KEY, WINDOW_KEY, MAP_KEY = "alerts_rate", "alerts_window", "alerts_map"
CURRENT_TABLE, HISTORY_TABLE = "alerts_current", "alerts_history"
WINDOWS = {"Last 24 h": pd.Timedelta(days=1), "Last 7 days": pd.Timedelta(days=7)}
DEFAULT_RATE = 1.0
CURRENT, EARLIER, QUIET = (215, 48, 39), (253, 174, 97), (198, 206, 216)     # map colours by alert state
STATES = [(CURRENT, "in alert now"), (EARLIER, "alerted earlier in the window"), (QUIET, "no alert")]
MAP_PX, MAP_SIZE = 640, (440, 440)     # the map's width, and the size its view fits the graph in (fits at 800 px)
TIME = "%a %d %b %H:%M"
BACKGROUND_STEPS = 2 * EVIDENCE_PIECE   # more steps to score than this go to a background job, the page waiting
PREPARE_THREAD = "stmgt-alerts"
POLL_S = 1.5
_jobs: dict[tuple, threading.Thread] = {}       # background jobs by the work they do, shared by every session
_failed: dict[tuple, Exception] = {}
_jobs_lock = threading.Lock()


@st.cache_resource(max_entries=8)
def _store(checkpoint: str, mtime: float, device: str) -> EvidenceStore:
    return EvidenceStore()


def store() -> EvidenceStore:
    """The selected model's store of calibrations and evidence, shared by every session."""
    checkpoint = state.current_model_choice().run.path / "checkpoint.pt"
    return _store(str(checkpoint), checkpoint.stat().st_mtime, state.device())


@dataclass(frozen=True)
class Watch:
    """The alerts of one window: every alert open in it (`alerts_until`'s columns plus the road's
    name), the window's steps, the threshold and its calibration."""

    alerts: pd.DataFrame
    first: int
    last: int
    label: str
    rate: float
    threshold: float
    calibration: Calibration

    @property
    def current(self) -> pd.DataFrame:
        return self.alerts[self.alerts["current"]]

    @property
    def history(self) -> pd.DataFrame:
        return self.alerts[~self.alerts["current"]]


def intro(forecaster: Forecaster) -> None:
    """What the page shows, and a word where the model cannot tell rain from an incident."""
    minutes = [int(h * forecaster.dataset.freq / pd.Timedelta(minutes=1)) for h in (LEADS[0], LEADS[-1])]
    st.caption(f"{md(state.dataset_label())} · {md(state.current_model_choice().label)}. An alert opens where a "
               f"road's observed speed is far below the forecasts made for it {minutes[0]} to {minutes[1]} minutes "
               "before, and its step before or a neighbour agrees; it clears when the speed is back within what was "
               "expected. Hover a road on the map.")
    if not forecaster.loaded.config.use_weather:
        st.info("This model does not read the weather, so a downpour's slowdown may raise alerts that a "
                "weather-aware model would have expected.")


def settings(forecaster: Forecaster) -> tuple[int, float, str]:
    """The time the alerts run up to, the false-alarm rate and the history window."""
    val_first, val_last = (forecaster.dataset.timestamps[s] for s in calibration_steps(forecaster))
    last = state.anchor_picker(forecaster, "Alerts up to")
    with st.container(horizontal=True, gap="large", vertical_alignment="bottom"):
        rate = st.number_input(
            "False alarms per day", min_value=0.05, max_value=100.0, value=DEFAULT_RATE, step=0.5, format="%g",
            key=RATE_KEY, width=170,
            help=f"How many alerts a day, over the whole network, you accept from noise alone. The threshold is "
                 f"calibrated on the validation split ({val_first:%d %b %Y} – {val_last:%d %b %Y}) so that the "
                 "mirror test there (speeds far *above* their forecasts, which incidents never cause) raises at "
                 "most this many. It is an upper bound: where the model's upper tail is heavier than its lower one, "
                 "fewer false alarms come than asked.")
        window = st.segmented_control("History", list(WINDOWS), default=next(iter(WINDOWS)), key=WINDOW_KEY,
                                      width="content") or next(iter(WINDOWS))
    return last, rate, window


def watch(forecaster: Forecaster, last: int, rate: float, window: str) -> Watch:
    """The alerts of the window `window` ending at step `last`, at `rate` false alarms per day. A
    first calibration, or more than BACKGROUND_STEPS steps to score, runs in the background while
    the page says so (and stops), refreshing itself when it is done."""
    dataset = forecaster.dataset
    kept = store()
    first = max(earliest_step(forecaster), last - int(WINDOWS[window] / dataset.freq) + 1)
    scored = max(first - 1, earliest_step(forecaster))        # an alert's first step needs the step before
    check_steps(forecaster, *calibration_steps(forecaster))   # refused in words before any work
    calibration = kept.known_calibration(forecaster)
    missing = kept.missing_steps(forecaster, scored, last)
    if calibration is None or missing > BACKGROUND_STEPS:
        val_first, val_last = calibration_steps(forecaster)
        what = (f"Calibrating alerts on the validation split ({val_last + 1 - val_first} steps, once per model and "
                "data), then scoring" if calibration is None else "Scoring")
        st.info(f"{what} {missing} step(s) of observed speeds against the forecasts made for them. The page fills "
                "in when that is done.", icon=":material/hourglass_top:")
        wait_for(prepared(kept, forecaster, scored, last))
        st.stop()
    threshold = calibration.threshold(rate)
    found = alerts_until(kept, forecaster, first, last, threshold)
    found.insert(1, "name", [dataset.graph.names[n] for n in found["node_id"]])
    return Watch(found, first, last, window, rate, threshold, calibration)


def prepared(kept: EvidenceStore, forecaster: Forecaster, first: int, last: int) -> threading.Thread:
    """The background job that calibrates and scores steps first..last into `kept`: one per piece
    of work, whichever sessions ask for it; what it failed with is raised here."""
    key = (id(kept), data_digest(forecaster, *calibration_steps(forecaster)), data_digest(forecaster, first, last))
    with _jobs_lock:
        for done in [k for k, job in _jobs.items() if not job.is_alive() and k != key]:
            del _jobs[done]
        if key in _failed:
            _jobs.pop(key, None)
            raise _failed.pop(key)
        job = _jobs.get(key)
        if job is None or not job.is_alive():
            def work() -> None:
                try:
                    kept.calibration(forecaster)
                    kept.evidence(forecaster, first, last)
                except Exception as exc:           # shown by the page that asked: DataError in words
                    with _jobs_lock:
                        _failed[key] = exc
            # Not a daemon: exit waits for it instead of aborting torch mid-forecast.
            job = _jobs[key] = threading.Thread(target=work, name=PREPARE_THREAD, daemon=False)
            job.start()
    return job


@st.fragment(run_every=POLL_S)
def wait_for(job: threading.Thread) -> None:
    """Check on the background job every POLL_S seconds; rerun the page once it is done."""
    if not job.is_alive():
        st.rerun()


def watch_or_stop(forecaster: Forecaster) -> Watch:
    """`watch` at the page's settings, or the reason it cannot be computed, in words (the page stops)."""
    try:
        return watch(forecaster, *settings(forecaster))
    except DataError as exc:
        st.error(f"Alerts cannot be computed here: {md(exc)}")
        st.stop()


def headline(w: Watch, dataset: TrafficDataset) -> None:
    times = dataset.timestamps
    with st.container(horizontal=True, gap="medium", key="alerts_metrics"):
        st.metric("Current alerts", f"{len(w.current)}", width="content",
                  help=f"Roads still in alert at {times[w.last]:{TIME}}.")
        st.metric(f"Alerts, {w.label.lower()}", f"{len(w.alerts)}", width="content",
                  help=f"Alerts open at some time from {times[w.first]:{TIME}} to {times[w.last]:{TIME}}, "
                       "current ones included.")
        st.metric("Threshold", f"{w.threshold:.2f}", width="content",
                  help=f"An alert opens where a road's score passes this: the mean of −log P(speed this low or "
                       f"lower) under the forecasts issued {', '.join(map(str, LEADS))} steps before, confirmed "
                       "by the road's step before or a neighbour.")
    c = w.calibration
    st.caption(f"At {w.rate:g} false alarm(s) per day asked: calibrated on {c.days:.1f} validation days "
               f"({c.first:%d %b %Y} – {c.last:%d %b %Y}), where the mirror test raises "
               f"{c.noise_per_day(w.threshold):.2f} per day at this threshold.")


def since(row) -> str:
    """When an alert opened, or the earliest time it is known open ('before …') where the search stopped."""
    start = pd.Timestamp(row["start"])
    return f"before {start:{TIME}}" if row["start_cut"] else f"{start:{TIME}}"


def duration(row, freq: pd.Timedelta) -> str:
    """How long an alert has lasted, its last step included: '45 min', '2 h 15 min'."""
    minutes = int((pd.Timestamp(row["end"]) - pd.Timestamp(row["start"]) + freq) / pd.Timedelta(minutes=1))
    return f"{minutes // 60} h {minutes % 60} min".replace(" 0 min", "") if minutes >= 60 else f"{minutes} min"


def chance(p: float) -> str:
    """A small probability in words: '1 in 48,000'; a larger one as a percentage."""
    return f"{100 * p:.0f} %" if p >= 0.05 else f"1 in {float(f'{1 / p:.2g}'):,.0f}"


def node_rows(w: Watch, forecaster: Forecaster) -> tuple[pd.DataFrame, np.ndarray]:
    """The map's node layer (what each tooltip says) and its colours: a road in alert now with its
    alert's figures at the peak, any other road with its speed at the window's last step."""
    dataset = forecaster.dataset
    graph, last = dataset.graph, dataset.timestamps[w.last]
    now = store().evidence(forecaster, w.last, w.last)                 # in the window's pieces: no new work
    observed, expected, p = now.observed[0].copy(), now.expected[0].astype(float), np.exp(-now.score()[0])
    status = np.array(["No alert"] * dataset.num_nodes, dtype=object)
    when = np.array([f"At {last:%H:%M}"] * dataset.num_nodes, dtype=object)
    colour = np.tile(np.array(QUIET, np.uint8), (dataset.num_nodes, 1))
    for _, row in w.history.iterrows():
        i = graph.index_of[row["node_id"]]
        colour[i] = EARLIER
        status[i] = f"Alert cleared at {pd.Timestamp(row['end']):%H:%M}"
    for _, row in w.current.iterrows():
        i = graph.index_of[row["node_id"]]
        colour[i], status[i], when[i] = CURRENT, f"In alert since {since(row)}", "At its peak"
        observed[i], expected[i], p[i] = row["peak_observed_kmh"], row["peak_expected_kmh"], row["probability"]
    nodes = pd.DataFrame({"node_id": graph.node_ids, "name": list(graph.names.values()), "status": status,
                          "when": when, "observed": rounded(observed, 1), "expected": rounded(expected, 1),
                          "chance": [chance(x) if np.isfinite(o) else "no reading" for x, o in zip(p, observed)]})
    return nodes, colour


def legend() -> None:
    swatches = "".join(f"<span style='display:inline-flex;align-items:center;gap:6px;margin-right:18px'>"
                       f"<span style='width:12px;height:12px;border-radius:50%;background:rgb{c}'></span>{label}</span>"
                       for c, label in STATES)
    st.html(f"<div style='font-size:0.8rem;margin:2px 0 12px 0'>{swatches}</div>")


def alert_map(w: Watch, forecaster: Forecaster) -> None:
    """Every road, those in alert now in red, those alerted earlier in the window in amber; a click
    selects the road on every page."""
    nodes, colour = node_rows(w, forecaster)
    basemap = basemap_toggle("alerts_basemap")
    tooltip = ("<b>{name}</b><br/>{node_id}<br/>{status}<br/>"
               "{when}: observed <b>{observed} km/h</b>, expected {expected} km/h<br/>"
               "Chance of a speed this low: {chance}")
    deck = road_map(forecaster.dataset.graph, nodes, colour, basemap=basemap, tooltip_html=tooltip,
                    highlight=state.selected_node(forecaster.dataset), size=MAP_SIZE,
                    node_layer=state.node_layer(MAP_KEY))
    with st.container(width=MAP_PX):
        st.pydeck_chart(deck, height=MAP_SIZE[1], on_select=partial(state.select_clicked_node, MAP_KEY),
                        selection_mode="single-object", key=MAP_KEY)
        legend()


def shown(frame: pd.DataFrame, freq: pd.Timedelta) -> pd.DataFrame:
    """Alerts as the tables show them: the road, when, how long, the peak speeds and probability."""
    return pd.DataFrame({
        "name": frame["name"], "node_id": frame["node_id"],
        "since": [since(r) for _, r in frame.iterrows()],
        "until": [f"{pd.Timestamp(t):{TIME}}" for t in frame["end"]],
        "lasted": [duration(r, freq) for _, r in frame.iterrows()],
        "peak_observed_kmh": frame["peak_observed_kmh"], "peak_expected_kmh": frame["peak_expected_kmh"],
        "probability": frame["probability"],
    })


def columns(status: str) -> dict:
    kmh = partial(st.column_config.NumberColumn, format="%.1f")
    return {
        "name": st.column_config.TextColumn("Road", width=260, pinned=True),
        "node_id": st.column_config.TextColumn("Node"),
        "since": st.column_config.TextColumn("Since"),
        "until": st.column_config.TextColumn("Cleared after" if status == "history" else "Last step"),
        "lasted": st.column_config.TextColumn("For"),
        "peak_observed_kmh": kmh("Observed, km/h", help="The speed observed at the alert's peak step"),
        "peak_expected_kmh": kmh("Expected, km/h", help="The median of the forecast issued one step before the peak"),
        "probability": st.column_config.NumberColumn(
            "Probability", format="%.1e",
            help="At the peak: the geometric mean of P(speed this low or lower) under the forecasts issued "
                 f"{', '.join(map(str, LEADS))} steps before; the smaller, the less the model expected it"),
    }


def current_alerts(w: Watch, forecaster: Forecaster) -> None:
    """The roads in alert now on the map and ranked, least expected first; a row selects its road."""
    dataset = forecaster.dataset
    at = dataset.timestamps[w.last]
    st.subheader("Current alerts")
    alert_map(w, forecaster)
    if w.current.empty:
        st.info(f"No road is in alert at {at:{TIME}}.")
        return
    table = shown(w.current, dataset.freq).sort_values("probability", kind="stable")
    st.caption(f"Roads still in alert at {at:{TIME}}, the least expected first. Click a row to select its road on "
               "the map and on every page.")
    road_table(table.drop(columns="until"), CURRENT_TABLE, f"current_alerts_{at:%Y%m%dT%H%M}.csv",
               columns("current"))


def history(w: Watch, dataset: TrafficDataset) -> None:
    """The alerts of the window that have cleared, the latest first."""
    times = dataset.timestamps
    st.subheader("History")
    if w.history.empty:
        st.caption(f"No alert cleared from {times[w.first]:{TIME}} to {times[w.last]:{TIME}}.")
        return
    st.caption(f"Alerts that opened and cleared from {times[w.first]:{TIME}} to {times[w.last]:{TIME}}, the latest "
               "first.")
    table = shown(w.history, dataset.freq).iloc[::-1]
    # In a keyed container: a table without a selection carries no key of its own in the page.
    st.container(key=HISTORY_TABLE).dataframe(table, hide_index=True, column_config=columns("history"),
                                               placeholder="—")


def exported(w: Watch) -> pd.DataFrame:
    """Every alert of the window as exported: the `monitor` CSV's columns, the road's name, and
    whether it is current."""
    return w.alerts[[*ALERT_COLUMNS, "name", "current"]]


def exports(w: Watch, dataset: TrafficDataset) -> None:
    """CSV (spreadsheet-safe) and JSON of every alert in the window, with the settings they came from."""
    at = dataset.timestamps[w.last]
    name = f"alerts_{at:%Y%m%dT%H%M}_{w.label.lower().replace('last ', '').replace(' ', '')}"
    report = {"until": at.isoformat(), "since": dataset.timestamps[w.first].isoformat(),
              "false_alarms_per_day": w.rate, "threshold": round(w.threshold, 4),
              "calibrated_on": {"first": w.calibration.first.isoformat(), "last": w.calibration.last.isoformat()},
              "alerts": exported(w).to_dict("records")}
    with st.container(horizontal=True, gap="small"):
        st.download_button("All alerts (CSV)", csv_bytes(exported(w)), file_name=f"{name}.csv", mime="text/csv",
                           icon=":material/download:", key="alerts_csv")
        st.download_button("All alerts (JSON)", json.dumps(report, indent=2, ensure_ascii=False).encode(),
                           file_name=f"{name}.json", mime="application/json", icon=":material/download:",
                           key="alerts_json")
