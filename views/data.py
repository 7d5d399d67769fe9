"""Data: bring your own traffic data. Import it by upload or by path, check the validation
report and a preview, then save it to the workspace, where the sidebar lists it."""

import zoneinfo
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from stmgt.data.folder import write_folder
from stmgt.data.importers import import_generic, import_matrix, import_metr_la, import_snapshots, validation_report
from stmgt.errors import DataError
from stmgt.storage.workspace import slug
from ui import data_import, server_files, state
from ui.maps import SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded
from ui.text import code, html, md

RESULT, SAVED, DELETING = "data_result", "data_saved", "data_deleting"
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


def check(read, name: str, label: str) -> None:
    try:
        with st.spinner("Reading and checking the data…"):
            result = data_import.staged_import(read)
    except (DataError, OSError) as exc:
        st.session_state[RESULT] = {"error": str(exc), "format": st.session_state.get("data_format")}
        return
    st.session_state[RESULT] = {"result": result, "label": label}
    st.session_state.pop(SAVED, None)
    st.session_state["data_name"] = name or "my-dataset"
    st.session_state["data_replace"] = False
    st.session_state.pop("data_nodes", None)


def show_report(result) -> None:
    report = validation_report(result)
    days = report["days"]
    row = st.columns(4)
    row[0].metric("Span", f"{days:.1f} days" if days >= 2 else f"{days * 24:.1f} hours")
    row[1].metric("Cadence", f"{report['cadence_min']:g} min")
    row[2].metric("Time steps", f"{report['steps']:,}")
    row[3].metric("Missing readings", f"{100 * report['missing_share']:.1f} %")
    row = st.columns(4)
    row[0].metric("Nodes", report["nodes"])
    row[1].metric("Road segments", report["edges"])
    row[2].metric("Speeds look like", report["unit_guess"],
                  help="A guess from their typical values; the dashboard expects km/h.")
    row[3].metric("Weather", "included" if report["has_weather"] else "none")
    st.caption(f"{report['start']:%a %d %b %Y %H:%M} → {report['end']:%a %d %b %Y %H:%M} ({report['start'].tz}) · "
               f"mean speed {report['mean_speed']:.1f} km/h")
    if not report["has_weather"]:
        st.warning("No weather in this data: models will train without weather, and the Weather what-if page "
                   "will be unavailable for it.", icon=":material/cloud_off:")
    if report["notes"]:
        with st.container(border=True):
            st.markdown("**Importer notes**\n\n" + "\n".join(f"- {md(note)}" for note in report["notes"]))

    left, right = st.columns([3, 2])
    with left:
        st.markdown("##### Road graph by mean speed")
        preview_map(result.dataset, report["missing_by_node"])
    with right:
        st.markdown("##### Missing readings per node")
        missing_chart(report["missing_by_node"], result.dataset)
    st.markdown("##### Speed over time")
    speed_chart(result.dataset)


def preview_map(dataset, missing: pd.Series) -> None:
    mean = dataset.speed_frame().mean()
    graph = dataset.graph
    nodes = graph.nodes[["node_id", "name"]].assign(mean_speed=rounded(mean, 1), missing=rounded(100 * missing, 1))
    basemap = graph.has_coordinates and basemap_toggle("data_basemap")
    st.pydeck_chart(road_map(graph, nodes, ramp(mean.to_numpy(), SPEED_STOPS), basemap=basemap,
                             tooltip_html="<b>{name}</b><br/>{node_id}<br/>mean {mean_speed} km/h · "
                                          "{missing} % missing", size=(460, 420)), height=420)
    st.html(legend_html(SPEED_STOPS, "mean speed over the whole span, km/h (grey = never observed)"))
    if not graph.has_coordinates:
        st.caption(":material/scatter_plot: No node locations in this data: the map shows a layout computed "
                   "from the road graph, not geography.")


