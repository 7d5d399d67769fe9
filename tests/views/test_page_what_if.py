"""Weather what-if page: the sliders change the forecast (delta map, scenario fan, headline
numbers), the simulator's true counterfactual is shown on simulated data, the worst-hit roads at the
maps' step are named with the model's and the true change (their rows select roads), and data or
models without weather get a message with the way forward instead of a failure."""

import io

import numpy as np
import pandas as pd
import pytest

from stmgt.data.folder import write_folder
from stmgt.data.simulate import SimulationConfig, TrafficSimulator, simulate
from stmgt.data.sources import EMBEDDED, load_dataset
from stmgt.forecasting.forecast import Forecaster
from stmgt.forecasting.what_if import median_changes, true_change
from stmgt.data.scenario import WeatherScenario
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from tests.views.page_helpers import array, deck_layers, plotly, select_row, selected_rows, table, tiny_run, trace
from tests.samples import small_dataset

PAGE = "views/what_if.py"
TABLE = "whatif_roads"
MODEL_MEDIAN, BASE_MEDIAN = "Median forecast (q50)", "Baseline median (actual weather)"


def metrics(at) -> dict[str, float]:
    return {m.label: float(m.value.removesuffix(" km/h")) for m in at.metric}


def map_changes(at, index: int = 0, column: str = "change") -> np.ndarray:
    nodes = deck_layers(at, index)["nodes"]["data"]
    return np.array([float(n[column]) if n[column] != "no reading" else np.nan for n in nodes])


def fan_medians(at) -> tuple[np.ndarray, np.ndarray]:
    """The selected road's scenario and baseline medians over the 12 horizon steps."""
    fan = plotly(at, "whatif_fan")
    return array(trace(fan, MODEL_MEDIAN)["y"])[-12:], array(trace(fan, BASE_MEDIAN)["y"])


def test_precipitation_changes_the_forecast(app):
    at = app(PAGE, node_id="n05")
    at.slider(key="whatif_precip").set_value(0.0).run()
    assert (map_changes(at) == 0).all()                                  # no edit, no change
    np.testing.assert_array_equal(*fan_medians(at))
    assert metrics(at)["Network · model"] == 0

    at.slider(key="whatif_precip").set_value(20.0).run()
    assert not at.exception
    changes = map_changes(at)
    assert (changes != 0).any() and np.mean(changes) < 0                  # heavy rain slows the network down
    scenario, baseline = fan_medians(at)
    assert (scenario < baseline).mean() > 0.5
    headline = metrics(at)
    assert headline["Network · model"] < 0 and headline["n05 · model"] < 0
    weather = plotly(at, "whatif_weather")["data"]
    rain = {t["name"]: array(t["y"]) for t in weather if t["xaxis"] == "x3"}
    np.testing.assert_allclose(rain["Scenario"], rain["Baseline"] + 20, atol=1e-4)
    # The map follows its horizon slider.
    at.select_slider(key="horizon_widget").set_value(12).run()
    assert not np.array_equal(map_changes(at), changes)


def test_rain_event_edits_only_its_steps(app):
    at = app(PAGE)
    at.radio(key="whatif_mode").set_value("Rain event").run()
    at.slider(key="whatif_rain").set_value(30.0)
    at.select_slider(key="whatif_rain_start").set_value(5)
    at.slider(key="whatif_rain_steps").set_value(2).run()
    assert not at.exception
    weather = plotly(at, "whatif_weather")["data"]
    rain = {t["name"]: array(t["y"]) for t in weather if t["xaxis"] == "x3"}
    expected = rain["Baseline"].copy()
    expected[4:6] = np.maximum(expected[4:6], 30)
    np.testing.assert_allclose(rain["Scenario"], expected, atol=1e-4)
    assert metrics(at)["Network · model"] < 0


def test_true_counterfactual_on_simulated_data(app):
    at = app(PAGE, node_id="n05")
    at.slider(key="whatif_precip").set_value(20.0).run()
    headline = metrics(at)
    assert headline["Network · true"] < -1 and headline["n05 · true"] < 0
    assert headline["Error (MAE)"] > 0
    true_map = map_changes(at, 1, "true")
    assert np.nanmean(true_map) < 0
    # The page shows the simulator's own answer for this anchor and road.
    anchor = at.session_state["anchor"]
    sim = TrafficSimulator(SimulationConfig(seed=0, weeks=8))
    expected = true_change(sim, [anchor], 12, WeatherScenario(precipitation_shift=20.0))[0]
    chart = plotly(at, "whatif_change")
    np.testing.assert_allclose(array(trace(chart, "Simulator (true change)")["y"]), expected[:, 4], atol=1e-4)
    np.testing.assert_allclose(true_map, np.round(expected[3], 1), atol=0.051, equal_nan=True)
    assert array(trace(chart, "Model (predicted change)")["y"]).mean() < 0


