"""The Forecast quality page's parts: the monitor's figures (`stmgt.operations.quality`) at the
session's forecast time, cached in blocks, as a network table, a chart and table per horizon, the
flags in words, the roads worst first, and the way to fine-tune the model."""

from __future__ import annotations

import time
from dataclasses import astuple
from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from stmgt.data.live import is_live
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.quality import (COVERAGE_BAND, INTERVAL, MAE_TOLERANCE, MIN_SCORED, WINDOWS, Block, Card,
                                      Evidence, Issued, Monitor, Quality, WindowScores, expected_mae, horizon_minutes,
                                      percent, read_card)
from ui import pages, state
from ui.downloads import csv_download
from ui.eval_charts import MODEL_COLOURS, REFERENCE
from ui.ranked import road_table
from ui.text import md
from ui.train_form import START_KEY, take_settings_of

NETWORK_KEY = "quality_network"        # the network table's container: its heading and numbers stay put
MEASURES = {"mae": "MAE (km/h)", "crps": "CRPS (km/h)", "coverage": f"{percent(INTERVAL)} coverage"}
BASELINE_NAMES = {"persistence_mae": "Persistence", "historical_mae": "Historical average"}
SHOW_PROGRESS_AFTER_S = 0.3            # a bar appears only when the blocks are not all cached
DASHES = ("solid", "dash")             # one per window: 24 h, 7 days


@st.cache_data(show_spinner=False, max_entries=32)
def _issued(model_key: str, forecast_key: str, block: tuple[int, int, int]) -> Issued:
    return Monitor(state.current_forecaster()).issued(Block(*block))


@st.cache_data(show_spinner=False, max_entries=160)
def _evidence(model_key: str, evidence_key: str, forecast_key: str, block: tuple[int, int, int]) -> Evidence:
    """A block's errors; its forecasts come from their own cache, so a block still waiting for
    truth is rescored as steps arrive, not forecast again."""
    return Monitor(state.current_forecaster()).evidence(_issued(model_key, forecast_key, block))


def model_card(forecaster: Forecaster) -> Card:
    choice = state.current_model_choice()
    return read_card(choice.run, horizon_minutes(forecaster), state.dataset_label())


def assess(forecaster: Forecaster, now: int, card: Card) -> Quality:
    """The monitor's figures at step `now`, block by block from the caches; a progress bar shows
    while blocks are being computed."""
    monitor, key = Monitor(forecaster), state.model_key()
    slot, started = st.empty(), time.perf_counter()

    def fetch(block: Block) -> Evidence:
        return _evidence(key, monitor.evidence_key(block), monitor.forecast_key(block), astuple(block))

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - started > SHOW_PROGRESS_AFTER_S and done < total:
            slot.progress(done / total, text=f"Scoring the forecasts of the last {WINDOWS[-1].name}: "
                                             f"{done} of {total} blocks")

    quality = monitor.assess(now, card, fetch, progress)
    slot.empty()
    return quality


def intro(forecaster: Forecaster) -> None:
    every = " and ".join(f"the last {s.name}" + (f" (a forecast every {s.every / pd.Timedelta(hours=1):g} h)"
                                                 if s.every is not None else "") for s in WINDOWS)
    st.caption(f"How the forecasts made before the chosen time did, once their truth arrived: over {every}, "
               "beside the model card's test figures and two baselines on the same forecasts. Only truth that had "
               "arrived by then counts (a forecast made 1 h before is scored on its first hour), and only forecasts "
               "made in the test period: the model may have learnt from the earlier steps."
               + (" On this live dataset the time follows the newest step." if is_live(forecaster.dataset) else ""))


def card_notes(card: Card) -> None:
    for note in card.notes:
        st.info(md(note[0].upper() + note[1:]) + ".", icon=":material/info:")


def enough_truth(quality: Quality) -> bool:
    """False, with the reason in words, when no window holds a scored speed yet."""
    if any(w.network.scored[0] for w in quality.windows):
        return True
    st.info(f"No forecast made in the test period before {quality.time:%a %d %b %Y %H:%M} has any truth yet, so "
            "there is nothing to score: pick a later time"
            + (", or wait for the next steps to arrive." if quality.windows[0].window.clipped else "."),
            icon=":material/hourglass_empty:")
    return False


