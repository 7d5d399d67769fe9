"""What a dataset folder in the generic format holds, for the Data page: its files and columns,
listed from the reader's own column lists (`stmgt.data.graph`, `stmgt.data.dataset`), and a
small template folder, cut from the embedded simulation and written by the folder writer, to
download, fill in and upload back."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from stmgt.data.csv_layout import TIME_COLUMN
from stmgt.data.dataset import WEATHER_COLUMNS, TrafficDataset
from stmgt.data.folder import write_folder
from stmgt.data.graph import EDGE_COLUMNS, NODE_COLUMNS, RoadGraph
from stmgt.data.simulate import simulate

REQUIRED, OPTIONAL = "required", "optional"
# What each column of nodes.csv and edges.csv holds; whether it may be left out is tested against the reader.
GRAPH_COLUMNS = {
    "node_id": (REQUIRED, "a unique id per measuring point (node); the speed table's column names"),
    "name": (OPTIONAL, "a junction or street name, shown on maps and in lists"),
    "lat": (OPTIONAL, "latitude in degrees; give lat and lon for every node or for none (a layout is drawn)"),
    "lon": (OPTIONAL, "longitude in degrees"),
    "road_class": (OPTIONAL, "e.g. primary, secondary"),
    "source": (REQUIRED, "the node_id a road segment starts at"),
    "target": (REQUIRED, "the node_id it leads to; a two-way street is two rows, one each way"),
    "length_m": (OPTIONAL, "the segment's length in metres"),
    "road_name": (OPTIONAL, "the street's name, drawn along the segment on maps"),
}
WEATHER_UNITS = {"temperature_c": "air temperature, °C", "wind_kmh": "wind speed, km/h",
                 "precipitation_mm": "rain, mm per hour"}
TIMESTAMP = "ISO 8601 with a UTC offset, e.g. 2025-07-07T08:00:00+07:00, one row per step at a regular cadence"
TEMPLATE_NODES = 4                  # a junction and the roads around it
TEMPLATE_NAME = "my-dataset"


def columns_table() -> pd.DataFrame:
    """Every file and column of the generic folder, whether it is needed, and what it holds."""
    rows = [("nodes.csv", c, *GRAPH_COLUMNS[c]) for c in NODE_COLUMNS]
    rows += [("edges.csv", c, *GRAPH_COLUMNS[c]) for c in EDGE_COLUMNS]
    rows += [("speed.csv", TIME_COLUMN, REQUIRED, TIMESTAMP),
             ("speed.csv", "one column per node_id", REQUIRED, "speed in km/h; an empty cell is a missing reading")]
    weather = "weather.csv (the file is optional)"
    rows += [(weather, TIME_COLUMN, REQUIRED, "the same timestamps as speed.csv")]
    rows += [(weather, c, REQUIRED, f"{WEATHER_UNITS[c]}; every step needs all three") for c in WEATHER_COLUMNS]
    return pd.DataFrame(rows, columns=["File", "Column", "Needed", "What it holds"])


def template_dataset(dataset: TrafficDataset, size: int = TEMPLATE_NODES) -> TrafficDataset:
    """The first `size` nodes of `dataset` reached from its first node along its segments (so the
    part is connected), the segments between them, and all its time steps."""
    edges = dataset.graph.edges
    keep = [dataset.graph.node_ids[0]]
    for node in keep:                                       # breadth first; the list grows as it is read
        linked = pd.concat([edges.loc[edges["source"] == node, "target"], edges.loc[edges["target"] == node, "source"]])
        keep += [n for n in dict.fromkeys(linked) if n not in keep]
        if len(keep) >= size:
            break
    keep = keep[:size]
    graph = RoadGraph(dataset.graph.nodes.set_index("node_id").loc[keep].reset_index(),
                      edges[edges["source"].isin(keep) & edges["target"].isin(keep)], source="template")
    columns = [dataset.graph.index_of[n] for n in keep]
    return TrafficDataset(dataset.timestamps, dataset.speed[:, columns], dataset.weather, graph,
                          {"source": "template (a corner of the simulated HCMC network)"})


def zipped_folder(dataset: TrafficDataset, name: str = TEMPLATE_NAME) -> bytes:
    """`dataset` written by the folder writer (spreadsheet-safe CSVs) as a .zip of one folder, `name`."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="stmgt-template-") as tmp:
        folder = write_folder(dataset, Path(tmp) / name)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):   # not the tool's mark
                archive.write(path, f"{name}/{path.name}")
    return buffer.getvalue()


@st.cache_data(show_spinner=False)
def template_zip() -> bytes:
    """A day of the embedded simulation on a few of its roads, as a dataset folder to start from;
    made when the button is first pressed (the simulation takes seconds), then kept."""
    day = simulate(weeks=1 / 7, seed=0)
    return zipped_folder(template_dataset(day))


def format_guide() -> None:
    """The generic folder's files and columns, and the template to download."""
    with st.expander("Files and columns a dataset folder needs", icon=":material/table_view:"):
        st.table(columns_table(), hide_index=True, border="horizontal")
        st.caption("Instead of edges.csv, an N×N `adjacency.csv` will do (non-zero = a segment; a header row of "
                   "node_ids, or rows and columns in the order of nodes.csv); instead of speed.csv, `speed.parquet`. "
                   "Without weather.csv models train without weather and the Weather what-if page is unavailable. "
                   f"The template is a day of the simulated data on {TEMPLATE_NODES} roads: replace its rows with "
                   "yours, or upload it as it is to try the page.")
        # No rerun on click: the rerun would replace the button's file id on the server while the
        # browser is still fetching the file under the old one (a race that lost a download in CI).
        st.download_button("Download a template (.zip)", template_zip, file_name="stmgt-dataset-template.zip",
                           mime="application/zip", icon=":material/download:", key="data_template",
                           on_click="ignore")

