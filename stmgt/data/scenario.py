"""A weather what-if: the analyst's edit of the forecast horizon's weather, applied the same way by
the dashboard, the CLI, the fidelity benchmark and the training's what-if pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stmgt.data.dataset import check_weather


@dataclass(frozen=True)
class WeatherScenario:
    """An edit of the forecast-horizon weather: absolute values and shifts over horizon steps
    `first_step`..`last_step` (1-based, inclusive; default all), and/or a rain event of at least
    `rain_mm` mm/h over horizon steps `rain_start`..`rain_start + rain_steps - 1`."""

    temperature_c: float | None = None
    wind_kmh: float | None = None
    precipitation_mm: float | None = None
    temperature_shift: float = 0.0
    wind_shift: float = 0.0
    precipitation_shift: float = 0.0
    rain_mm: float = 0.0
    rain_start: int = 1
    rain_steps: int = 0
    first_step: int = 1
    last_step: int | None = None

    def apply(self, weather: np.ndarray) -> np.ndarray:
        """`weather` [..., H, 3] (°C, km/h, mm/h) -> the scenario's weather, same shape."""
        out = np.array(weather, dtype=np.float32, copy=True)
        span = out[..., self.first_step - 1:self.last_step, :]          # a view: edits land in `out`
        for col, (value, shift) in enumerate(((self.temperature_c, self.temperature_shift),
                                              (self.wind_kmh, self.wind_shift),
                                              (self.precipitation_mm, self.precipitation_shift))):
            if value is not None:
                span[..., col] = value
            span[..., col] += shift
        if self.rain_steps > 0:
            start = self.rain_start - 1
            out[..., start:start + self.rain_steps, 2] = np.maximum(out[..., start:start + self.rain_steps, 2],
                                                                    self.rain_mm)
        out[..., 1:] = np.maximum(out[..., 1:], 0.0)
        check_weather(out, where="what-if weather")
        return out