def missing_chart(missing: pd.Series, dataset, limit: int = 20) -> None:
    if not missing.any():
        st.success("Every node has a reading at every time step.")
        return
    worst = missing.sort_values(ascending=False).head(limit)[::-1]
    names = dict(zip(dataset.graph.node_ids, dataset.graph.nodes["name"]))
    fig = go.Figure(go.Bar(x=100 * worst.to_numpy(), y=[html(n) for n in worst.index], orientation="h",
                           marker_color="#8c6bb1", customdata=[html(names[n]) for n in worst.index],
                           hovertemplate="%{y} · %{customdata}<br>%{x:.1f} % missing<extra></extra>"))
    fig.update_layout(height=max(220, 18 * len(worst) + 70), margin=dict(l=0, r=10, t=10, b=0),
                      xaxis_title="missing readings (%)", yaxis=dict(type="category"))
    st.plotly_chart(fig, width="stretch")
    if len(missing) > limit:
        st.caption(f"The {limit} nodes with the most missing readings, of {len(missing)}.")


def speed_chart(dataset) -> None:
    ids = dataset.graph.node_ids
    default = [ids[i] for i in sorted({0, len(ids) // 2, len(ids) - 1})]
    picked = st.multiselect("Nodes", ids, default=default, key="data_nodes", max_selections=8,
                            format_func=state.node_option(dataset.graph))
    frame = dataset.speed_frame()
    fig = go.Figure([go.Scattergl(x=frame.index, y=frame[n], name=html(n), mode="lines",
                                  hovertemplate=f"{html(n)}<br>%{{x|%a %d %b %H:%M}}<br>%{{y:.1f}} km/h<extra></extra>")
                     for n in picked])
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0), yaxis_title="speed (km/h)",
                      legend=dict(orientation="h", y=1.08), hovermode="x unified")
    st.plotly_chart(fig, width="stretch")
    st.caption("Gaps in a line are missing readings.")


def save_form(result) -> None:
    ws = state.workspace()
    c1, c2 = st.columns([2, 1])
    name = c1.text_input("Dataset name", key="data_name", max_chars=60)
    target = ws.dataset_dir(name)
    c1.caption(f"Saved to {code(target)} and listed in the sidebar as *Imported: {md(target.name)}*.")
    replace = c2.checkbox("Replace a dataset with this name", key="data_replace")
    if not c2.button("Save dataset", key="data_save", type="primary", icon=":material/save:"):
        return
    if target.exists() and not replace:
        st.error(f"A dataset named **{md(target.name)}** already exists. Choose another name, or tick "
                 "*Replace a dataset with this name* to overwrite it.")
        return
    try:
        with st.spinner("Saving…"):
            write_folder(result.dataset, target, overwrite=replace, option="Dataset name")
    except (DataError, OSError) as exc:
        st.error(f"Could not save the dataset: {md(exc)}")
        return
    state.forget_dataset(target)
    st.session_state[SAVED] = target.name
    del st.session_state[RESULT]
    st.rerun()


def use_dataset(name: str) -> None:
    st.session_state["dataset"] = f"Imported: {name}"
    st.session_state.pop(SAVED, None)


def delete_dataset(name: str) -> None:
    ws = state.workspace()
    st.session_state.pop(DELETING, None)
    path = ws.datasets().get(name)
    if path is None:  # already gone (another tab)
        return
    try:
        kept = data_import.delete_saved(path, ws.datasets_dir)
    except DataError as exc:
        st.toast(f"{md(name)} was not deleted: {md(exc)}", icon=":material/error:")
        return
    state.forget_dataset(path)
    st.toast(f"Deleted {md(name)}." + (f" Kept what this tool did not write, in its folder: "
                                       f"{md(', '.join(p.name for p in kept))}." if kept else ""),
             icon=":material/delete:")


def saved_datasets() -> None:
    ws = state.workspace()
    saved = ws.datasets()
    if not saved:
        st.info("No imported datasets yet. Import one on the first tab; it will be saved in "
                f"{code(ws.datasets_dir)}.", icon=":material/inbox:")
        return
    rows = []
    for name, path in saved.items():
        s = data_import.saved_summary(path)
        if "error" in s:
            rows.append({"Name": name, "Problem": s["error"]})
            continue
        rows.append({"Name": name, "Source": s["source"], "Start": s["start"].strftime("%Y-%m-%d %H:%M %Z"),
                     "Days": round(s["days"], 1), "Cadence (min)": s["cadence_min"], "Steps": s["steps"],
                     "Nodes": s["nodes"], "Segments": s["edges"],
                     "Missing (%)": round(100 * s["missing_share"], 1),
                     "Weather": "yes" if s["has_weather"] else "no — no what-if"})
    st.dataframe(pd.DataFrame(rows).set_index("Name"), width="stretch")
    st.caption(f"Stored in {code(ws.datasets_dir)}.")
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.selectbox("Imported dataset", list(saved), key="data_manage")
    selected = st.session_state.get("dataset") == f"Imported: {name}"
    # Callbacks read the choice from session state: their arguments would be the previous run's.
    c2.button("In use" if selected else "Use in the sidebar", key="data_use", disabled=selected,
              on_click=lambda: use_dataset(st.session_state["data_manage"]), icon=":material/check:", width="stretch")
    c3.button("Delete…", key="data_delete", icon=":material/delete:", width="stretch",
              on_click=lambda: st.session_state.update({DELETING: st.session_state["data_manage"]}))
    pending = st.session_state.get(DELETING)
    if pending in saved:
        with st.container(border=True):
            st.warning(f"Delete **{md(pending)}** and its files? Models trained on it stay in the workspace but can "
                       "no longer be evaluated on it.", icon=":material/warning:")
            with st.container(horizontal=True):
                st.button("Delete", key="data_delete_confirm", type="primary", icon=":material/delete:",
                          on_click=delete_dataset, args=(pending,))
                st.button("Cancel", key="data_delete_cancel", on_click=lambda: st.session_state.pop(DELETING, None))


st.title("Data")
st.caption("Bring your own traffic data: import it, check what was read, then save it to the workspace "
           "to train and forecast on it.")
tab_import, tab_saved = st.tabs([":material/upload: Import a dataset", ":material/database: Imported datasets"])

with tab_import:
    if st.session_state.get(SAVED):
        name = st.session_state[SAVED]
        with st.container(border=True):
            st.success(f"Saved **{md(name)}**. The sidebar lists it as *Imported: {md(name)}*.",
                       icon=":material/check:")
            st.button(f"Use {md(name)} now", key="data_use_saved", type="primary", on_click=use_dataset, args=(name,))
    fmt = st.radio("Format", list(FORMATS), horizontal=True, key="data_format")
    st.caption(FORMATS[fmt])
    allowed = server_files.server_folder()
    by_upload = allowed is None or st.radio(
        "Source", [UPLOAD, PATH], horizontal=True, key="data_source",
        help=f"Uploads are read from a temporary folder; paths only inside {md(allowed)} on the server. Nothing "
             "is saved until you press Save.") == UPLOAD
    read, default_name, missing = import_inputs(fmt, by_upload)
    if st.button("Check the data", key="data_check", type="primary", icon=":material/fact_check:",
                 disabled=bool(missing)):
        check(read, default_name, f"{fmt}, {'uploaded' if by_upload else 'from a path'}")
    if missing:
        st.caption("Still needed: " + ", ".join(missing) + ".")

    outcome = st.session_state.get(RESULT)
    if outcome and "error" in outcome:
        st.error(f"**This data cannot be imported.** {md(outcome['error'])}", icon=":material/error:")
        st.caption(f"Nothing was saved. Fix the file named above and check again. What this format expects: "
                   f"{FORMATS.get(outcome.get('format'), '')}")
    elif outcome:
        st.divider()
        st.subheader("Validation report")
        st.caption(f"{outcome['label']} — nothing is saved until you press *Save dataset* below.")
        show_report(outcome["result"])
        st.divider()
        st.subheader("Save")
        save_form(outcome["result"])

with tab_saved:
    saved_datasets()
