"""CSV downloads. Every table the dashboard offers as a file goes through `stmgt.storage.exports`, so no
cell (an imported node's name, a street, a horizon label like "+15 min") becomes a live formula in
a spreadsheet. `st.dataframe`'s own "Download as CSV" writes cells as they are, so
`.streamlit/config.toml` turns it off (`client.disableDataExport`) and pages offer this instead."""

import re

import pandas as pd
import streamlit as st

from stmgt.storage.exports import csv_bytes


def csv_download(frame: pd.DataFrame, file_name: str, key: str, label: str = "Download CSV") -> None:
    """A download button for `frame`'s columns as a spreadsheet-safe CSV. The file name may carry a
    node id, so anything but letters, digits, `.`, `_` and `-` becomes `_`."""
    st.download_button(label, csv_bytes(frame), file_name=re.sub(r"[^\w.-]+", "_", file_name), mime="text/csv",
                       icon=":material/download:", key=key)