def _number(value: float, kind: str) -> str:
    if not np.isfinite(value):
        return "—"
    return percent(value, 1) if kind == "coverage" else f"{value:.2f}"


def network_table(quality: Quality, timestamps: pd.DatetimeIndex) -> None:
    """The network's figures over the whole horizon: each window beside the model card, the model
    beside the baselines; a stable heading and plain numbers (the browser test reads them)."""
    card = quality.card
    columns = {f"Last {w.window.name}": w for w in quality.windows}
    rows = {"STMGT MAE (km/h)": "mae", **{f"{name} MAE (km/h)": key for key, name in BASELINE_NAMES.items()},
            "STMGT CRPS (km/h)": "crps", f"{percent(INTERVAL)} interval coverage": "coverage"}
    table = {label: [_number(float(w.network.pooled(key)[0]), key) for w in columns.values()]
             + [_number(card.pooled(key), key) if card.available else "—"] for label, key in rows.items()}
    table["Forecasts scored"] = [f"{len(w.window.anchors):,}" for w in columns.values()] + ["—"]
    table["Speeds scored"] = [f"{int(w.network.scored[0]):,}" for w in columns.values()] + ["—"]
    frame = pd.DataFrame(table, index=[*columns, "Test (model card)"]).T
    with st.container(key=NETWORK_KEY):
        st.subheader("Network figures", anchor=False)
        st.table(frame)
    clipped = [w.window for w in quality.windows if w.window.clipped]
    spans = "; ".join(f"in the last {w.window.name}: {_span(w, timestamps)}" for w in quality.windows)
    st.caption(f"Over every road and horizon step that holds truth: the mean of the per-step figures. Forecasts made "
               f"{spans}." + (f" {_clipped_words(clipped)}" if clipped else "") + " The baselines are point "
               "forecasts (their CRPS is their MAE); the historical average is fitted on the training split.")


def _span(scores: WindowScores, timestamps: pd.DatetimeIndex) -> str:
    anchors = scores.window.anchors
    if not len(anchors):
        return "none"
    first, last = timestamps[anchors[[0, -1]]]
    return f"{first:%a %d %b %H:%M} – {last:%a %d %b %H:%M}"


def _clipped_words(windows) -> str:
    names = " and ".join(f"the last {w.name}" for w in windows)
    return f"The test period starts within {names}: the forecasts made before it are left out."


def flags_in_words(quality: Quality, graph) -> None:
    """The network's flags one by one, the roads' counted with the worst named; a plain all-clear."""
    network = [f for f in quality.flags if f.subject is None]
    roads = [f for f in quality.flags if f.subject is not None]
    for flag in network:
        st.warning(f"**Network**: {md(flag.words())}.", icon=":material/flag:")
    for scores in quality.windows:
        flagged = list(dict.fromkeys(f.subject for f in roads if f.window == scores.window.name))
        if flagged:
            named = ", ".join(md(graph.label(node)) for node in flagged[:3]) + (", …" if len(flagged) > 3 else "")
            st.warning(f"**{len(flagged)} road{'s' if len(flagged) > 1 else ''}** flagged in the last "
                       f"{scores.window.name} ({named}): see the roads below.", icon=":material/flag:")
    if not quality.flags:
        judged = [w.window.name for w in quality.windows if w.network.scored[0] >= MIN_SCORED]
        if judged:
            st.success(f"No flag in the last {' or '.join(judged)}: {percent(INTERVAL)} coverage within "
                       f"{percent(COVERAGE_BAND[0])}–{percent(COVERAGE_BAND[1])} and MAE within "
                       f"{percent(MAE_TOLERANCE)} of what the model card leads to expect, for the network and "
                       "every road.", icon=":material/check_circle:")
    unjudged = [w.window.name for w in quality.windows if w.roads.scored.max() < MIN_SCORED]
    st.caption(f"Flags: {percent(INTERVAL)} coverage outside {percent(COVERAGE_BAND[0])}–"
               f"{percent(COVERAGE_BAND[1])}, or an MAE more than {percent(MAE_TOLERANCE)} above the model card's at "
               "the same horizon steps. The card has network figures only, so a road is expected the card's MAE "
               "scaled by how much harder the road was than the network for persistence in the same window. "
               f"Under {MIN_SCORED:,} observed speeds is too few to judge"
               + (f": the roads' last {' and '.join(unjudged)} hold fewer (a road's errors within a day move "
                  "together), so no road is judged there." if unjudged else "."))


