"""The Train page's saved runs: the table of every run in the workspace, an uploaded checkpoint
saved as a run, and what to do next with a run (use it in the sidebar, evaluate it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from stmgt.data.sources import describe
from stmgt.errors import DataError
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run, import_checkpoint
from ui import pages, state, training
from ui.labels import attention_heads
from ui.layout import content_columns
from ui.text import md

UPLOADS_KEY = "train_uploads"  # upload file id -> run name, so a rerun never saves an upload twice


def run_label(run: Run, dataset) -> str | None:
    """The sidebar's label for `run`, or None when it was made for another road graph."""
    choices, _ = state.model_choices(dataset.graph.fingerprint())
    return next((c.label for c in choices if c.run.path == run.path), None)


def _select(label: str) -> None:
    st.session_state[state.MODEL_KEY] = label


def use_button(run: Run, dataset, key: str) -> None:
    """Select `run` in the sidebar (through a callback: the sidebar's widget is drawn already)."""
    label = run_label(run, dataset)
    if label is None:
        st.caption("This model was made for another road graph: switch the sidebar's dataset to use it.")
    elif st.session_state.get(state.MODEL_KEY) == label:
        st.button("Selected in the sidebar", key=key, disabled=True, icon=":material/check:")
    else:
        st.button("Use this model", key=key, type="primary", icon=":material/check_circle:",
                  on_click=_select, args=(label,), help=f"Selects '{md(label)}' in the sidebar for every page.")


def next_steps(run: Run, dataset, key: str) -> None:
    """Use the run, and evaluate it or see its evaluation."""
    cols = content_columns(2, vertical_alignment="center")
    with cols[0]:
        use_button(run, dataset, key=f"{key}_use")
    with cols[1]:
        if run.has_metrics:
            pages.link(pages.EVALUATION, "See its evaluation")
        else:
            training.evaluate_button(run, dataset, state.current_dataset_spec(), state.device(), key=f"{key}_evaluate")


def fine_tuned_from(init_from: str) -> str:
    """How a fine-tuned run's start is named in Markdown (the run's name escaped)."""
    return "the bundled model" if Path(init_from).resolve() == BUNDLED_RUN else f"run {md(Path(init_from).name)}"


def best_val_mae(run: Run) -> float | None:
    history = run.history()
    if "val_mae" in history and history["val_mae"].notna().any():
        return float(history["val_mae"].min())
    return run.config.get("checkpoint", {}).get("val_mae")   # an uploaded checkpoint's own record


def source(config: dict) -> str:
    train = config.get("train")
    init_from = train.get("init_from") if isinstance(train, dict) else None
    if isinstance(init_from, str):
        return f"fine-tuned from {fine_tuned_from(init_from)}"
    return config.get("source", "trained")


def saved_runs(dataset) -> None:
    runs = state.workspace().runs()
    if not runs:
        st.info("No saved runs yet: train one in the first tab or upload a checkpoint. "
                "The bundled model is always in the sidebar.")
        return
    fingerprint = dataset.graph.fingerprint()
    rows = []
    for run in runs:
        try:
            config = run.config
            test_mae = run.metrics()["models"]["stmgt"]["overall"]["mae"] if run.has_metrics else None
        except (DataError, KeyError) as exc:
            rows.append({"Run": run.name, "Source": f"damaged: {exc}"})
            continue
        rows.append({"Run": run.name, "Status": run.status.state,
                     "Data": describe(config["data"]) if config.get("data") else "–",
                     "Best val MAE (km/h)": best_val_mae(run), "Test MAE (km/h)": test_mae,
                     "Parameters": config.get("parameters"), "Device": config.get("device"),
                     "Created": pd.to_datetime(config.get("created")), "Source": source(config),
                     "This graph": config.get("graph_fingerprint") == fingerprint})
    small = dict(width="small")       # every column in view at 1440 px: long cells truncate, hover shows all
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"Run": st.column_config.TextColumn(width="medium"),
                                "Status": st.column_config.TextColumn(**small),
                                "Data": st.column_config.TextColumn(**small),
                                "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", **small),
                                "Best val MAE (km/h)": st.column_config.NumberColumn(
                                    "Val MAE", help="Best validation MAE, km/h", format="%.2f", **small),
                                "Test MAE (km/h)": st.column_config.NumberColumn(
                                    "Test MAE", help="Test MAE over all horizons, km/h", format="%.2f", **small),
                                "Parameters": st.column_config.NumberColumn(format="localized", **small),
                                "Device": st.column_config.TextColumn(**small),
                                "Source": st.column_config.TextColumn(**small),
                                "This graph": st.column_config.CheckboxColumn(**small)})
    st.caption("Newest first. Test MAE is over all horizons of the test split, empty until the run is evaluated; "
               "*This graph*: made for the selected dataset's road graph, so it can be used with it.")
    fitting = [r for r in runs if run_label(r, dataset)]
    if not fitting:
        st.info("None of these runs was made for the selected dataset's road graph.")
        return
    pick = st.selectbox("Run", fitting, format_func=lambda r: r.name, key="train_pick")
    next_steps(pick, dataset, key="train_pick")


def upload(dataset) -> None:
    st.markdown("Add an STMGT `checkpoint.pt` trained on this dataset's road graph "
                f"({dataset.num_nodes} nodes). It is checked before anything is saved.")
    file = st.file_uploader("STMGT checkpoint", type=["pt"], key="train_upload")
    if file is None:
        return
    saved = st.session_state.setdefault(UPLOADS_KEY, {})
    if file.file_id not in saved:
        stem = file.name.rsplit(".", 1)[0]
        try:
            run = import_checkpoint(file.getvalue(), state.workspace().new_run_dir(
                "uploaded" if stem == "checkpoint" else stem), dataset.graph, state.current_dataset_spec())
        except DataError as exc:
            st.error(f"**{md(file.name)}** cannot be used: {md(exc.problem)}", icon=":material/error:")
            return
        saved[file.file_id] = run.name
        st.rerun()                      # so the sidebar lists the new run
    run = Run(state.workspace().runs_dir / saved[file.file_id])
    config, meta = run.config, run.config["checkpoint"]
    st.success(f"**{md(file.name)}** is saved as **Run: {md(run.name)}**: {config['parameters']:,} parameters, "
               f"{attention_heads(config['model'])}"
               + (f", best validation MAE {meta['val_mae']:.2f} km/h at epoch {meta['epoch']}"
                  if "val_mae" in meta else "") + ".", icon=":material/task_alt:")
    next_steps(run, dataset, key="train_upload")
