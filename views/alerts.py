"""Alerts: roads whose observed speed fell far below what the model expected of them, at a
false-alarm rate the analyst sets (calibrated on the validation split). Current alerts on the map
and ranked, the history of the last day or week, and the alerts as CSV or JSON. On a dataset that
keeps arriving, the forecast time is the newest step: the page shows what is in alert now."""

import streamlit as st

from ui import alerts, state

st.title("Alerts")
forecaster = state.require_forecaster()
alerts.intro(forecaster)
watch = alerts.watch_or_stop(forecaster)
alerts.headline(watch, forecaster.dataset)
alerts.current_alerts(watch, forecaster)
alerts.history(watch, forecaster.dataset)
alerts.exports(watch, forecaster.dataset)