def by_horizon(quality: Quality) -> None:
    """One measure per horizon step: the windows, the card and the baselines, as a chart and a table."""
    st.subheader("By forecast horizon", anchor=False)
    measure = st.segmented_control("Measure", list(MEASURES), format_func=MEASURES.get, default="mae",
                                   key="quality_measure", required=True)
    minutes = quality.horizon_minutes
    table = pd.DataFrame(index=pd.Index([f"+{m} min" for m in minutes], name="Horizon"))
    for scores in quality.windows:
        table[f"STMGT, last {scores.window.name}"] = scores.network.means[measure][0]
    if quality.card.available and measure in quality.card.figures:
        table["STMGT, test (card)"] = quality.card.figures[measure]
    if measure == "mae":
        for key, name in BASELINE_NAMES.items():
            for scores in quality.windows:
                table[f"{name}, last {scores.window.name}"] = scores.network.means[key][0]
    st.plotly_chart(horizon_figure(table, minutes, measure), key="quality_horizon_chart")
    shown = table * (100 if measure == "coverage" else 1)
    for scores in quality.windows:
        shown[f"Forecasts, last {scores.window.name}"] = scores.forecasts
    st.container(key="quality_horizon_table").dataframe(
        shown, width="stretch", height=35 * (len(shown) + 1) + 3,
        column_config={column: st.column_config.NumberColumn(
            _short(column), help=column, format="%d" if column.startswith("Forecasts") else
            "%.1f %%" if measure == "coverage" else "%.2f") for column in shown})
    csv_download(shown.reset_index(), f"quality_{measure}_{quality.time:%Y%m%dT%H%M}.csv", "quality_horizon_csv")
    st.caption("A step holds the forecasts made at least that long before the chosen time."
               + (" Coverage in %; the band the flag watches is shaded." if measure == "coverage" else
                  " Lower is better."))


def _short(column: str) -> str:
    """A narrow header, e.g. 'STMGT 7 days' for 'STMGT, last 7 days', 'Hist. avg 24 h' for 'Historical average,
    last 24 h'."""
    return (column.replace(", last ", " ").replace(", test (card)", " card").replace("Historical average", "Hist. avg")
            .replace("Persistence", "Persist."))


def horizon_figure(table: pd.DataFrame, minutes: list[int], measure: str) -> go.Figure:
    fig = go.Figure()
    scale = 100 if measure == "coverage" else 1
    if measure == "coverage":
        fig.add_hrect(y0=100 * COVERAGE_BAND[0], y1=100 * COVERAGE_BAND[1], fillcolor="rgba(33, 113, 181, 0.08)",
                      line_width=0)
    for column in table:
        if column.startswith("Forecasts"):
            continue
        model = "stmgt" if column.startswith("STMGT") else \
            "persistence" if column.startswith("Persistence") else "historical_average"
        card = "test (card)" in column
        dash = "dot" if card else DASHES[int(column.endswith(WINDOWS[-1].name))]
        fig.add_trace(go.Scatter(x=minutes, y=table[column] * scale, name=column, mode="lines+markers",
                                 line=dict(color=REFERENCE if card else MODEL_COLOURS[model], dash=dash,
                                           width=3 if model == "stmgt" and not card else 2),
                                 hovertemplate="%{y:.2f}" + (" %" if measure == "coverage" else " km/h")))
    fig.update_xaxes(title="forecast horizon (minutes ahead)", tickvals=minutes)
    fig.update_yaxes(title=MEASURES[measure].replace("coverage", "coverage (%)"), rangemode="tozero")
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=10, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig


