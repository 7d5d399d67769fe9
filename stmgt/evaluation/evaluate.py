"""evaluate(): STMGT and the three baselines on the same test windows -> `metrics.json`.

`models.stmgt` is scored with a realistic weather forecast (`stmgt.forecasting.weather_forecast`),
`models.stmgt_perfect_weather` with the observed weather; `weather_forecast` says which forecast.

On simulated data it also scores what-if answers against the simulator's true counterfactual.

`max_batches` caps every pass for a quick look: the scored windows are then spread evenly over the
split (every time of day, not just its first hours), and metrics.json says how many of how many.
Progress is reported as `PhaseProgress`; a cancelled evaluation returns None and writes nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from stmgt.evaluation.baselines import HistoricalAverage, LinearAutoregressive, persistence
from stmgt.data.dataset import SEQ_LEN, split_anchors
from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.forecasting.forecast import Forecaster
from stmgt.data.scenario import WeatherScenario
from stmgt.evaluation.metrics import HorizonScores
from stmgt.storage.runs import Run
from stmgt.training.trainer import CancelSignal, PhaseProgress
from stmgt.forecasting.weather_forecast import issued_forecast
from stmgt.forecasting.what_if import true_change

HEAVY_RAIN = WeatherScenario(precipitation_mm=20.0)


OnProgress = Callable[[PhaseProgress], None]


def spread(anchors: np.ndarray, count: int | None) -> np.ndarray:
    """At most `count` of `anchors`, evenly spaced over them (all of them when count is None)."""
    if count is None or count >= len(anchors):
        return anchors
    return anchors[np.linspace(0, len(anchors) - 1, count).astype(int)]


def _batches(anchors: np.ndarray, batch_size: int, phase: str, on_progress: OnProgress | None,
             cancel: CancelSignal | None):
    """`anchors` in chunks, reporting each one done; stops early (the caller checks `cancel`)."""
    total = -(-len(anchors) // batch_size)
    for i in range(total):
        if cancel is not None and cancel.is_set():
            return
        yield anchors[i * batch_size:(i + 1) * batch_size]
        if on_progress:
            on_progress(PhaseProgress(phase, i + 1, total))


@torch.no_grad()
def score_split(forecaster: Forecaster, sim: TrafficSimulator | None, split: str = "test", batch_size: int = 64,
                progress: bool = False, max_batches: int | None = None, on_progress: OnProgress | None = None,
                cancel: CancelSignal | None = None) -> dict | None:
    """STMGT and the three baselines on the same windows of `split`. A model that reads the weather is
    scored twice: `stmgt` with the weather forecast issued at each anchor (the headline, what it
    would do in deployment) and `stmgt_perfect_weather` with the observed weather (a perfect
    weather forecast, which no deployment has). `sim` is the simulator behind the data, if any.
    None if `cancel` was set on the way."""
    dataset = forecaster.dataset
    all_anchors = split_anchors(dataset)[split]
    anchors = spread(all_anchors, max_batches and max_batches * batch_size)
    ranges = dataset.splits()
    ha = HistoricalAverage(dataset, ranges["train"])
    horizon = forecaster.horizon
    linear = LinearAutoregressive(dataset, ranges["train"], ranges["val"], ha, horizon=horizon)
    uses_weather = forecaster.loaded.config.use_weather
    scores = {"stmgt": HorizonScores(horizon, True), "persistence": HorizonScores(horizon, False),
              "historical_average": HorizonScores(horizon, False),
              "linear_autoregressive": HorizonScores(horizon, False)}
    if uses_weather:
        scores["stmgt_perfect_weather"] = HorizonScores(horizon, True)
    weather_kind = "none"
    chunks = _batches(anchors, batch_size, "scoring", on_progress, cancel)
    for chunk in tqdm(chunks, desc=f"evaluate {split}", total=-(-len(anchors) // batch_size),
                      disable=not progress, unit="batch"):
        batch = forecaster.windows.batch(chunk)
        y = batch.y.cpu()
        if uses_weather:   # one pass reads each window under the issued and the observed weather
            issued, weather_kind = issued_forecast(dataset, sim, chunk, horizon)
            stmgt, perfect = forecaster.under_weathers(chunk, [issued, forecaster.horizon_weather(chunk)])
            scores["stmgt_perfect_weather"].update(y, perfect.mean(), perfect)
        else:
            stmgt = forecaster.forecast(chunk).mixture
        scores["stmgt"].update(y, stmgt.mean(), stmgt)
        target_steps = torch.from_numpy(chunk)[:, None] + torch.arange(1, horizon + 1)
        ha_pred = ha.predict(target_steps)
        scores["persistence"].update(y, persistence(batch, forecaster.loaded.scaler, ha_pred))
        scores["historical_average"].update(y, ha_pred)
        scores["linear_autoregressive"].update(y, linear.predict(torch.from_numpy(chunk)))
    if cancel is not None and cancel.is_set():
        return None
    return {"split": split, "windows": int(len(anchors)), "windows_in_split": int(len(all_anchors)),
            "quick_look": len(anchors) < len(all_anchors),
            "horizon_minutes": [int((k + 1) * dataset.freq.total_seconds() // 60) for k in range(horizon)],
            "weather_forecast": weather_kind, "linear_autoregressive_penalty": linear.penalty,
            "models": {name: s.result() for name, s in scores.items()}}


@torch.no_grad()
def what_if_error(forecaster: Forecaster, sim: TrafficSimulator, scenario: WeatherScenario = HEAVY_RAIN,
                  count: int = 48, batch_size: int = 16, max_batches: int | None = None,
                  on_progress: OnProgress | None = None, cancel: CancelSignal | None = None) -> dict | None:
    """Mean absolute error of the model's predicted change (scenario − baseline mean speed)
    against the simulator's true change, over `count` evenly spaced test anchors (fewer when
    `max_batches` caps the batches of `batch_size`). None if `cancel` was set on the way."""
    anchors = spread(split_anchors(forecaster.dataset)["test"], min(count, (max_batches or count) * batch_size))
    predicted, true = [], []
    for chunk in _batches(anchors, batch_size, "scoring what-if", on_progress, cancel):
        observed, wet = forecaster.under_scenarios(chunk, [None, scenario])
        predicted.append((wet.mean() - observed.mean()).numpy())
        true.append(true_change(sim, chunk, forecaster.horizon, scenario))
    if cancel is not None and cancel.is_set():
        return None
    predicted, true = np.concatenate(predicted), np.concatenate(true)
    return {"scenario": "precipitation 20 mm/h over the whole horizon", "anchors": int(len(anchors)),
            "mean_true_change_kmh": float(np.mean(np.nanmean(true, axis=(1, 2)))),
            "mean_predicted_change_kmh": float(np.mean(predicted)),
            "mae_of_change_kmh": float(np.mean(np.nanmean(np.abs(predicted - true), axis=(1, 2))))}


def evaluate(run: Run, dataset, spec: dict, device="cpu", progress: bool = False, max_batches: int | None = None,
             on_progress: OnProgress | None = None, cancel: CancelSignal | None = None) -> dict | None:
    """Score the run on the test split of `dataset` and write `metrics.json` into the run folder;
    None, writing nothing, if `cancel` was set on the way. `spec` is how `dataset` was loaded
    (`stmgt.data.sources`): metrics.json records it, because a model can be scored on other data
    of its graph than it was trained on."""
    forecaster = Forecaster(run.load(dataset.graph, device), dataset, device)
    sim = simulator_for(dataset)
    metrics = score_split(forecaster, sim, "test", progress=progress, max_batches=max_batches,
                          on_progress=on_progress, cancel=cancel)
    if metrics is None:
        return None
    if sim is not None and forecaster.loaded.config.use_weather:
        metrics["what_if"] = what_if_error(forecaster, sim, max_batches=max_batches, on_progress=on_progress,
                                           cancel=cancel)
        if metrics["what_if"] is None:
            return None
    metrics.update({"run": run.name, "data": spec, "seq_len": SEQ_LEN, "device": str(device),
                    "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    run.write_metrics(metrics)
    return metrics


BASELINES = {"persistence": "persistence", "historical_average": "the historical average",
             "linear_autoregressive": "the linear autoregression"}


def missing_baselines(metrics: dict) -> list[str]:
    """The baselines a metrics.json lacks: one written before they existed."""
    return [name for name in BASELINES if name not in metrics["models"]]


def versus_baselines(metrics: dict, minutes: int = 60) -> str:
    """The test score in plain words, e.g. "MAE at +1 h 3.29 km/h — worse than persistence (2.70),
    better than the historical average (4.10)", at the horizon nearest `minutes`."""
    horizons = metrics["horizon_minutes"]
    k = min(range(len(horizons)), key=lambda i: abs(horizons[i] - minutes))
    models = metrics["models"]
    ours = models["stmgt"]["mae"][k]
    words = []
    for name, label in BASELINES.items():
        if name not in models:
            continue
        theirs = models[name]["mae"][k]
        verdict = "better than" if ours < theirs else "worse than" if ours > theirs else "level with"
        words.append(f"{verdict} {label} ({theirs:.2f})")
    at = f"+{horizons[k] // 60} h" if horizons[k] % 60 == 0 else f"+{horizons[k]} min"
    note = (f" (quick look: {metrics['windows']:,} of {metrics['windows_in_split']:,} test windows)"
            if metrics.get("quick_look") else "")
    return f"MAE at {at} {ours:.2f} km/h — {', '.join(words)}{note}"


