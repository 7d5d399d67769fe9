"""Weather what-if: edit the weather over the forecast horizon, re-forecast, and see what changes;
on simulated data, beside the simulator's true answer to the same question."""

from functools import partial

import numpy as np
import streamlit as st

from stmgt.data.simulate import TrafficSimulator, simulator_for, weather_effects
from stmgt.forecasting.what_if import true_change
from stmgt.forecasting.forecast import QUANTILE_LEVELS
from stmgt.data.scenario import WeatherScenario
from ui import pages, state
from ui.fan_chart import fan_chart, horizon_label
from ui.heatmaps import add_baseline, change_comparison, weather_comparison
from ui.maps import DELTA_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded, signed
from ui.text import md

MAP_KEY, TRUE_MAP_KEY = "whatif_map", "whatif_true_map"
MEDIAN = QUANTILE_LEVELS.index(0.5)
MODEL_COLOUR, TRUE_COLOUR = "rgb(8, 81, 156)", "rgb(217, 72, 1)"


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


def scenario_fan(base, q_base, q_scen, target: int, node: str) -> None:
    """The selected road's scenario forecast as a fan chart, with the baseline over it."""
    times = base.target_times(0)
    st.subheader("Scenario vs baseline forecast")
    st.caption(f"**{md(dataset.graph.label(node))}**: the scenario forecast (blue: median, 50 % and 80 % intervals) "
               "against the baseline forecast with the observed weather (grey), in km/h.")
    fig = fan_chart(base.input_times(0), base.history[0, :, target], times, q_scen[:, target],
                    np.full(base.horizon, np.nan), base.anchor_times[0])
    st.plotly_chart(add_baseline(fig, times, q_base[:, target]), key="whatif_fan")


def fmt_change(values) -> list[str]:
    return [f"{v:+.1f}" if np.isfinite(v) else "no reading" for v in values]


st.title("Weather what-if")
st.caption("Change the weather over the forecast horizon and see how the forecast responds. The model reads the "
           "horizon's weather through its weather attention; the traffic and weather of the past three hours, "
           "and everything else, stay as observed.")
dataset = state.require_dataset()
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
            "already react to rain set for later steps. Models trained now read only the weather up to each step.")

anchor = state.anchor_picker(forecaster)
provenance = dataset.provenance or {}
simulated = provenance.get("source") == "simulator"
if simulated:
    with st.expander("What the weather truly does in the simulated data"):
        st.markdown("\n".join(f"- **{name}**: {effect}" for name, effect in weather_effects().items()))
        st.caption("The simulator's own rules, which a well-trained model should have learned; the true change "
                   "below is the simulator re-run under the scenario's weather with every other random draw "
                   "unchanged. A temperature or wind change below these thresholds truly changes nothing.")


