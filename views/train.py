"""Train & load: train STMGT in the background with live progress, or pick or upload a trained model."""

from __future__ import annotations

import streamlit as st

from stmgt.data.dataset import split_anchors
from stmgt.errors import DataError
from stmgt.settings import SETTINGS
from ui import pages, state, train_progress, training
from ui.layout import content_columns, flex_columns
from ui.saved_runs import fine_tuned_from, saved_runs, upload
from ui.train_form import (SHAPE, by_config, checked_configs, device_field, duration_estimate, fields,
                           preset_picker, processes_field, start_from, start_job, weather_response_fields)
from ui.text import md


def training_form(dataset, busy: bool) -> None:
    """What the run trains on, the preset and the model it starts from, then the form in its parts:
    schedule, optimiser, model, run; more options; the weather response."""
    anchors = split_anchors(dataset)
    batch_size = SETTINGS["batch_size"].default
    per_epoch = max(1, len(anchors["train"]) // batch_size)   # whole batches, as Trainer
    st.markdown(f"Trains on **{md(state.dataset_label())}**: {len(anchors['train']):,} training windows "
                f"({per_epoch} batches of {batch_size} per epoch); the epoch kept is chosen on "
                f"{len(anchors['val']):,} validation windows, then scored on {len(anchors['test']):,} test "
                "windows against persistence, the historical average and a linear autoregression.")
    preset_picker()
    init, tune, start_gone = start_from(dataset)
    locked = init is not None
    with st.form("train_form", border=True):
        schedule, optimiser, model, run = flex_columns(4, 200, key="train_form_columns", gap="medium")
        with schedule:
            st.markdown("**Schedule**")
            values = fields("schedule", max_batches={"placeholder": f"all {per_epoch}"})
        with optimiser:
            st.markdown("**Optimiser**")
            values |= fields("optimiser")
        with model:
            st.markdown("**Model**")
            values |= fields("architecture", disabled=locked) | fields("regularisers")
        with run:
            st.markdown("**Run**")
            name = st.text_input("Run name", value="stmgt", max_chars=40, key="train_name",
                                 help="The run folder is this name plus the start time.")
            values |= fields("run") | {"device": device_field()}
            processes = processes_field()
            if values["device"] == "cpu":
                st.caption("On a CPU a full epoch of the default model takes many minutes: the *Quick look* "
                           "preset finishes in a few.")
        with st.expander("More options: LR schedule, Adam, regularisers, model inputs"):
            cols = flex_columns(2, 300, key="train_more_columns")
            with cols[0]:
                values |= fields("more")
            with cols[1]:
                no_weather = {"disabled": locked or not dataset.has_weather,
                              "value": SETTINGS["use_weather"].default and dataset.has_weather}
                values |= fields("inputs", disabled=locked, use_weather=no_weather)
        with st.expander("Weather response: taught and checked against the simulator"):
            values |= weather_response_fields(dataset)
        buttons = content_columns(2)
        submitted = buttons[0].form_submit_button("Start training", key="train_start", type="primary",
                                                  icon=":material/play_arrow:", disabled=busy)
        estimating = buttons[1].form_submit_button(
            "Estimate duration", key="train_estimate", icon=":material/timer:",
            help="Times one training step and one forward pass of this model here, then scales them by the "
                 "batches of every phase. Measured once per model, batch size and device.")
    if busy:
        st.caption("A training or an evaluation is running: wait for it or cancel it to start another.")
    model_values, train_values = by_config(values)
    if locked:      # the starting model's architecture, every setting the form does not show included
        model_values = init.config["model"] | {k: v for k, v in model_values.items() if k not in SHAPE}
        train_values |= {"init_from": str(init.path), "tune": tune}
        if model_values.get("use_weather", True) and not dataset.has_weather:
            st.error(f"The starting model, {fine_tuned_from(str(init.path))}, reads the weather and this dataset has "
                     "none, so it cannot be fine-tuned on it: start from a new model instead.")
            return
    configs = checked_configs(dataset, model_values, train_values)
    if configs is None:
        return
    duration_estimate(dataset, *configs, measure=estimating)
    if submitted and not start_gone:
        start_job(dataset, *configs, name, processes if values["device"] == "cuda" else 1)


# ---- the page -------------------------------------------------------------------------------------
st.title("Train & load")
st.caption("Train STMGT on the selected dataset in the background, or pick or upload a trained model. "
           "Every model made here joins the sidebar's model list.")
try:
    data = state.current_dataset()
    split_anchors(data)
except DataError as exc:
    st.error(f"The selected dataset cannot be used for training: {md(exc)}")
    pages.link(pages.DATA, "Import or fix a dataset on the Data page")
    st.stop()

train_progress.panel(data)
train_tab, runs_tab, upload_tab = st.tabs(["New training", "Saved runs", "Upload a checkpoint"])
with train_tab:
    training_form(data, busy=training.registry().active() is not None)
with runs_tab:
    saved_runs(data)
with upload_tab:
    upload(data)
