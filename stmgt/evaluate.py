"""evaluate(): STMGT and both baselines on the same test windows -> `metrics.json`.

`models.stmgt` is scored with a realistic weather forecast (`stmgt.weather_forecast`),
`models.stmgt_perfect_weather` with the observed weather; `weather_forecast` says which forecast.

On simulated data it also scores what-if answers against the simulator's true counterfactual."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import torch
from tqdm import tqdm

from stmgt.baselines import HistoricalAverage, persistence
from stmgt.data.dataset import SEQ_LEN, split_anchors, split_ranges
from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.forecast import Forecaster, WeatherScenario
from stmgt.metrics import HorizonScores
from stmgt.runs import Run
from stmgt.weather_forecast import issued_forecast
from stmgt.what_if import true_change

HEAVY_RAIN = WeatherScenario(precipitation_mm=20.0)


@torch.no_grad()
def score_split(forecaster: Forecaster, sim: TrafficSimulator | None, split: str = "test", batch_size: int = 64,
                progress: bool = False) -> dict:
    """STMGT and both baselines on the same windows of `split`. A model that reads the weather is
    scored twice: `stmgt` with the weather forecast issued at each anchor (the headline, what it
    would do in deployment) and `stmgt_perfect_weather` with the observed weather (a perfect
    weather forecast, which no deployment has). `sim` is the simulator behind the data, if any."""
    dataset = forecaster.dataset
    anchors = split_anchors(dataset)[split]
    ha = HistoricalAverage(dataset, split_ranges(dataset.num_steps)["train"])
    horizon = forecaster.horizon
    uses_weather = forecaster.loaded.config.use_weather
    scores = {"stmgt": HorizonScores(horizon, True), "persistence": HorizonScores(horizon, False),
              "historical_average": HorizonScores(horizon, False)}
    if uses_weather:
        scores["stmgt_perfect_weather"] = HorizonScores(horizon, True)
    weather_kind = "none"
    steps = range(0, len(anchors), batch_size)
    for i in tqdm(steps, desc=f"evaluate {split}", disable=not progress, unit="batch"):
        chunk = anchors[i:i + batch_size]
        issued, weather_kind = issued_forecast(dataset, sim, chunk, horizon) if uses_weather else (None, "none")
        forecast = forecaster.forecast(chunk, weather=issued)
        y = torch.from_numpy(forecast.truth)
        target_steps = torch.from_numpy(chunk)[:, None] + torch.arange(1, horizon + 1)
        ha_pred = ha.predict(target_steps)
        batch = forecaster.windows.batch(chunk)
        scores["stmgt"].update(y, forecast.mixture.mean(), forecast.mixture)
        if uses_weather:
            perfect = forecaster.forecast(chunk)
            scores["stmgt_perfect_weather"].update(y, perfect.mixture.mean(), perfect.mixture)
        scores["persistence"].update(y, persistence(batch, forecaster.loaded.scaler, ha_pred))
        scores["historical_average"].update(y, ha_pred)
    return {"split": split, "windows": int(len(anchors)),
            "horizon_minutes": [int((k + 1) * dataset.freq.total_seconds() // 60) for k in range(horizon)],
            "weather_forecast": weather_kind,
            "models": {name: s.result() for name, s in scores.items()}}


@torch.no_grad()
def what_if_error(forecaster: Forecaster, sim: TrafficSimulator, scenario: WeatherScenario = HEAVY_RAIN,
                  count: int = 48) -> dict:
    """Mean absolute error of the model's predicted change (scenario − baseline mean speed)
    against the simulator's true change, over `count` evenly spaced test anchors."""
    anchors = split_anchors(forecaster.dataset)["test"]
    anchors = anchors[np.linspace(0, len(anchors) - 1, count).astype(int)]
    predicted = forecaster.forecast(anchors, scenario).mean() - forecaster.forecast(anchors).mean()
    true = true_change(sim, anchors, forecaster.horizon, scenario)
    return {"scenario": "precipitation 20 mm/h over the whole horizon", "anchors": int(count),
            "mean_true_change_kmh": float(np.mean(np.nanmean(true, axis=(1, 2)))),
            "mean_predicted_change_kmh": float(np.mean(predicted)),
            "mae_of_change_kmh": float(np.mean(np.nanmean(np.abs(predicted - true), axis=(1, 2))))}


def evaluate(run: Run, dataset, spec: dict, device="cpu", progress: bool = False) -> dict:
    """Score the run on the test split of `dataset` and write `metrics.json` into the run folder.
    `spec` is how `dataset` was loaded (`stmgt.data.sources`): metrics.json records it, because a
    model can be scored on other data of its graph than it was trained on."""
    forecaster = Forecaster(run.load(dataset.graph, device), dataset, device)
    sim = simulator_for(dataset)
    metrics = score_split(forecaster, sim, "test", progress=progress)
    if sim is not None and forecaster.loaded.config.use_weather:
        metrics["what_if"] = what_if_error(forecaster, sim)
    metrics.update({"run": run.name, "data": spec, "seq_len": SEQ_LEN, "device": str(device),
                    "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    run.write_metrics(metrics)
    return metrics
