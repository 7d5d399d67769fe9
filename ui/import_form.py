"""The Data page's import form: the formats it reads, and for each the inputs it needs, as
uploads or as paths on this machine (`ui.server_files`). Returns a reader for
`ui.data_import.staged_import`, so nothing is read until the page asks."""

import zoneinfo
from pathlib import Path

import streamlit as st

from stmgt.data.importers import import_generic, import_matrix, import_metr_la, import_snapshots
from stmgt.storage.workspace import slug

GENERIC, MATRIX, METR, SNAPSHOTS = "Generic folder", "Matrix CSVs", "METR-LA / PEMS-BAY", "Snapshot runs"
FORMATS = {
    GENERIC: "A folder with `nodes.csv`, `edges.csv` (or an N×N `adjacency.csv`), `speed.csv` (or "
             "`speed.parquet`: a `timestamp` column with UTC offset, then one km/h column per node) and "
             "optionally `weather.csv` — the format the simulator exports.",
    MATRIX: "Benchmarks of the T-GCN era (SZ-taxi, Los-loop): a speed CSV with a header row of node ids and "
            "one row per time step, a headerless N×N adjacency CSV in the same order, optionally a "
            "locations CSV. The files carry no timestamps, so give the first row's time and the cadence.",
    METR: "METR-LA / PEMS-BAY as DCRNN distributes them: the HDF5 speed table (mph), `adj_mx.pkl`, and "
          "optionally `graph_sensor_locations.csv`. Reading .h5 needs the PyTables package.",
    SNAPSHOTS: "The predecessor project's collection: a folder of `run_*` snapshots (`nodes.json`, "
               "`edges.json`, `traffic_edges.json`, `weather_snapshot.json`) taken irregularly; they are "
               "put on a regular grid.",
}
CADENCES = ["5min", "10min", "15min", "30min", "1h"]
GAPS = ["30min", "60min", "90min", "2h", "3h"]
UPLOAD, PATH = "Upload files", "Path on this machine"


def file_input(label: str, key: str, types: list[str], by_upload: bool, *, many: bool = False,
               folder: bool = False, help: str | None = None):
    """An uploader, or a path box when importing from this machine; returns the upload(s) or the text."""
    if by_upload:
        return st.file_uploader(label, type=types, accept_multiple_files=many, key=f"data_up_{key}", help=help)
    return st.text_input(f"{label} — {'folder' if folder else 'file'} path on the server", key=f"data_path_{key}",
                         help=help, placeholder="my-traffic-data" if folder else f"file.{types[0]}").strip()


def import_inputs(fmt: str, by_upload: bool):
    """The format's inputs; returns (reader for `staged_import`, default name, missing inputs)."""
    if fmt == GENERIC:
        folder = file_input("Dataset files" if by_upload else "Dataset", "generic", ["csv", "parquet", "json", "zip"],
                            by_upload, many=True, folder=True,
                            help="Select all the folder's files at once, or one .zip of the folder.")
        return (lambda stage: import_generic(stage(folder)), _stem(folder), [] if folder else ["the dataset files"])
    if fmt == MATRIX:
        speed = file_input("Speed CSV", "m_speed", ["csv"], by_upload)
        adjacency = file_input("Adjacency CSV", "m_adj", ["csv"], by_upload)
        locations = file_input("Locations CSV (optional)", "m_loc", ["csv"], by_upload,
                               help="`index,sensor_id,latitude,longitude` or `sensor_id,lat,lon`.")
        c1, c2, c3, c4 = st.columns([1.4, 1.4, 1, 1])
        start = c1.text_input("First row's time", key="data_m_start", placeholder="2012-03-01 00:00",
                              help="The files carry no timestamps: give the first row's local time (ISO "
                                   "8601). A UTC offset such as +08:00 is also understood.").strip()
        zones = ["UTC", *sorted(zoneinfo.available_timezones() - {"UTC"})]
        zone = c2.selectbox("Time zone", zones, key="data_m_tz", help="Where the sensors are: sets local time "
                            "of day and day of week, which the model uses.")
        freq = c3.selectbox("Cadence", CADENCES, key="data_m_freq", accept_new_options=True,
                            help="Time between rows, e.g. 5min or 1h.")
        units = c4.radio("Speeds in", ["km/h", "mph"], key="data_m_units", horizontal=True,
                         help="mph is converted to km/h.")
        missing = [name for name, v in [("the speed CSV", speed), ("the adjacency CSV", adjacency),
                                        ("the first row's time", start)] if not v]
        return (lambda stage: import_matrix(stage(speed), stage(adjacency), start=start, freq=freq,
                                            units="mph" if units == "mph" else "kmh",
                                            locations_csv=stage(locations), timezone=zone),
                _stem(speed), missing)
    if fmt == METR:
        speed = file_input("Speed table (.h5)", "r_h5", ["h5", "hdf5"], by_upload)
        adjacency = file_input("Adjacency pickle (adj_mx.pkl)", "r_pkl", ["pkl", "pickle"], by_upload)
        locations = file_input("Sensor locations CSV (optional)", "r_loc", ["csv"], by_upload)
        missing = [name for name, v in [("the .h5 speed table", speed), ("adj_mx.pkl", adjacency)] if not v]
        return (lambda stage: import_metr_la(stage(speed), stage(adjacency), locations_csv=stage(locations)),
                _stem(speed), missing)
    runs = file_input("Snapshot folder (.zip)" if by_upload else "Snapshot folder", "s_runs", ["zip"], by_upload,
                      folder=True, help="The directory that holds the run_* folders" +
                                        (", zipped." if by_upload else "."))
    c1, c2 = st.columns(2)
    freq = c1.selectbox("Grid cadence", CADENCES, index=2, key="data_s_freq", accept_new_options=True)
    gap = c2.selectbox("Interpolate across gaps up to", GAPS, index=1, key="data_s_gap", accept_new_options=True,
                       help="Longer gaps between snapshots stay missing rather than being made up.")
    return (lambda stage: import_snapshots(stage(runs), freq=freq, max_gap=gap), _stem(runs),
            [] if runs else ["the snapshot folder"])


def _stem(value) -> str:
    """A default dataset name: the folder's or file's name (none for several loose files)."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    name = value if isinstance(value, str) else getattr(value, "name", "")
    return slug(Path(name).name.split(".")[0]) if name else ""

