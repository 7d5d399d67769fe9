"""What every page shares: the sidebar choices (dataset, model, device, node), the cached data,
models and forecasts, and live mode. Pages read these and draw; all numbers come from `stmgt`.

Live mode (a live dataset, `stmgt.data.live`, that grows while pages are open): the sidebar pins
the version each full run shows (the dataset's newest step) and polls for a newer one every
`LIVE_POLL_S`, rerunning the app only when it changed; the anchor picker follows the newest step
("now") until the analyst scrubs back. Cached forecasts survive an append unless what they show
changed (`forecast`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from stmgt.storage.checkpoint import LoadedModel
from stmgt.data.dataset import TrafficDataset, free_flow_speed
from stmgt.data.live import is_live, newest_step
from stmgt.data.sources import EMBEDDED, describe, load_dataset
from stmgt.errors import DataError
from stmgt.forecasting.forecast import Forecast, Forecaster
from stmgt.data.scenario import WeatherScenario
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.storage.workspace import Workspace
from ui import pages
from ui.maps import NODE_LAYER
from ui.text import md, one_line

EMBEDDED_LABEL = "Simulated HCMC (embedded)"
BUNDLED_LABEL = "Bundled model"
# The session's forecast time (anchor index), horizon step and road, shared by every page that has them.
# Plain session keys that no widget owns: Streamlit ties a widget's state to its page and drops it on
# the next run without that page, so a choice held by the widget alone reset whenever the page changed.
ANCHOR_KEY, HORIZON_KEY, NODE_KEY = "anchor", "horizon", "node_id"
DATASET_KEY, MODEL_KEY, DEVICE_KEY = "dataset", "model", "device"   # the sidebar's choices (their widgets' keys)
ANCHOR_TIME_KEY = "anchor_time"     # (dataset, clock time) of the anchor: carries it to another dataset
DEFAULT_STEP = 4                    # the horizon step pages open on (+1 h at 15-minute steps)
SHOWN_KEY = "live_shown"            # (dataset spec, its newest step or None): the version this session shows
FOLLOW_KEY = "anchor_follows_now"   # True while the forecast time follows a live dataset's newest step
BACK_TO_NOW_KEY = "live_back_to_now"
LIVE_POLL_S = 1.0                   # how often an open page looks for a newer step of a live dataset
LATE_STEPS = 2                      # a newest step older than this many steps: the feed is behind the clock
REPLAY_MARK = "replay_of"           # what `stmgt replay` records in a live dataset's provenance: what it plays


@dataclass(frozen=True)
class ModelChoice:
    label: str
    run: Run


def workspace() -> Workspace:
    return Workspace.default()


# ---- cached resources (shared across sessions; keyed by plain strings) ------------------------
@st.cache_resource(show_spinner="Loading data…", max_entries=4)
def _dataset(spec_json: str, newest: str | None) -> TrafficDataset:
    """`newest`, a live dataset's newest step (None for any other), is only part of the key: a
    dataset that grew loads afresh, and the oldest versions leave the cache (max_entries)."""
    return load_dataset(json.loads(spec_json))


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def _model(checkpoint: str, mtime: float, fingerprint: str, device: str) -> LoadedModel:
    run = Run(Path(checkpoint).parent)
    loaded = run.load(device=device)
    if loaded.fingerprint != fingerprint:
        raise DataError(f"this model was trained on another road graph ({len(loaded.node_ids)} nodes); "
                        "pick a model trained on the selected dataset", str(run.path))
    return loaded


def imported_label(name: str) -> str:
    """How the sidebar lists an imported dataset (its folder's name under the workspace)."""
    return f"Imported: {name}"


def dataset_choices() -> dict[str, dict]:
    choices = {EMBEDDED_LABEL: dict(EMBEDDED)}
    for name, path in workspace().datasets().items():
        choices[imported_label(name)] = {"kind": "folder", "path": str(path)}
    return choices


def model_choices(fingerprint: str) -> tuple[list[ModelChoice], int]:
    """Finished runs trained on this graph (bundled first), and how many of another graph were
    left out. Runs still training, interrupted or failed are not offered (the Train page lists them)."""
    candidates = [ModelChoice(BUNDLED_LABEL, Run(BUNDLED_RUN))] if (BUNDLED_RUN / "checkpoint.pt").is_file() else []
    candidates += [ModelChoice(f"Run: {r.name}", r) for r in workspace().runs() if r.status.usable]
    fitting, hidden = [], 0
    for choice in candidates:
        try:
            matches = choice.run.config.get("graph_fingerprint") == fingerprint
        except DataError:
            matches = False
        if matches:
            fitting.append(choice)
        else:
            hidden += 1
    return fitting, hidden


# ---- the current selection ---------------------------------------------------------------------
def sidebar() -> None:
    """Dataset, model and device pickers; they persist across pages via session state."""
    with st.sidebar:
        st.subheader("Data & model")
        choices = dataset_choices()
        if st.session_state.get(DATASET_KEY) not in choices:
            st.session_state[DATASET_KEY] = EMBEDDED_LABEL
        st.selectbox("Dataset", list(choices), key=DATASET_KEY)
        try:
            spec_json, newest = _pin_version()
            dataset = current_dataset()
        except DataError as exc:
            st.error(f"This dataset cannot be loaded: {md(exc)}")
            return
        if newest is not None:
            _live_status(json.loads(spec_json)["path"], newest, dataset.freq / pd.Timedelta(minutes=1),
                         REPLAY_MARK in dataset.provenance)
        models, hidden = model_choices(dataset.graph.fingerprint())
        labels = [m.label for m in models]
        if labels:
            if st.session_state.get(MODEL_KEY) not in labels:
                st.session_state[MODEL_KEY] = labels[0]
            st.selectbox("Model", labels, key=MODEL_KEY)
        else:
            st.session_state.pop(MODEL_KEY, None)
            st.info("No model for this dataset yet — train one on **Train & load**.")
        if hidden:
            st.caption(f"{hidden} saved model(s) for other road graphs are not listed.")
        devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
        if st.session_state.get(DEVICE_KEY) not in devices:
            st.session_state[DEVICE_KEY] = devices[0]
        st.radio("Device", devices, key=DEVICE_KEY, horizontal=True,
                 help="Where forecasts and training run. CUDA is offered when a GPU is present.")


@st.fragment(run_every=LIVE_POLL_S)
def _live_status(folder: str, shown: str, cadence_min: float, replay: bool) -> None:
    """The live badge: the newest step shown and its age on the wall clock, honestly: a replay
    says it is one, and a feed behind the clock says so. Every `LIVE_POLL_S` it reads the dataset's
    newest step (dataset.json alone) and reruns the app only when that moved."""
    newest = newest_step(Path(folder))
    if newest is None or newest.isoformat() != shown:
        st.rerun()
    age = pd.Timestamp.now(tz="UTC") - newest
    late = age > LATE_STEPS * pd.Timedelta(minutes=cadence_min)
    st.badge("Live · replay" if replay else "Live", icon=":material/sensors:", color="orange" if late else "green")
    if replay:
        note = " A replay of recorded data: its steps are not today's."
    elif late:
        note = f" The feed is behind the clock (a step is due every {cadence_min:g} min): it may have stopped."
    else:
        note = ""
    st.caption(f"Newest step {newest:%a %d %b %Y %H:%M} · {data_age(age)}.{note} Pages follow it "
               "while the forecast time is at now.", help="This page looks for new steps every "
               f"{LIVE_POLL_S:g} s and updates itself when one arrives.")


def data_age(age: pd.Timedelta) -> str:
    """How old the newest step is, in words: 'just now', '2 min ago', '3 h 5 min ago', '468 days
    ago'; a step ahead of this machine's clock says so rather than showing a negative age."""
    if age < -pd.Timedelta(minutes=1):
        return f"{_duration(-age)} ahead of this machine's clock"
    if age < pd.Timedelta(minutes=1):
        return "just now"
    return f"{_duration(age)} ago"


def _duration(span: pd.Timedelta) -> str:
    minutes = int(span / pd.Timedelta(minutes=1))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
    days = minutes // (24 * 60)
    return f"{days} day{'s' if days > 1 else ''}"


def forget_dataset(path: Path) -> None:
    """After an imported dataset at `path` is replaced or deleted, drop every cached dataset and
    what was made from one (keyed by the folder's path, which stays the same): cheap to rebuild,
    and a replaced folder may hold any version."""
    for cached in (_dataset, _forecaster, _free_flow, _forecast):
        cached.clear()


def _newest(spec: dict) -> pd.Timestamp | None:
    """A live dataset's newest step (its dataset.json alone is read), None for any other dataset."""
    return newest_step(Path(spec["path"])) if spec.get("kind") == "folder" else None


def _pin_version() -> tuple[str, str | None]:
    """Read the selected dataset's newest step and make it the version this session shows until
    the next full run (so a run's pages never mix two versions); returns the cache key."""
    spec = current_dataset_spec()
    newest = _newest(spec)
    key = (json.dumps(spec, sort_keys=True), None if newest is None else newest.isoformat())
    st.session_state[SHOWN_KEY] = key
    return key


def _data_key() -> tuple[str, str | None]:
    """The selected dataset's cache key: its spec and the version this session shows."""
    spec_json = json.dumps(current_dataset_spec(), sort_keys=True)
    shown = st.session_state.get(SHOWN_KEY)
    if shown is not None and shown[0] == spec_json:
        return shown
    newest = _newest(current_dataset_spec())
    return spec_json, None if newest is None else newest.isoformat()


def current_dataset() -> TrafficDataset:
    """The selected dataset; a live one as of the newest step this session shows (the sidebar
    moves it on when a newer step arrives)."""
    return _dataset(*_data_key())


def require_dataset() -> TrafficDataset:
    """The selected dataset, or a clear message with the way to the Data page (and the page stops)."""
    try:
        return current_dataset()
    except DataError as exc:
        st.error(f"The selected dataset cannot be loaded: {md(exc)}")
        pages.link(pages.DATA, "Import or fix a dataset on the Data page")
        st.stop()


@st.cache_data(show_spinner=False, max_entries=4)
def _free_flow(spec_json: str, train: tuple[int, int]) -> np.ndarray:
    return free_flow_speed(current_dataset())


def free_flow() -> np.ndarray:
    """The selected dataset's free-flow speed per node (km/h), which congestion is judged against.
    Read from the training split alone, so it stays cached while a live dataset grows."""
    train = current_dataset().splits()["train"]
    return _free_flow(_data_key()[0], (train.start, train.stop))


def current_dataset_spec() -> dict:
    return dataset_choices().get(st.session_state.get(DATASET_KEY, EMBEDDED_LABEL), EMBEDDED)


def dataset_label() -> str:
    return describe(current_dataset_spec())


def device() -> str:
    return st.session_state.get(DEVICE_KEY, "cpu")


def current_model_choice() -> ModelChoice | None:
    dataset = current_dataset()
    models, _ = model_choices(dataset.graph.fingerprint())
    by_label = {m.label: m for m in models}
    return by_label.get(st.session_state.get(MODEL_KEY)) or (models[0] if models else None)


def current_model() -> LoadedModel | None:
    choice = current_model_choice()
    if choice is None:
        return None
    checkpoint = choice.run.path / "checkpoint.pt"
    return _model(str(checkpoint), checkpoint.stat().st_mtime, current_dataset().graph.fingerprint(), device())


@st.cache_resource(max_entries=4)
def _forecaster(checkpoint: str, mtime: float, spec_json: str, newest: str | None, device: str) -> Forecaster:
    dataset = _dataset(spec_json, newest)
    return Forecaster(_model(checkpoint, mtime, dataset.graph.fingerprint(), device), dataset, device)


def current_forecaster() -> Forecaster | None:
    """The selected model bound to the selected dataset; built once per (model, data, device) and
    again for each new version of a live dataset."""
    choice = current_model_choice()
    if choice is None:
        return None
    checkpoint = choice.run.path / "checkpoint.pt"
    return _forecaster(str(checkpoint), checkpoint.stat().st_mtime, *_data_key(), device())


def require_forecaster() -> Forecaster:
    """The forecaster, or a clear message with the way forward (and the page stops)."""
    try:
        forecaster = current_forecaster()
    except DataError as exc:
        st.error(f"The selected model cannot be used: {md(exc)}")
        pages.link(pages.TRAIN, "Train or load another model")
        st.stop()
    if forecaster is None:
        st.warning("There is no model for this dataset yet.")
        pages.link(pages.TRAIN, "Train one on Train & load")
        st.stop()
    return forecaster


def model_key() -> str:
    """Identifies the selected model + dataset + device for cached forecasts; the same for every
    version of a live dataset (appended steps change no earlier one)."""
    choice = current_model_choice()
    checkpoint = choice.run.path / "checkpoint.pt"
    return json.dumps([str(checkpoint), checkpoint.stat().st_mtime, current_dataset_spec(), device()])


@st.cache_data(show_spinner=False, max_entries=512)
def _forecast(key: str, anchor: int, known: int, scenario: WeatherScenario | None, diagnostics: bool) -> Forecast:
    return current_forecaster().forecast(anchor, scenario, diagnostics)


def forecast(anchor: int, scenario: WeatherScenario | None = None, diagnostics: bool = False) -> Forecast:
    """A cached forecast for one anchor of the current model and dataset. A forecast reads the data
    up to its horizon's end (inputs, truth, the horizon's weather, the last observed one persisting
    past the data's end), so it is keyed on the last step it reads, min(anchor + horizon, newest):
    an appended step recomputes only the forecasts that reach it."""
    forecaster = current_forecaster()
    known = min(int(anchor) + forecaster.horizon, forecaster.dataset.num_steps - 1)
    return _forecast(model_key(), int(anchor), known, scenario, diagnostics)


# ---- selected node and anchor -------------------------------------------------------------------
def widget_key(choice: str) -> str:
    """The key of the widgets that show the session's `choice` (one of ANCHOR_KEY, HORIZON_KEY, NODE_KEY)."""
    return f"{choice}_widget"


def _shown(choice: str) -> dict:
    """Widget arguments that show the session's `choice` and keep a change to it: the widget starts
    from the choice on every run, on every page, and writes a change back before the page runs."""
    st.session_state[widget_key(choice)] = st.session_state[choice]
    return dict(key=widget_key(choice), on_change=_keep, args=(choice,))


def _keep(choice: str) -> None:
    st.session_state[choice] = st.session_state[widget_key(choice)]


def selected_node(dataset: TrafficDataset) -> str:
    """The session's road; the dataset's first where it has none or its graph lacks that road."""
    ids = dataset.graph.node_ids
    if st.session_state.get(NODE_KEY) not in ids:
        st.session_state[NODE_KEY] = ids[0]
    return st.session_state[NODE_KEY]


def node_picker(dataset: TrafficDataset, label: str = "Node") -> str:
    """A select box over the nodes, showing the session's road (map clicks set it too)."""
    selected_node(dataset)
    return st.selectbox(label, dataset.graph.node_ids, format_func=node_option(dataset.graph), **_shown(NODE_KEY))


def node_option(graph):
    """How a node reads among a select box's options (plain text there): its label on one line,
    bidi controls shown rather than obeyed (`ui.text.one_line`)."""
    return lambda node_id: one_line(graph.label(node_id))


def offered_anchors(forecaster: Forecaster) -> np.ndarray:
    """The forecast times (anchor indices) pages offer: the test period's anchors; on a live
    dataset every step of the test period with a full input window through the newest step, "now",
    whose forecasts look past the data's end (their truth arrives with the feed)."""
    if not is_live(forecaster.dataset):
        return forecaster.test_anchors()
    test = forecaster.dataset.splits()["test"]
    return np.arange(max(test.start, forecaster.seq_len - 1), forecaster.dataset.num_steps, dtype=np.int64)


def anchor_picker(forecaster: Forecaster, label: str = "Forecast made at") -> int:
    """A slider over `offered_anchors` (the last observed step) showing the session's forecast
    time; a time outside this test period falls back to the default. On a live dataset the time
    starts at now and follows each new step until the analyst scrubs back; a "Back to now" button
    then returns to it."""
    anchors = offered_anchors(forecaster)
    times = forecaster.dataset.timestamps[anchors]
    spec = json.dumps(current_dataset_spec(), sort_keys=True)
    live, now = is_live(forecaster.dataset), int(anchors[-1])
    if live:
        _follow_now(spec, anchors)
    else:
        _carry_anchor(spec, anchors, times)
    if st.session_state.get(ANCHOR_KEY) not in set(anchors.tolist()):
        # Start on a morning rush hour in the middle of the test period: the interesting case.
        rush = np.flatnonzero((times.hour == 7) & (times.minute == 0) & (times.day_of_week < 5))
        middle = rush[np.searchsorted(rush, len(anchors) // 2) % len(rush)] if len(rush) else len(anchors) // 2
        st.session_state[ANCHOR_KEY] = int(anchors[middle])
    labels = dict(zip(anchors.tolist(), _time_labels(times.to_series())))
    if live:
        labels[now] += " · now"
    anchor = st.select_slider(label, options=anchors.tolist(), format_func=labels.__getitem__,
                              **{**_shown(ANCHOR_KEY), "on_change": _keep_anchor, "args": (now,)})
    if live and anchor != now:
        st.button("Back to now", key=BACK_TO_NOW_KEY, on_click=_back_to_now, args=(now,),
                  help=f"Show the forecast made at the newest step, {labels[now]}, and follow new steps again.")
    st.session_state[ANCHOR_TIME_KEY] = (spec, times[int(np.searchsorted(anchors, anchor))])
    return anchor


def _follow_now(spec: str, anchors: np.ndarray) -> None:
    """On a live dataset the forecast time is now (its newest step) when the session's time was on
    another dataset or none yet, and moves with each new step while it follows; once scrubbed back
    it stays where the analyst put it, on every page."""
    chosen = st.session_state.get(ANCHOR_TIME_KEY)
    if chosen is None or chosen[0] != spec or st.session_state.get(ANCHOR_KEY) not in set(anchors.tolist()):
        st.session_state[FOLLOW_KEY] = True
    if st.session_state.get(FOLLOW_KEY, True):
        st.session_state[ANCHOR_KEY] = int(anchors[-1])


def _keep_anchor(now: int) -> None:
    _keep(ANCHOR_KEY)
    st.session_state[FOLLOW_KEY] = st.session_state[ANCHOR_KEY] == now


def _back_to_now(now: int) -> None:
    st.session_state[ANCHOR_KEY] = now
    st.session_state[FOLLOW_KEY] = True


def _carry_anchor(spec: str, anchors: np.ndarray, times: pd.DatetimeIndex) -> None:
    """After a change of dataset, the session's forecast time is the same clock time in the new
    one (an anchor is a step index, which means another time there), or its default, said in words."""
    chosen = st.session_state.get(ANCHOR_TIME_KEY)
    if chosen is None or chosen[0] == spec:
        return
    same = np.flatnonzero(times == chosen[1])
    st.session_state[ANCHOR_KEY] = int(anchors[same[0]]) if len(same) else None
    if not len(same):
        st.caption(f"The chosen forecast time, {chosen[1]:%a %d %b %H:%M}, is outside this dataset's test "
                   f"period ({times[0]:%d %b %Y} – {times[-1]:%d %b %Y}): showing the default time instead.")


def horizon_picker(horizon: int, label: str, format_func, **widget) -> int:
    """A slider over the forecast's steps 1…`horizon` showing the session's horizon step (+1 h
    where the session has none or it lies beyond this model's horizon)."""
    steps = list(range(1, horizon + 1))
    if st.session_state.get(HORIZON_KEY) not in steps:
        st.session_state[HORIZON_KEY] = min(DEFAULT_STEP, horizon)
    return st.select_slider(label, options=steps, format_func=format_func, **widget, **_shown(HORIZON_KEY))


@st.cache_data(show_spinner=False, max_entries=16)
def _time_labels(times: pd.Series) -> list[str]:
    """Slider labels, formatted once: formatting a thousand options on every rerun cost more than
    the rest of a scrubber move (benchmarks/RESULTS.md, *Dashboard latency*). A Series because
    st.cache_data hashes those, not indexes."""
    return times.dt.strftime("%a %d %b %H:%M").tolist()


def node_layer(map_key: str) -> str:
    """The id of the clickable node layer of the map keyed `map_key`. While Streamlit holds a map
    click as the chart's selection it fades every other node and road, so the colours stop matching
    the legend; a new layer id after each click makes it drop that selection (the map rings the
    selected node itself)."""
    clicks = st.session_state.get(f"{map_key}_clicks", 0)
    return f"{NODE_LAYER}-{clicks}" if clicks else NODE_LAYER


def select_clicked_node(map_key: str) -> None:
    """`on_select` callback of the road map keyed `map_key` (bind it with functools.partial):
    a clicked node becomes the selected node on every page."""
    objects = st.session_state[map_key].selection.get("objects", {})
    clicked = [o for layer, picked in objects.items() if layer.startswith(NODE_LAYER) for o in picked]
    if clicked:
        st.session_state[NODE_KEY] = clicked[0]["node_id"]
        st.session_state[f"{map_key}_clicks"] = st.session_state.get(f"{map_key}_clicks", 0) + 1
