"""Shared by page tests: reading what a page drew under AppTest (plotly specs by widget key, with
plotly's base64 typed arrays decoded; pydeck layers by layer id) and a tiny trained run."""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.proto.WidgetStates_pb2 import WidgetStates

from stmgt.data.simulate import simulate
from stmgt.model import STMGTConfig
from stmgt.training.trainer import TrainConfig, fit


def plotly(at, key: str) -> dict:
    """The spec of the one plotly chart whose widget key is `key`."""
    charts = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key)]
    assert len(charts) == 1, f"expected one plotly chart keyed {key!r}, found {len(charts)}"
    return json.loads(charts[0].proto.spec)


def array(value) -> np.ndarray:
    """A trace's data as floats: a plain list, or plotly's {"dtype", "bdata", "shape"} encoding."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
        shape = value.get("shape")
        return data.reshape([int(s) for s in str(shape).split(",")]) if shape else data
    return np.array(value, dtype=float)


def trace(spec: dict, name: str) -> dict:
    return next(t for t in spec["data"] if t.get("name") == name)


def deck_layers(at, index: int = 0) -> dict:
    """The layers of the index-th pydeck map, by layer id."""
    deck = json.loads(at.get("deck_gl_json_chart")[index].proto.json)
    return {layer["id"]: layer for layer in deck["layers"]}


def click_node(at, node_id: str, position: int, map_index: int = 0) -> None:
    """Run the app as after a click on a node of the map (what the browser sends for a
    single-object pick on layer "nodes"); `position` is the node's row in the layer."""
    chart = at.get("deck_gl_json_chart")[map_index]
    states = at._tree.get_widget_states()
    click = states.widgets.add()
    click.id = chart.proto.id
    click.string_value = json.dumps({"selection": {"indices": {"nodes": [position]},
                                                   "objects": {"nodes": [{"node_id": node_id}]}}})
    at._run(WidgetStates(widgets=states.widgets))


def table(at, key: str):
    """The one table (st.dataframe) whose widget key is `key`."""
    (found,) = [t for t in at.dataframe if t.proto.id.endswith(key)]
    return found


def selected_rows(at, key: str) -> list[int]:
    """The rows the table keyed `key` shows selected."""
    return json.loads(table(at, key).proto.selection_state)["selection"]["rows"]


def select_row(at, key: str, row: int) -> None:
    """Run the app as after a click on the row-th row of the table keyed `key` (what the browser
    sends for a single-row selection)."""
    states = at._tree.get_widget_states()
    element = table(at, key)
    click = next((w for w in states.widgets if w.id == element.proto.id), None) or states.widgets.add()
    click.id = element.proto.id
    click.string_value = json.dumps({"selection": {"rows": [row], "columns": [], "cells": []}})
    at._run(WidgetStates(widgets=states.widgets))


def tiny_run(run_dir: Path, **model) -> Path:
    """A run folder with a barely trained small model on two simulated weeks of the embedded graph
    (seconds on a CPU): enough for pages to load and forecast with it."""
    config = STMGTConfig(hidden_dim=16, num_blocks=1, heads=2, **model)
    train = TrainConfig(epochs=1, max_batches=1, batch_size=16, calibrate=False)
    fit(simulate(weeks=2), config, train, run_dir=run_dir, data_spec={"kind": "simulator", "seed": 0, "weeks": 2})
    return run_dir
