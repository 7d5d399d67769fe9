"""STMGT traffic forecasting dashboard: `streamlit run app.py`."""

import streamlit as st

from stmgt.allocator import reuse_freed_memory
from ui import pages, state

reuse_freed_memory()        # faster CPU forecasts (stmgt/allocator.py); cheap to repeat on every rerun

# An emoji icon is drawn in the page (a data URI); a :material/…: one is fetched from fonts.gstatic.com.
st.set_page_config(page_title="STMGT · traffic forecasts", page_icon="🚦", layout="wide")

page = pages.navigation()
state.sidebar()
page.run()