@st.fragment
def what_if() -> None:
    """Scenario controls and everything they change; a fragment, so dragging a slider redraws
    only this part."""
    base = state.forecast(anchor)
    times = base.target_times(0)
    steps = list(range(1, base.horizon + 1))
    controls, outlook = st.columns([1, 2], gap="large")
    with controls:
        node = state.node_picker(dataset, "Road (node)")
        mode = st.radio("Scenario", ["Constant shift", "Rain event"], horizontal=True, key="whatif_mode")
        if mode == "Constant shift":
            scenario = WeatherScenario(
                temperature_shift=st.slider("Temperature shift (°C)", -8.0, 8.0, 0.0, 0.5, key="whatif_temp"),
                wind_shift=st.slider("Wind shift (km/h)", -15.0, 30.0, 0.0, 1.0, key="whatif_wind"),
                precipitation_shift=st.slider("Precipitation shift (mm/h)", -10.0, 50.0, 10.0, 0.5,
                                              key="whatif_precip",
                                              help="Added to the observed rain at every step; 10 mm/h is heavy "
                                                   "rain. Negative values dry the weather out (never below 0)."))
        else:
            rain = st.slider("Rain intensity (mm/h)", 0.5, 50.0, 20.0, 0.5, key="whatif_rain")
            start = st.select_slider("Starts at step", steps, value=1, key="whatif_rain_start",
                                     format_func=lambda k: f"{k} · {times[k - 1]:%H:%M}")
            duration = st.slider("Lasts (15-minute steps)", 1, base.horizon, 4, key="whatif_rain_steps")
            scenario = WeatherScenario(rain_mm=rain, rain_start=start, rain_steps=duration)
            end = min(start + duration - 1, base.horizon)
            st.caption(f"{rain:g} mm/h (or the observed rain where heavier) at steps {start}–{end}, "
                       f"{times[start - 1]:%H:%M}–{times[end - 1]:%H:%M}.")
    scen = state.forecast(anchor, scenario)
    change = (scen.mean() - base.mean())[0]                              # [H, N] km/h
    q_base, q_scen = base.quantiles()[0], scen.quantiles()[0]            # [H, N, L]
    target = dataset.graph.index_of[node]
    truth = None
    sim = simulator(dataset, state.dataset_label(), dataset.graph.fingerprint()) if simulated else None
    if sim is not None:
        truth = true_change(sim, [anchor], base.horizon, scenario)[0]     # [H, N] km/h

    with outlook:
        st.markdown("**Horizon weather: observed (dashed) and scenario (solid)**")
        st.caption("Where the scenario leaves a variable unchanged, the two lines coincide.")
        st.plotly_chart(weather_comparison(times, base.weather[0], scen.weather[0]), key="whatif_weather")

    model_help = f"Scenario − baseline forecast mean speed, averaged over the {base.horizon} steps"
    true_help = (f"The simulator re-run with the scenario's weather, minus what it simulated, averaged over the "
                 f"{base.horizon} steps")
    headline = [("Network · model", f"{change.mean():+.2f} km/h", f"{model_help} and all roads."),
                (f"{md(node)} · model", f"{change[:, target].mean():+.2f} km/h", f"{model_help}.")]
    if truth is not None:
        headline[1:1] = [("Network · true", f"{np.nanmean(truth):+.2f} km/h", f"{true_help} and all roads.")]
        headline += [(f"{md(node)} · true", f"{np.nanmean(truth[:, target]):+.2f} km/h", f"{true_help}."),
                     ("Error (MAE)", f"{np.nanmean(np.abs(change - truth)):.2f} km/h",
                      "Mean absolute difference between the model's and the simulator's change, over all roads "
                      "and steps.")]
    for col, (label, value, help_text) in zip(st.columns(len(headline)), headline):
        col.metric(label, value, help=help_text)
    st.caption(f"Mean change in speed over the next {horizon_label(base.horizon, base.freq)[1:]} "
               "(negative = slower)" + ("; the error compares the model's change with the simulator's true one."
                                        if truth is not None else "."))

    st.divider()
    slider, toggle = st.columns([3, 1], vertical_alignment="bottom")
    with slider:
        step = state.horizon_picker(base.horizon, "Map horizon",
                                    lambda k: f"{horizon_label(k, base.freq)} · {times[k - 1]:%H:%M}")
    basemap_toggle("whatif_basemap", toggle)
    median_change = q_scen[step - 1, :, MEDIAN] - q_base[step - 1, :, MEDIAN]
    nodes = dataset.graph.nodes[["node_id", "name"]].assign(
        base=rounded(q_base[step - 1, :, MEDIAN], 1), scenario=rounded(q_scen[step - 1, :, MEDIAN], 1),
        change=fmt_change(median_change))
    tooltip = "<b>{name}</b><br/>{node_id}<br/>median {base} → {scenario} km/h ({change})"
    legend = legend_html(DELTA_STOPS, "change in speed, km/h (red = slower, blue = faster)", fmt=signed)
    maps = st.columns(2)
    with maps[0]:
        st.subheader("Model: forecast change")
        st.caption(f"Scenario − baseline median speed at {times[step - 1]:%H:%M} "
                   f"({horizon_label(step, base.freq)}). Click a road to select it.")
        change_map(dataset.graph, nodes, median_change, node, MAP_KEY, tooltip)
        st.html(legend)
    with maps[1]:
        if truth is not None:
            st.subheader("Simulator: true change")
            st.caption(f"What the simulator's traffic actually does under the scenario's weather at "
                       f"{times[step - 1]:%H:%M}: counterfactual − simulated speed (grey = no sensor reading).")
            change_map(dataset.graph, nodes.assign(true=fmt_change(truth[step - 1])), truth[step - 1], node,
                       TRUE_MAP_KEY, "<b>{name}</b><br/>{node_id}<br/>true change {true} km/h")
            st.html(legend)
        else:
            scenario_fan(base, q_base, q_scen, target, node)
            if simulated:
                st.info("The simulator cannot reproduce this dataset (another graph or time span), so its true "
                        "answer is not shown.")

    if truth is not None:
        left, right = st.columns(2)
        with left:
            scenario_fan(base, q_base, q_scen, target, node)
        with right:
            st.subheader("Predicted vs true change")
            st.caption(f"For {md(node)}: the model's change in mean speed and the simulator's true change, step by "
                       "step. Close lines = the model learned the weather's effect on this road.")
            st.plotly_chart(change_comparison(times, {"Model (predicted change)": change[:, target],
                                                      "Simulator (true change)": truth[:, target]},
                                              {"Model (predicted change)": MODEL_COLOUR,
                                               "Simulator (true change)": TRUE_COLOUR}), key="whatif_change")


what_if()
