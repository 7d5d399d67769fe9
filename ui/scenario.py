"""A weather scenario, as people set it: a constant shift of the horizon's weather or a rain event,
and, on simulated data, what the weather truly does there (the simulator's own rules) to judge the
model's answer by."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from stmgt.data.scenario import WeatherScenario
from stmgt.data.simulate import weather_effects


def scenario_controls(times: pd.DatetimeIndex) -> WeatherScenario:
    """Widgets for a scenario over the horizon whose target times are `times`."""
    horizon = len(times)
    if st.radio("Scenario", ["Constant shift", "Rain event"], horizontal=True, key="whatif_mode") == "Constant shift":
        return WeatherScenario(
            temperature_shift=st.slider("Temperature shift (°C)", -8.0, 8.0, 0.0, 0.5, key="whatif_temp"),
            wind_shift=st.slider("Wind shift (km/h)", -15.0, 30.0, 0.0, 1.0, key="whatif_wind"),
            precipitation_shift=st.slider("Precipitation shift (mm/h)", -10.0, 50.0, 10.0, 0.5, key="whatif_precip",
                                          help="Added to the observed rain at every step; 10 mm/h is heavy "
                                               "rain. Negative values dry the weather out (never below 0)."))
    rain = st.slider("Rain intensity (mm/h)", 0.5, 50.0, 20.0, 0.5, key="whatif_rain")
    start = st.select_slider("Starts at step", list(range(1, horizon + 1)), value=1, key="whatif_rain_start",
                             format_func=lambda k: f"{k} · {times[k - 1]:%H:%M}")
    duration = st.slider("Lasts (15-minute steps)", 1, horizon, 4, key="whatif_rain_steps")
    end = min(start + duration - 1, horizon)
    st.caption(f"{rain:g} mm/h (or the observed rain where heavier) at steps {start}–{end}, "
               f"{times[start - 1]:%H:%M}–{times[end - 1]:%H:%M}.")
    return WeatherScenario(rain_mm=rain, rain_start=start, rain_steps=duration)


def simulator_rules() -> None:
    """The simulator's weather rules, folded away: what a well-trained model should have learned."""
    with st.expander("What the weather truly does in the simulated data"):
        st.markdown("\n".join(f"- **{name}**: {effect}" for name, effect in weather_effects().items()))
        st.caption("The simulator's own rules, which a well-trained model should have learned; the true change "
                   "below is the simulator re-run under the scenario's weather with every other random draw "
                   "unchanged. A temperature or wind change below these thresholds truly changes nothing.")
