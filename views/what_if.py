"""Weather what-if: edit the weather over the forecast horizon, re-forecast, and see what changes and
on which roads most; on simulated data, beside the simulator's true answer to the same question."""

from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import pandas as pd
import streamlit as st

from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.forecasting.forecast import QUANTILE_LEVELS, Forecast, Forecaster
from stmgt.forecasting.what_if import true_change
from ui import pages, state
from ui.fan_chart import fan_chart, horizon_label
from ui.heatmaps import add_baseline, change_comparison, weather_comparison
from ui.layout import flex_columns, metric_columns
from ui.maps import DELTA_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded, signed
from ui.ranked import road_table
from ui.scenario import scenario_controls, simulator_rules
from ui.text import md

MAP_KEY, TRUE_MAP_KEY, TABLE_KEY = "whatif_map", "whatif_true_map", "whatif_roads"
MEDIAN = QUANTILE_LEVELS.index(0.5)
MODEL_COLOUR, TRUE_COLOUR = "rgb(8, 81, 156)", "rgb(217, 72, 1)"


@dataclass(frozen=True)
class Outcome:
    """A scenario's forecast beside the baseline (the weather as observed) and, on simulated data,
    the simulator's true change; all in km/h."""

    base: Forecast
    scen: Forecast
    truth: np.ndarray | None        # [H, N] counterfactual − simulated speed, NaN: no reading

    @cached_property
    def change(self) -> np.ndarray:
        """Scenario − baseline forecast mean, [H, N]."""
        return (self.scen.mean() - self.base.mean())[0]

    @cached_property
    def q_base(self) -> np.ndarray:
        return self.base.quantiles()[0]                                    # [H, N, L]

    @cached_property
    def q_scen(self) -> np.ndarray:
        return self.scen.quantiles()[0]

    def median_change(self, step: int) -> np.ndarray:
        """Scenario − baseline median forecast at horizon `step`, [N]: what the maps colour."""
        return self.q_scen[step - 1, :, MEDIAN] - self.q_base[step - 1, :, MEDIAN]


@st.cache_resource(show_spinner="Preparing the simulator…", max_entries=2)
def simulator(_dataset, label: str, fingerprint: str) -> TrafficSimulator | None:
    """The simulator that generated the data (None if it cannot be rebuilt), for its true
    counterfactuals; cached per dataset label and graph."""
    return simulator_for(_dataset)


def change_map(graph, nodes, change, node: str, key: str, tooltip: str) -> None:
    """A road map coloured by a speed change (km/h); clicking a road selects it."""
    deck = road_map(graph, nodes, ramp(change, DELTA_STOPS), highlight=node, tooltip_html=tooltip,
                    basemap=st.session_state.get("whatif_basemap", False), size=(460, 420),
                    node_layer=state.node_layer(key))
    st.pydeck_chart(deck, height=420, key=key, on_select=partial(state.select_clicked_node, key))


def scenario_fan(o: Outcome, target: int, node: str) -> None:
    """The selected road's scenario forecast as a fan chart, with the baseline over it."""
    base, times = o.base, o.base.target_times(0)
    st.subheader("Scenario vs baseline forecast")
    st.caption(f"**{md(dataset.graph.label(node))}**: the scenario forecast (blue: median, 50 % and 80 % intervals) "
               "against the baseline forecast with the observed weather (grey), in km/h.")
    fig = fan_chart(base.input_times(0), base.history[0, :, target], times, o.q_scen[:, target],
                    np.full(base.horizon, np.nan), base.anchor_times[0])
    st.plotly_chart(add_baseline(fig, times, o.q_base[:, target]), key="whatif_fan")


def fmt_change(values) -> list[str]:
    return [f"{v:+.1f}" if np.isfinite(v) else "no reading" for v in values]


def kmh(value: float, sign: str = "+") -> str:
    return f"{value:{sign}.2f} km/h" if np.isfinite(value) else "no reading"


def require_weather_model() -> Forecaster:
    """The forecaster, or a stop with the way forward where the data or the model has no weather to edit."""
    if dataset.weather is None:
        st.warning(f"This page needs weather, and the selected dataset ({md(state.dataset_label())}) has none "
                   "(no `weather.csv`). A what-if edits the weather the model reads, so both the data and the model "
                   "must have it.")
        pages.link(pages.DATA, "Import a dataset with weather on the Data page")
        pages.link(pages.TRAIN, "Then train a model with weather on Train & load")
        st.stop()
    forecaster = state.require_forecaster()
    if not forecaster.loaded.config.use_weather:
        st.warning("This page needs weather, but the selected model was trained without it (use_weather off), so "
                   "changing the weather cannot change its forecast.")
        pages.link(pages.TRAIN, "Train a model with weather on Train & load")
        st.stop()
    if not forecaster.loaded.config.causal_weather:
        st.info("This model was trained before forecasts became causal in the weather: its answer at one step may "
                "already react to rain set for later steps. Models trained now read only the weather up to each "
                "step.")
    return forecaster


