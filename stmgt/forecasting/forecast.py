"""Forecaster -> Forecast: the predictive mixtures for chosen anchor times, in km/h, with exact
quantiles, P(congested), diagnostics, and weather what-if scenarios."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from stmgt.storage.checkpoint import LoadedModel
from stmgt.data.dataset import TrafficDataset, Windows, split_anchors
from stmgt.data.scenario import WeatherScenario
from stmgt.data.simulate import TrafficSimulator, simulator_for
from stmgt.errors import DataError
from stmgt.model.mixture import GaussianMixture
from stmgt.model import Diagnostics
from stmgt.forecasting.predict import predict
from stmgt.forecasting.weather_forecast import issued_forecast

QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class Forecast:
    """Forecasts for B anchors (the last observed steps) × H horizon steps × N nodes."""

    node_ids: list[str]
    anchor_times: pd.DatetimeIndex
    freq: pd.Timedelta
    mixture: GaussianMixture          # [B, H, N, K] km/h
    history: np.ndarray               # [B, S, N] observed input speeds km/h, NaN = missing
    truth: np.ndarray                 # [B, H, N] km/h, NaN = unknown (future or missing)
    weather: np.ndarray | None        # [B, H, 3] the horizon weather used
    diagnostics: Diagnostics | None = None

    @property
    def horizon(self) -> int:
        return self.truth.shape[1]

    def target_times(self, b: int = 0) -> pd.DatetimeIndex:
        return self.anchor_times[b] + pd.TimedeltaIndex(self.freq * np.arange(1, self.horizon + 1))

    def input_times(self, b: int = 0) -> pd.DatetimeIndex:
        lags = np.arange(self.history.shape[1] - 1, -1, -1)
        return self.anchor_times[b] - pd.TimedeltaIndex(self.freq * lags)

    def mean(self) -> np.ndarray:
        return self.mixture.mean().numpy()

    def quantiles(self, levels=QUANTILE_LEVELS) -> np.ndarray:
        """Exact mixture quantiles, [B, H, N, L]."""
        return self.mixture.quantiles(list(levels)).numpy()

    def prob_below(self, threshold: float) -> np.ndarray:
        return self.mixture.prob_below(threshold).numpy()

    def to_frame(self, levels=QUANTILE_LEVELS) -> pd.DataFrame:
        """Long format: one row per anchor × node × horizon step."""
        q, mean = self.quantiles(levels), self.mean()
        B, H, N = mean.shape
        frame = pd.DataFrame({
            "anchor_time": np.repeat(self.anchor_times, H * N),
            "node_id": np.tile(np.repeat(np.array(self.node_ids, dtype=object), H), B),
            "horizon_step": np.tile(np.arange(1, H + 1), B * N),
        })
        frame.insert(3, "target_time", frame["anchor_time"] + frame["horizon_step"] * self.freq)
        frame["mean"] = mean.transpose(0, 2, 1).ravel()
        for i, level in enumerate(levels):
            frame[f"q{round(100 * level)}"] = q[..., i].transpose(0, 2, 1).ravel()
        return frame


class Forecaster:
    """A loaded model bound to a dataset of the same graph."""

    def __init__(self, loaded: LoadedModel, dataset: TrafficDataset, device="cpu"):
        if loaded.fingerprint != dataset.graph.fingerprint():
            raise DataError(f"the model was trained on another road graph ({len(loaded.node_ids)} nodes); "
                            f"this dataset has {dataset.num_nodes} nodes")
        if loaded.config.use_weather and not dataset.has_weather:
            raise DataError("the model was trained with weather, but this dataset has no weather; "
                            "train a model on this dataset (it will train without weather)")
        self.loaded, self.dataset, self.device = loaded, dataset, torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self.windows = Windows(dataset, loaded.scaler, loaded.config.seq_len, loaded.config.horizon)
        self.edge_index = dataset.graph.edge_index.to(self.device)

    @property
    def seq_len(self) -> int:
        return self.loaded.config.seq_len

    @property
    def horizon(self) -> int:
        return self.loaded.config.horizon

    def test_anchors(self) -> np.ndarray:
        return split_anchors(self.dataset)["test"]

    def anchor_at(self, timestamp) -> int:
        """Index of the last observed step `timestamp`, checked to have a full input window."""
        try:
            ts = pd.Timestamp(timestamp)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{timestamp!r} is not a timestamp (use ISO 8601, e.g. 2025-08-20T08:00+07:00)") from exc
        if ts.tz is None:
            ts = ts.tz_localize(self.dataset.timestamps.tz)
        index = self.dataset.timestamps.get_indexer([ts])[0]
        first, last = self.dataset.timestamps[self.seq_len - 1], self.dataset.timestamps[-1]
        if index < 0:
            raise DataError(f"{ts.isoformat()} is not a time step of the data "
                            f"({first.isoformat()} … {last.isoformat()}, "
                            f"every {self.dataset.freq / pd.Timedelta(minutes=1):g} min)")
        if index < self.seq_len - 1:
            raise DataError(f"{ts.isoformat()} has fewer than {self.seq_len} observed steps before it; "
                            f"the earliest anchor is {first.isoformat()}")
        return int(index)

    def horizon_weather(self, anchors) -> np.ndarray | None:
        """The dataset's weather over each anchor's horizon ([B, H, 3]); past the data's end the
        last observed weather persists."""
        if self.dataset.weather is None:
            return None
        steps = np.asarray(anchors)[:, None] + np.arange(1, self.horizon + 1)
        return self.dataset.weather[np.minimum(steps, self.dataset.num_steps - 1)]

    @torch.no_grad()
    def forecast(self, anchors, scenario: WeatherScenario | None = None, diagnostics: bool = False,
                 weather: np.ndarray | None = None) -> Forecast:
        """`weather` ([B, H, 3], e.g. a weather forecast) replaces the observed horizon weather;
        `scenario` edits whichever of the two is used."""
        anchors = self._checked(anchors)
        override = None
        if weather is not None and self.loaded.config.use_weather:
            override = torch.from_numpy(np.asarray(weather, dtype=np.float32))
        else:
            weather = self.horizon_weather(anchors)
        if scenario is not None:
            weather = scenario.apply(self._scenario_weather(weather))
            override = torch.from_numpy(weather)
        batch = self.windows.batch(anchors, weather=override).to(self.device)
        mixture, diag = predict(self.model, batch, self.edge_index, self.loaded.scaler, diagnostics=True) \
            if diagnostics else (predict(self.model, batch, self.edge_index, self.loaded.scaler), None)
        self._check_finite(mixture, anchors)
        inputs = anchors[:, None] + np.arange(-self.seq_len + 1, 1)
        return Forecast(self.dataset.graph.node_ids, self.dataset.timestamps[anchors], self.dataset.freq,
                        mixture.to("cpu"), self.dataset.speed[inputs], batch.y.cpu().numpy(), weather, diag)

    @cached_property
    def simulator(self) -> TrafficSimulator | None:
        """The simulator behind the data, if any (`simulator_for`), built once."""
        return simulator_for(self.dataset)

    def as_issued(self, anchors, batch_size: int = 64) -> Iterator[tuple[np.ndarray, GaussianMixture]]:
        """(anchors, mixture [B, H, N, K] km/h) in batches of `batch_size`, each forecast made with
        the weather forecast issued at its anchor (`issued_forecast`): what the model would have
        said at the time, which alerts and the quality monitor score against the truth that came."""
        anchors = self._checked(anchors)
        for i in range(0, len(anchors), batch_size):
            chunk = anchors[i:i + batch_size]
            weather, _ = issued_forecast(self.dataset, self.simulator, chunk, self.horizon)
            yield chunk, self.forecast(chunk, weather=weather).mixture

    @torch.no_grad()
    def under_weathers(self, anchors, weathers: Sequence[np.ndarray]) -> list[GaussianMixture]:
        """The windows' forecast (km/h, on the CPU, [B, H, N, K]) under each of S horizon weathers
        ([B, H, 3] each, raw units). One pass: the past goes through the model once and is read
        under every weather (STMGT's `futures`)."""
        anchors = self._checked(anchors)
        futures = torch.from_numpy(np.concatenate(weathers).astype(np.float32))
        batch = self.windows.batch(anchors, weather=futures).to(self.device)
        mixture = predict(self.model, batch, self.edge_index, self.loaded.scaler, futures=len(weathers)).to("cpu")
        self._check_finite(mixture, np.tile(anchors, len(weathers)))
        B = len(anchors)
        return [mixture[s * B:(s + 1) * B] for s in range(len(weathers))]     # the model's output is future-major

    def under_scenarios(self, anchors, scenarios: Sequence[WeatherScenario | None]) -> list[GaussianMixture]:
        """`under_weathers` for S scenarios, None being the weather as observed."""
        weather = self._scenario_weather(self.horizon_weather(self._checked(anchors)))
        return self.under_weathers(anchors, [weather if s is None else s.apply(weather) for s in scenarios])

    def _check_finite(self, mixture: GaussianMixture, anchors: np.ndarray) -> None:
        """Refuse a forecast that is not a number somewhere (weights gone bad, or an input the model
        cannot read), naming where, rather than let it reach a CSV as empty or infinite cells."""
        finite = torch.stack([t.isfinite().all(-1) for t in (mixture.means, mixture.stds, mixture.weights)]).all(0)
        if bool(finite.all()):
            return
        rows, steps, nodes = (~finite).nonzero(as_tuple=True)
        ids = self.dataset.graph.node_ids
        names = [ids[n] for n in sorted(set(nodes.tolist()))]
        steps = sorted(set((steps + 1).tolist()))
        made = self.dataset.timestamps[anchors[int(rows[0])]].isoformat()
        raise DataError(f"the model's forecast made at {made} is NaN or infinite for {len(names)} node(s) "
                        f"({_first(names, 5)}) at horizon step(s) {_first(steps, 12)}; the model cannot compute "
                        "with its weights or with the data's values there, so no forecast is given")

    def _checked(self, anchors) -> np.ndarray:
        anchors = np.atleast_1d(np.asarray(anchors, dtype=np.int64))
        if ((anchors < self.seq_len - 1) | (anchors >= self.dataset.num_steps)).any():
            raise DataError("anchor outside the data or without a full input window")
        return anchors

    def _scenario_weather(self, weather: np.ndarray | None) -> np.ndarray:
        """The horizon weather a scenario edits, refused in words where there is none to edit."""
        if weather is None or not self.loaded.config.use_weather:
            raise DataError("this dataset or model has no weather, so a weather scenario cannot be applied")
        return weather


def _first(items: list, count: int) -> str:
    return ", ".join(map(str, items[:count])) + (", …" if len(items) > count else "")