def test_worst_hit_roads_at_the_maps_step(app, downloads):
    at = app(PAGE, node_id="n05", horizon=6)
    at.slider(key="whatif_precip").set_value(20.0).run()
    assert not at.exception
    anchor, scenario = at.session_state["anchor"], WeatherScenario(precipitation_shift=20.0)
    forecaster = Forecaster(Run(BUNDLED_RUN).load(), load_dataset(EMBEDDED))
    model = median_changes(forecaster, [anchor], [scenario])[0, 0, 5]                 # step 6, every road
    truth = true_change(TrafficSimulator(SimulationConfig(seed=0, weeks=8)), [anchor], 12, scenario)[0, 5]
    roads = table(at, TABLE).value
    assert (np.diff(np.abs(roads["model_change_kmh"])) <= 0).all()                  # largest change first
    assert roads["model_change_kmh"].iloc[0] < -1                                  # heavy rain slows roads down
    rows = roads.set_index("node_id").loc[forecaster.dataset.graph.node_ids]
    np.testing.assert_allclose(rows["model_change_kmh"], model, atol=2e-3)
    np.testing.assert_allclose(rows["true_change_kmh"], truth, atol=6e-4)           # NaN where no reading
    np.testing.assert_allclose(rows["model_change_kmh"], map_changes(at), atol=0.051)   # what the map colours
    # The headline at the maps' step says which step, and its numbers are the table's.
    at_step = f"at {forecaster.forecast(anchor).target_times(0)[5]:%H:%M}"
    headline = metrics(at)
    assert headline[f"Network · model {at_step}"] == pytest.approx(model.mean(), abs=0.006)
    assert headline[f"Network · true {at_step}"] == pytest.approx(np.nanmean(truth), abs=0.006)
    assert headline[f"n05 · model {at_step}"] == pytest.approx(rows.loc["n05", "model_change_kmh"], abs=0.006)
    assert headline[f"Error (MAE) {at_step}"] == pytest.approx(np.nanmean(np.abs(model - truth)), abs=0.006)
    assert headline["Network · model"] != headline[f"Network · model {at_step}"]      # the horizon's mean is there too
    csv = downloads[f"whatif_{forecaster.dataset.timestamps[anchor]:%Y%m%dT%H%M}_step6.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(csv)), roads.reset_index(drop=True), check_dtype=False)


def test_a_table_row_selects_its_road(app):
    at = app(PAGE, node_id="n05")
    ids = table(at, TABLE).value["node_id"].tolist()
    assert selected_rows(at, TABLE) == [ids.index("n05")]
    row = next(i for i, node in enumerate(ids) if node != "n05")
    select_row(at, TABLE, row)
    assert not at.exception
    assert at.session_state["node_id"] == ids[row]
    assert at.selectbox(key="node_id_widget").value == ids[row]                    # the road picker follows
    assert f"{ids[row]} · model" in metrics(at) and "n05 · model" not in metrics(at)
    assert selected_rows(at, TABLE) == [row]


@pytest.mark.parametrize("graph", ["small", "hcmc"])
def test_dataset_without_weather_says_what_is_missing(app, isolated_workspace, graph):
    """A 3-node graph has no model either; the embedded graph without weather still has the bundled one."""
    if graph == "small":
        data = small_dataset(weather=False)
    else:
        sim = simulate(weeks=0.5)
        data = type(sim)(sim.timestamps, sim.speed, None, sim.graph, {"source": "test"})
    write_folder(data, isolated_workspace / "datasets" / "dry-city")
    at = app(PAGE, dataset="Imported: dry-city")
    assert any("needs weather" in w.value and "weather.csv" in w.value for w in at.warning)
    assert {link.proto.page for link in at.get("page_link")} == {"data", "train"}     # the way forward
    assert not at.get("plotly_chart") and not at.get("deck_gl_json_chart")


def test_model_without_weather_says_so(app, isolated_workspace):
    tiny_run(isolated_workspace / "runs" / "dry", use_weather=False)
    at = app(PAGE, model="Run: dry")
    assert any("trained without" in w.value for w in at.warning)
    assert [link.proto.page for link in at.get("page_link")] == ["train"]
    assert not at.get("plotly_chart")


def test_a_model_trained_without_the_causal_weather_mask_says_so(app, isolated_workspace):
    assert not any("before forecasts became causal" in i.value for i in app(PAGE).info)   # the bundled one is causal
    tiny_run(isolated_workspace / "runs" / "legacy", causal_weather=False)
    at = app(PAGE, model="Run: legacy")
    assert any("before forecasts became causal" in i.value for i in at.info)