def roads(quality: Quality, graph) -> None:
    """Every road's figures in one window, flagged and worst first (most flags, then the MAE furthest
    above what the card leads to expect); a row selects its road on every page."""
    st.subheader("Roads", anchor=False)
    names = {w.window.name: w for w in quality.windows}
    judged = [n for n, w in names.items() if w.roads.scored.max() >= MIN_SCORED]     # where roads can be flagged
    name = st.segmented_control("Window", list(names), format_func=lambda n: f"Last {n}",
                                default=(judged or list(names))[0], key="quality_road_window", required=True)
    scores = names[name]
    expected = expected_mae(scores, quality.card)[1:]
    figures = scores.roads
    flags = {}
    for flag in quality.flags:
        if flag.window == name and flag.subject is not None:
            flags.setdefault(flag.subject, []).append(
                f"coverage {percent(flag.value)}" if flag.measure == "coverage"
                else f"MAE +{percent(flag.value / flag.reference - 1)}")
    ids = graph.node_ids
    table = pd.DataFrame({"name": [graph.names[n] for n in ids], "node_id": ids,
                          "flags": ["; ".join(flags.get(n, [])) for n in ids],
                          "mae": figures.pooled("mae"), "expected_mae": expected,
                          "persistence_mae": figures.pooled("persistence_mae"),
                          "historical_mae": figures.pooled("historical_mae"), "crps": figures.pooled("crps"),
                          "coverage": 100 * figures.pooled("coverage"), "scored": figures.scored})
    order = table.assign(count=[len(flags.get(n, [])) for n in ids], ratio=table["mae"] / table["expected_mae"])
    table = table.loc[order.sort_values(["count", "ratio"], ascending=False, na_position="last",
                                        kind="stable").index].round(3)
    st.caption(f"Forecasts made in the last {name}, every road ranked worst first: the flagged ones, then by how far "
               "its MAE lies above what the model card leads to expect of it. Click a row to select its road on "
               "every page.")
    kmh = partial(st.column_config.NumberColumn, format="%.2f")
    road_table(table, "quality_roads", f"quality_roads_{name.replace(' ', '')}_{quality.time:%Y%m%dT%H%M}.csv", {
        "name": st.column_config.TextColumn("Road", width="medium"), "node_id": "Node",
        "flags": st.column_config.TextColumn("Flags", help="What leaves the rule in this window."),
        "mae": kmh("MAE", help="STMGT's mean absolute error (km/h) over the steps holding truth."),
        "expected_mae": kmh("Expected", help="The model card's MAE scaled to this road (km/h): the card's "
                                              "network MAE × this road's persistence MAE / the network's."),
        "persistence_mae": kmh("Persistence", help="Persistence's MAE on the same steps (km/h)."),
        "historical_mae": kmh("Hist. average", help="The historical average's MAE on the same steps (km/h)."),
        "crps": kmh("CRPS", help="STMGT's continuous ranked probability score (km/h)."),
        "coverage": st.column_config.NumberColumn(f"{percent(INTERVAL)} cov.", format="%.0f %%",
                                                  help=f"Share of observed speeds inside the {percent(INTERVAL)} "
                                                       "interval."),
        "scored": st.column_config.NumberColumn("Speeds", format="%d", help="Observed speeds scored."),
    })


def fine_tune(dataset) -> None:
    """The way to fine-tune the selected model: the Train page's *Start from* with it chosen."""
    choice = state.current_model_choice()
    st.subheader("Fine-tune", anchor=False)
    train = dataset.splits()["train"]
    first, last = dataset.timestamps[train.start], dataset.timestamps[train.stop - 1]
    live = (" The steps that arrived since this live feed started are in its test period, so a fine-tune here does "
            "not learn from them: to teach the model the recent weeks, import a dataset whose training period holds "
            "them (Data page) and fine-tune on it." if is_live(dataset) else "")
    st.markdown(f"When the flags persist, fine-tune **{md(choice.label)}**: *Train & load* opens with it chosen under "
                f"*Start from* and trains from its weights on the training split of {md(state.dataset_label())} "
                f"({first:%d %b %Y} – {last:%d %b %Y}).{live}")
    if st.button("Fine-tune this model", key="quality_fine_tune", icon=pages.TRAIN.icon,
                 on_click=_start_from, args=(choice.label, choice.run)):
        st.switch_page(pages.TRAIN.path)


def _start_from(label: str, run) -> None:
    """Choose `run` under the Train page's *Start from*, with the settings it brings."""
    st.session_state[START_KEY] = label
    take_settings_of({label: run})
