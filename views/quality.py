"""Forecast quality: as the truth arrives, how the forecasts made in the last 24 h and 7 days did
(MAE, CRPS, 80 % coverage) beside the model card's test figures and the baselines, for the network
and per road, with flags where they have drifted and the way to fine-tune. On a dataset that keeps
arriving the time is the newest step, so the figures roll on as steps arrive."""

import streamlit as st

from stmgt.errors import DataError
from ui import quality, state
from ui.text import md

st.title("Forecast quality")
forecaster = state.require_forecaster()
quality.intro(forecaster)
try:
    now = state.anchor_picker(forecaster, "Scored as of")
    card = quality.model_card(forecaster)
    result = quality.assess(forecaster, now, card)
except DataError as exc:
    st.error(f"The forecasts cannot be scored on this dataset: {md(exc)}")
    st.stop()
quality.card_notes(card)
if quality.enough_truth(result):
    quality.flags_in_words(result, forecaster.dataset.graph)
    quality.network_table(result, forecaster.dataset.timestamps)
    quality.by_horizon(result)
    quality.roads(result, forecaster.dataset.graph)
quality.fine_tune(forecaster.dataset)
