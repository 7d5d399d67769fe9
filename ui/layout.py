"""Rows that wrap rather than cut. `st.columns(n)` gives each column an nth of the width whatever it
holds: at 800 px with the sidebar open the main pane is under 500 px, a metric's "24.2 min" shrinks
to "2…" and a chart's title runs past its edge. These rows keep their parts side by side while they
fit and move a part that does not to the next line, whole."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator


def content_columns(count: int, gap: str = "small", vertical_alignment: str = "top") -> list[DeltaGenerator]:
    """`count` places used like `st.columns(count)`, each as wide as what it holds (a button, a metric)."""
    row = st.container(horizontal=True, gap=gap, vertical_alignment=vertical_alignment)
    return [row.container(width="content") for _ in range(count)]


def metric_columns(count: int) -> list[DeltaGenerator]:
    """`count` places for `st.metric`, each as wide as its metric, a little apart."""
    return content_columns(count, gap="medium")


def flex_columns(spec: int | Sequence[float], min_width: int, key: str, gap: str = "small",
                 vertical_alignment: str = "top") -> list[DeltaGenerator]:
    """Columns like `st.columns(spec)` (a count or relative widths) while each gets `min_width` px;
    where they do not, the last ones move to the next line and stretch there. Streamlit has no
    minimum width for a column, so a style sheet gives the row's items (its direct children) one;
    `key` names the row for it."""
    weights = [1.0] * spec if isinstance(spec, int) else list(spec)
    grow = " ".join(f".st-key-{key} > :nth-child({i}) {{ flex-grow: {w:g}; }}" for i, w in enumerate(weights, 1))
    st.html(f"<style>.st-key-{key} > * {{ min-width: min({min_width}px, 100%); }} {grow}</style>")
    row = st.container(horizontal=True, gap=gap, key=key, vertical_alignment=vertical_alignment)
    return [row.container() for _ in weights]
