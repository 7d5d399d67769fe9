"""Ranked road tables: one row per road, ranked by what a page asks about, so the page says which
roads and not only how many. A click on a row selects that road on every page (the shared road
choice, `ui.state.NODE_KEY`), and the table's selected row follows that choice wherever it was made
(a map click, a select box, another page). The same table is offered as a spreadsheet-safe CSV."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from ui import state
from ui.downloads import csv_download

ROW_PX = 35                         # st.dataframe's row height
VISIBLE_ROWS = 10                   # rows shown before the table scrolls


def road_table(table: pd.DataFrame, key: str, file_name: str, column_config: dict) -> None:
    """`table` (ranked, one row per road, with a `node_id` column; as shown, so as downloaded) as a
    table whose rows select their road, and its CSV download. Cells are plain text in a table, so
    road names go in as they are; the CSV neutralises them for spreadsheets."""
    ids = table["node_id"].tolist()
    chosen = st.session_state.get(state.NODE_KEY)
    # The selection shown is the session's road, set before the table is drawn (Streamlit applies it
    # as a programmatic selection), so a row never stays selected for a road no longer chosen.
    st.session_state[key] = {"selection": {"rows": [ids.index(chosen)] if chosen in ids else [], "columns": [],
                                           "cells": []}}
    st.dataframe(table, key=key, hide_index=True, on_select=partial(select_row, key, ids),
                 selection_mode="single-row", column_config=column_config,
                 height=ROW_PX * (min(len(table), VISIBLE_ROWS) + 1) + 3, placeholder="—")
    csv_download(table, file_name, f"{key}_csv")


def select_row(key: str, ids: list[str]) -> None:
    """`on_select` callback of the table keyed `key` whose rows are the roads `ids`: the clicked row's
    road becomes the selected road on every page (clicking it again to clear it keeps the road)."""
    rows = st.session_state[key].selection.rows
    if rows:
        st.session_state[state.NODE_KEY] = ids[rows[0]]