def headline(model: np.ndarray, truth: np.ndarray | None, node: str, target: int, suffix: str, model_help: str,
             true_help: str, scope: str) -> None:
    """The network's and the selected road's change, the model's and (on simulated data) the true one,
    and the error: `model` and `truth` are [H, N] over the horizon or [N] at one step."""
    items = [(f"Network · model{suffix}", kmh(model.mean()), f"{model_help}; the mean over all roads."),
                (f"{md(node)} · model{suffix}", kmh(model[..., target].mean()), f"{model_help}.")]
    if truth is not None:
        items[1:1] = [(f"Network · true{suffix}", kmh(np.nanmean(truth)), f"{true_help}; the mean over all roads.")]
        items += [(f"{md(node)} · true{suffix}", kmh(np.nanmean(truth[..., target])), f"{true_help}."),
                     (f"Error (MAE){suffix}", kmh(np.nanmean(np.abs(model - truth)), ""),
                      f"Mean absolute difference between the model's and the simulator's change, over all roads "
                      f"{scope}.")]
    for col, (label, value, help_text) in zip(metric_columns(len(items)), items):
        col.metric(label, value, help=help_text)


def horizon_headline(o: Outcome, node: str, target: int) -> None:
    """Mean changes over the whole horizon."""
    steps = f"averaged over the {o.base.horizon} steps"
    headline(o.change, o.truth, node, target, "", f"Scenario − baseline forecast mean speed, {steps}",
             f"The simulator re-run with the scenario's weather, minus what it simulated, {steps}", "and steps")
    st.caption(f"Mean change in speed over the next {horizon_label(o.base.horizon, o.base.freq)[1:]} "
               "(negative = slower)" + ("; the error compares the model's change with the simulator's true one."
                                        if o.truth is not None else "."))


def step_headline(o: Outcome, node: str, target: int, step: int) -> None:
    """The same numbers at the maps' step, from the median change the maps colour."""
    at = f"at {o.base.target_times(0)[step - 1]:%H:%M}"
    headline(o.median_change(step), None if o.truth is None else o.truth[step - 1], node, target, f" {at}",
             f"Scenario − baseline median forecast {at}", f"The simulator's true change {at}", at)
    st.caption(f"Change in median speed {at} ({horizon_label(step, o.base.freq)}), the step the maps and the "
               "table show (negative = slower).")


def change_maps(o: Outcome, node: str, step: int) -> None:
    """The model's change at the step beside the simulator's true one (or the selected road's fan)."""
    times, graph = o.base.target_times(0), dataset.graph
    median_change = o.median_change(step)
    nodes = graph.nodes[["node_id", "name"]].assign(
        base=rounded(o.q_base[step - 1, :, MEDIAN], 1), scenario=rounded(o.q_scen[step - 1, :, MEDIAN], 1),
        change=fmt_change(median_change))
    legend = legend_html(DELTA_STOPS, "change in speed, km/h (red = slower, blue = faster)", fmt=signed)
    heads, maps = st.columns(2), st.columns(2)     # two rows: the maps start level however the captions wrap
    with heads[0]:
        st.subheader("Model: forecast change")
        st.caption(f"Scenario − baseline median speed at {times[step - 1]:%H:%M} "
                   f"({horizon_label(step, o.base.freq)}). Click a road to select it.")
    with maps[0]:
        change_map(graph, nodes, median_change, node, MAP_KEY,
                   "<b>{name}</b><br/>{node_id}<br/>median {base} → {scenario} km/h ({change})")
        st.html(legend)
    if o.truth is not None:
        with heads[1]:
            st.subheader("Simulator: true change")
            st.caption(f"What the simulator's traffic actually does under the scenario's weather at "
                       f"{times[step - 1]:%H:%M}: counterfactual − simulated speed (grey = no sensor reading).")
    with maps[1]:
        if o.truth is not None:
            change_map(graph, nodes.assign(true=fmt_change(o.truth[step - 1])), o.truth[step - 1], node,
                       TRUE_MAP_KEY, "<b>{name}</b><br/>{node_id}<br/>true change {true} km/h")
            st.html(legend)
        else:
            scenario_fan(o, graph.index_of[node], node)
            if simulated:
                st.info("The simulator cannot reproduce this dataset (another graph or time span), so its true "
                        "answer is not shown.")


