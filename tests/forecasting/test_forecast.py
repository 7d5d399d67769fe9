"""Forecasts of the small trained model: quantiles, what-ifs and several scenarios or weathers in one
pass, anchor validation, and CPU and GPU agreeing."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from stmgt.data.dataset import Windows
from stmgt.errors import DataError
from stmgt.forecasting.forecast import QUANTILE_LEVELS, Forecaster
from stmgt.data.scenario import WeatherScenario
from stmgt.training.trainer import fit
from tests.samples import QUICK, SMALL


def test_forecast_quantiles_and_what_if(trained, data):
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchor = forecaster.test_anchors()[5]
    forecast = forecaster.forecast(anchor)
    q = forecast.quantiles()
    assert q.shape == (1, 12, data.num_nodes, len(QUANTILE_LEVELS))
    assert (np.diff(q, axis=-1) > 0).all()
    cdf = forecast.mixture.cdf(torch.from_numpy(q[..., 2])).numpy()
    np.testing.assert_allclose(cdf, 0.5, atol=1e-4)
    frame = forecast.to_frame()
    assert len(frame) == 12 * data.num_nodes
    assert list(frame.columns[:5]) == ["anchor_time", "node_id", "horizon_step", "target_time", "mean"]
    assert (frame.target_time - frame.anchor_time == frame.horizon_step * pd.Timedelta("15min")).all()
    wet = forecaster.forecast(anchor, WeatherScenario(precipitation_mm=30.0))
    assert (wet.weather[..., 2] == 30).all()
    assert not np.allclose(wet.mean(), forecast.mean())


def test_several_scenarios_in_one_pass_match_one_forecast_each(trained, data):
    from stmgt.forecasting.what_if import MEDIAN, median_changes

    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchors = forecaster.test_anchors()[[3, 40]]
    scenarios = [WeatherScenario(precipitation_mm=10.0), WeatherScenario(temperature_shift=3.0, first_step=4)]
    medians = [forecaster.forecast(anchors, s).quantiles([MEDIAN])[..., 0] for s in (None, *scenarios)]
    changes = median_changes(forecaster, anchors, scenarios)
    assert changes.shape == (2, 2, 12, data.num_nodes)
    for change, median in zip(changes, medians[1:]):
        np.testing.assert_allclose(change, median - medians[0], atol=1e-4)
    assert np.abs(changes[0]).max() > 0.01
    assert np.abs(changes[1][:, :3]).max() < 1e-4        # causal: nothing before step 4 (to float rounding)


def test_several_weathers_in_one_pass_match_one_forecast_each(trained, data):
    """evaluate reads each window under the issued and the observed weather in one pass."""
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    anchors = forecaster.test_anchors()[[3, 40]]
    observed = forecaster.horizon_weather(anchors)
    issued = observed + np.array([1.0, 5.0, 2.0])
    both = forecaster.under_weathers(anchors, [issued, observed])
    for together, weather in zip(both, (issued, observed)):
        alone = forecaster.forecast(anchors, weather=weather).mixture
        torch.testing.assert_close(together.mean(), alone.mean(), atol=1e-4, rtol=0)
    assert (both[0].mean() - both[1].mean()).abs().max() > 0.01


def test_anchor_validation(trained, data):
    forecaster = Forecaster(trained[0].run.load(data.graph), data)
    assert forecaster.anchor_at(data.timestamps[100].isoformat()) == 100
    with pytest.raises(DataError, match="not a time step"):
        forecaster.anchor_at("2031-01-01T00:00+07:00")
    with pytest.raises(DataError, match="fewer than 12 observed steps"):
        forecaster.anchor_at(data.timestamps[3])
    with pytest.raises(DataError, match="not a timestamp"):
        forecaster.anchor_at("tomorrow-ish")


def test_what_if_needs_weather(trained, data):
    no_weather = type(data)(data.timestamps, data.speed, None, data.graph)
    with pytest.raises(DataError, match="trained with weather, but this dataset has no weather"):
        Forecaster(trained[0].run.load(data.graph), no_weather)
    blind = fit(no_weather, SMALL, QUICK)              # trains without weather instead
    assert not blind.model.config.use_weather
    for what_if in (lambda f: f.forecast(200, WeatherScenario(precipitation_mm=5)),
                    lambda f: f.under_scenarios([200], [WeatherScenario(precipitation_mm=5)])):
        with pytest.raises(DataError, match="no weather"):
            what_if(Forecaster(_loaded(blind, data), data))


def _loaded(result, data):
    from stmgt.storage.checkpoint import LoadedModel
    return LoadedModel(result.model, result.model.config, result.scaler, data.graph.fingerprint(),
                       data.graph.node_ids, {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_forward_matches_cpu(trained, data):
    model = copy.deepcopy(trained[0].model)         # moved between devices below
    batch = Windows(data, trained[0].scaler).batch([200, 300])
    with torch.no_grad():
        cpu = model.cpu()(**batch.model_inputs(), edge_index=data.graph.edge_index)
        gpu = model.cuda()(**batch.to("cuda").model_inputs(), edge_index=data.graph.edge_index.cuda())
    model.cpu()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), atol=1e-4, rtol=1e-4)

