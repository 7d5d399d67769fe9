"""STMGT traffic forecasting dashboard: `streamlit run app.py`."""

import streamlit as st

from stmgt.allocator import reuse_freed_memory
from ui import state

reuse_freed_memory()        # CPU forecasts ~30 % faster (stmgt/allocator.py); cheap to repeat on every rerun

# An emoji icon is drawn in the page (a data URI); a :material/…: one is fetched from fonts.gstatic.com.
st.set_page_config(page_title="STMGT · traffic forecasts", page_icon="🚦", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/forecast_map.py", title="Forecast map", icon=":material/map:"),
    st.Page("views/node_forecast.py", title="Node forecast", icon=":material/show_chart:"),
    st.Page("views/route.py", title="Route", icon=":material/route:"),
    st.Page("views/interpretability.py", title="Interpretability", icon=":material/hub:"),
    st.Page("views/what_if.py", title="Weather what-if", icon=":material/rainy:"),
    st.Page("views/train.py", title="Train & load", icon=":material/model_training:"),
    st.Page("views/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("views/data.py", title="Data", icon=":material/database:"),
]

page = st.navigation(PAGES)
state.sidebar()
page.run()
