"""The dashboard's pages, each written once: its file, title and icon. `app.py` builds the
navigation from `ALL`, and every link between pages goes through `link`, so a page is renamed or
moved in one place."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class Page:
    path: str               # the page's script, relative to app.py
    title: str
    icon: str
    default: bool = False   # the page the dashboard opens on


OVERVIEW = Page("views/overview.py", "Overview", ":material/dashboard:", default=True)
FORECAST_MAP = Page("views/forecast_map.py", "Forecast map", ":material/map:")
NODE_FORECAST = Page("views/node_forecast.py", "Node forecast", ":material/show_chart:")
ROUTE = Page("views/route.py", "Route", ":material/route:")
INTERPRETABILITY = Page("views/interpretability.py", "Interpretability", ":material/hub:")
WHAT_IF = Page("views/what_if.py", "Weather what-if", ":material/rainy:")
TRAIN = Page("views/train.py", "Train & load", ":material/model_training:")
EVALUATION = Page("views/evaluation.py", "Evaluation", ":material/analytics:")
DATA = Page("views/data.py", "Data", ":material/database:")
ALERTS = Page("views/alerts.py", "Alerts", ":material/notification_important:")
QUALITY = Page("views/quality.py", "Forecast quality", ":material/fact_check:")

ALL = (OVERVIEW, FORECAST_MAP, NODE_FORECAST, ALERTS, QUALITY, ROUTE, INTERPRETABILITY, WHAT_IF, TRAIN, EVALUATION,
       DATA)


def navigation():
    """The sidebar's page menu over `ALL`; returns the page to run."""
    return st.navigation([st.Page(p.path, title=p.title, icon=p.icon, default=p.default) for p in ALL])


def link(page: Page, label: str) -> None:
    """A link to `page`, drawn with the page's own icon."""
    st.page_link(page.path, label=label, icon=page.icon)