def best_baseline_verdicts(metrics: dict) -> list[str]:
    """Per horizon, in words, whether STMGT's MAE beats the best baseline's there, e.g. "+60 min: STMGT
    1.71 km/h beats the best baseline, the linear autoregression (1.76 km/h), by 2.8 %"."""
    models, verdicts = metrics["models"], []
    for k, minutes in enumerate(metrics["horizon_minutes"]):
        ours = models["stmgt"]["mae"][k]
        best = min((name for name in BASELINES if name in models), key=lambda name: models[name]["mae"][k])
        theirs = models[best]["mae"][k]
        gap = 100 * abs(theirs - ours) / theirs if theirs else 0.0
        gap = f"{gap:.1f} %" if gap >= 0.05 else "less than 0.1 %"
        verdict = (f"beats the best baseline, {BASELINES[best]} ({theirs:.2f} km/h), by {gap}" if ours < theirs
                   else f"is level with the best baseline, {BASELINES[best]} ({theirs:.2f} km/h)" if ours == theirs
                   else f"does not beat the best baseline, {BASELINES[best]} ({theirs:.2f} km/h): {gap} worse")
        verdicts.append(f"+{minutes} min: STMGT {ours:.2f} km/h {verdict}")
    return verdicts


def best_baseline_summary(metrics: dict) -> str:
    """How many horizons STMGT beats the best baseline at, e.g. "STMGT beats the best of the three
    baselines at 10 of 12 horizons, not at +165 and +180 min"."""
    models = metrics["models"]
    scored = [name for name in BASELINES if name in models]
    best = [min(models[name]["mae"][k] for name in scored) for k in range(len(metrics["horizon_minutes"]))]
    lost = [m for m, ours, theirs in zip(metrics["horizon_minutes"], models["stmgt"]["mae"], best) if ours >= theirs]
    count = len(metrics["horizon_minutes"])
    of = f"the best of the {('one', 'two', 'three')[len(scored) - 1]} baselines"
    if not lost:
        return f"STMGT beats {of} at every horizon"
    if len(lost) == count:
        return f"STMGT beats {of} at no horizon"
    where = ", ".join(f"+{m}" for m in lost[:-1]) + (" and " if len(lost) > 1 else "") + f"+{lost[-1]} min"
    return f"STMGT beats {of} at {count - len(lost)} of {count} horizons, not at {where}"