def worst_hit_roads(o: Outcome, step: int) -> None:
    """Every road at the maps' step, the largest change first: which roads the scenario hits."""
    at = f"{o.base.target_times(0)[step - 1]:%H:%M}"
    st.subheader(f"Worst-hit roads at {at}")
    graph = dataset.graph
    table = pd.DataFrame({"name": list(graph.names.values()), "node_id": graph.node_ids,
                          "baseline_kmh": o.q_base[step - 1, :, MEDIAN], "scenario_kmh": o.q_scen[step - 1, :, MEDIAN],
                          "model_change_kmh": o.median_change(step)})
    if o.truth is not None:
        table["true_change_kmh"] = o.truth[step - 1]
    table = table.iloc[np.argsort(-np.abs(table["model_change_kmh"].to_numpy()), kind="stable")].round(3)
    st.caption(f"Ranked by the size of the model's change in median speed at {at} "
               f"({horizon_label(step, o.base.freq)}), either way"
               + (", beside the simulator's true change" if o.truth is not None else "")
               + ". Click a row to select its road.")
    change = partial(st.column_config.NumberColumn, format="%+.2f")
    road_table(table, TABLE_KEY, f"whatif_{o.base.anchor_times[0]:%Y%m%dT%H%M}_step{step}.csv", {
        "name": st.column_config.TextColumn("Road", width="medium", pinned=True),    # in view when it scrolls
        "node_id": st.column_config.TextColumn("Node"),
        "baseline_kmh": st.column_config.NumberColumn("Baseline median, km/h", format="%.1f"),
        "scenario_kmh": st.column_config.NumberColumn("Scenario median, km/h", format="%.1f"),
        "model_change_kmh": change("Model change, km/h", help="Scenario − baseline median forecast"),
        "true_change_kmh": change("True change, km/h", help="The simulator's counterfactual − simulated speed; "
                                                            "empty where the sensor has no reading"),
    })


def change_comparison_chart(o: Outcome, node: str, target: int) -> None:
    st.subheader("Predicted vs true change")
    st.caption(f"For {md(node)}: the model's change in mean speed and the simulator's true change, step by "
               "step. Close lines = the model learned the weather's effect on this road.")
    model, true = "Model (predicted change)", "Simulator (true change)"
    st.plotly_chart(change_comparison(o.base.target_times(0), {model: o.change[:, target], true: o.truth[:, target]},
                                      {model: MODEL_COLOUR, true: TRUE_COLOUR}), key="whatif_change")


@st.fragment
def what_if() -> None:
    """Scenario controls and everything they change; a fragment, so dragging a slider redraws
    only this part."""
    base = state.forecast(anchor)
    controls, outlook = flex_columns([1, 2], 280, key="whatif_top", gap="large")
    with controls:
        node = state.node_picker(dataset, "Road (node)")
        scenario = scenario_controls(base.target_times(0))
    scen = state.forecast(anchor, scenario)
    sim = simulator(dataset, state.dataset_label(), dataset.graph.fingerprint()) if simulated else None
    o = Outcome(base, scen, None if sim is None else true_change(sim, [anchor], base.horizon, scenario)[0])
    target = dataset.graph.index_of[node]
    with outlook:
        st.markdown("**Horizon weather: observed (dashed) and scenario (solid)**")
        st.caption("Where the scenario leaves a variable unchanged, the two lines coincide.")
        st.plotly_chart(weather_comparison(base.target_times(0), base.weather[0], scen.weather[0]),
                        key="whatif_weather")
    horizon_headline(o, node, target)
    st.divider()
    slider, toggle = flex_columns([3, 1], 180, key="whatif_step_row", vertical_alignment="bottom")
    with slider:
        step = state.horizon_picker(base.horizon, "Map horizon",
                                    lambda k: f"{horizon_label(k, base.freq)} · {base.target_times(0)[k - 1]:%H:%M}")
    basemap_toggle("whatif_basemap", toggle)
    step_headline(o, node, target, step)
    change_maps(o, node, step)
    worst_hit_roads(o, step)
    if o.truth is not None:
        left, right = flex_columns(2, 420, key="whatif_bottom_row")
        with left:
            scenario_fan(o, target, node)
        with right:
            change_comparison_chart(o, node, target)


st.title("Weather what-if")
st.caption("Change the weather over the forecast horizon and see how the forecast responds. The model reads the "
           "horizon's weather through its weather attention; the traffic and weather of the past three hours, "
           "and everything else, stay as observed.")
dataset = state.require_dataset()
anchor = state.anchor_picker(require_weather_model())
simulated = (dataset.provenance or {}).get("source") == "simulator"
if simulated:
    simulator_rules()
what_if()
