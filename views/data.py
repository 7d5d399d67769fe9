"""Data: bring your own traffic data. Import it by upload or by path, check the validation
report and a preview, then save it to the workspace, where the sidebar lists it."""

import pandas as pd
import streamlit as st

from stmgt.data.folder import write_folder
from stmgt.errors import DataError
from ui import data_import, server_files, state
from ui.data_format import format_guide
from ui.data_report import show_report
from ui.import_form import FORMATS, GENERIC, PATH, UPLOAD, import_inputs
from ui.layout import flex_columns
from ui.text import code, md

RESULT, SAVED, DELETING = "data_result", "data_saved", "data_deleting"


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


def save_form(result) -> None:
    ws = state.workspace()
    c1, c2 = flex_columns([2, 1], 220, key="data_save_row")
    name = c1.text_input("Dataset name", key="data_name", max_chars=60)
    target = ws.dataset_dir(name)
    c1.caption(f"Saved to {code(target)} and listed in the sidebar as *{md(state.imported_label(target.name))}*.")
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
    st.session_state[state.DATASET_KEY] = state.imported_label(name)
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
    st.container(key="data_datasets_table").dataframe(pd.DataFrame(rows).set_index("Name"), width="stretch")
    st.caption(f"Stored in {code(ws.datasets_dir)}.")
    c1, c2, c3 = flex_columns([2, 1, 1], 180, key="data_manage_row", vertical_alignment="bottom")
    name = c1.selectbox("Imported dataset", list(saved), key="data_manage")
    selected = st.session_state.get(state.DATASET_KEY) == state.imported_label(name)
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


def import_tab() -> None:
    """Choose a format and the files, check them, then the report and the save form."""
    if st.session_state.get(SAVED):
        name = st.session_state[SAVED]
        with st.container(border=True):
            st.success(f"Saved **{md(name)}**. The sidebar lists it as *{md(state.imported_label(name))}*.",
                       icon=":material/check:")
            st.button(f"Use {md(name)} now", key="data_use_saved", type="primary", on_click=use_dataset, args=(name,))
    fmt = st.radio("Format", list(FORMATS), horizontal=True, key="data_format")
    st.caption(FORMATS[fmt])
    if fmt == GENERIC:
        format_guide()
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
    outcome_section(st.session_state.get(RESULT))


def outcome_section(outcome: dict | None) -> None:
    """The checked data's error, or its validation report and the save form."""
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


st.title("Data")
st.caption("Bring your own traffic data: import it, check what was read, then save it to the workspace "
           "to train and forecast on it.")
tab_import, tab_saved = st.tabs([":material/upload: Import a dataset", ":material/database: Imported datasets"])
with tab_import:
    import_tab()
with tab_saved:
    saved_datasets()
