"""What every page shares: the sidebar choices (dataset, model, device, node), the cached data,
models and forecasts. Pages read these and draw; all numbers come from `stmgt`."""

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


@dataclass(frozen=True)
class ModelChoice:
    label: str
    run: Run


def workspace() -> Workspace:
    return Workspace.default()


# ---- cached resources (shared across sessions; keyed by plain strings) ------------------------
@st.cache_resource(show_spinner="Loading data…", max_entries=4)
def _dataset(spec_json: str) -> TrafficDataset:
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
            dataset = current_dataset()
        except DataError as exc:
            st.error(f"This dataset cannot be loaded: {md(exc)}")
            return
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


def forget_dataset(path: Path) -> None:
    """After an imported dataset is replaced or deleted, drop its cached copy and the forecasts
    made on it (both are keyed by the folder's path, which stays the same)."""
    _dataset.clear(json.dumps({"kind": "folder", "path": str(path)}, sort_keys=True))
    _forecast.clear()


def current_dataset() -> TrafficDataset:
    spec = dataset_choices().get(st.session_state.get(DATASET_KEY, EMBEDDED_LABEL), EMBEDDED)
    return _dataset(json.dumps(spec, sort_keys=True))


def require_dataset() -> TrafficDataset:
    """The selected dataset, or a clear message with the way to the Data page (and the page stops)."""
    try:
        return current_dataset()
    except DataError as exc:
        st.error(f"The selected dataset cannot be loaded: {md(exc)}")
        pages.link(pages.DATA, "Import or fix a dataset on the Data page")
        st.stop()


@st.cache_data(show_spinner=False, max_entries=4)
def _free_flow(spec_json: str) -> np.ndarray:
    return free_flow_speed(_dataset(spec_json))


def free_flow() -> np.ndarray:
    """The selected dataset's free-flow speed per node (km/h), which congestion is judged against."""
    return _free_flow(json.dumps(current_dataset_spec(), sort_keys=True))


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
def _forecaster(checkpoint: str, mtime: float, spec_json: str, device: str) -> Forecaster:
    dataset = _dataset(spec_json)
    return Forecaster(_model(checkpoint, mtime, dataset.graph.fingerprint(), device), dataset, device)


def current_forecaster() -> Forecaster | None:
    """The selected model bound to the selected dataset; built once per (model, data, device)."""
    choice = current_model_choice()
    if choice is None:
        return None
    checkpoint = choice.run.path / "checkpoint.pt"
    return _forecaster(str(checkpoint), checkpoint.stat().st_mtime,
                       json.dumps(current_dataset_spec(), sort_keys=True), device())


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
    """Identifies the selected model + dataset + device for cached forecasts."""
    choice = current_model_choice()
    checkpoint = choice.run.path / "checkpoint.pt"
    return json.dumps([str(checkpoint), checkpoint.stat().st_mtime, current_dataset_spec(), device()])


@st.cache_data(show_spinner=False, max_entries=512)
def _forecast(key: str, anchor: int, scenario: WeatherScenario | None, diagnostics: bool) -> Forecast:
    return current_forecaster().forecast(anchor, scenario, diagnostics)


def forecast(anchor: int, scenario: WeatherScenario | None = None, diagnostics: bool = False) -> Forecast:
    """A cached forecast for one anchor of the current model and dataset."""
    return _forecast(model_key(), int(anchor), scenario, diagnostics)


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


def anchor_picker(forecaster: Forecaster, label: str = "Forecast made at") -> int:
    """A slider over the test period's anchors (the last observed step) showing the session's
    forecast time; a time outside this test period falls back to the default."""
    anchors = forecaster.test_anchors()
    times = forecaster.dataset.timestamps[anchors]
    spec = json.dumps(current_dataset_spec(), sort_keys=True)
    _carry_anchor(spec, anchors, times)
    if st.session_state.get(ANCHOR_KEY) not in set(anchors.tolist()):
        # Start on a morning rush hour in the middle of the test period: the interesting case.
        rush = np.flatnonzero((times.hour == 7) & (times.minute == 0) & (times.day_of_week < 5))
        middle = rush[np.searchsorted(rush, len(anchors) // 2) % len(rush)] if len(rush) else len(anchors) // 2
        st.session_state[ANCHOR_KEY] = int(anchors[middle])
    labels = dict(zip(anchors.tolist(), _time_labels(times.to_series())))
    anchor = st.select_slider(label, options=anchors.tolist(), format_func=labels.__getitem__, **_shown(ANCHOR_KEY))
    st.session_state[ANCHOR_TIME_KEY] = (spec, times[int(np.searchsorted(anchors, anchor))])
    return anchor


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
