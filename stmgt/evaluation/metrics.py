"""Scores per forecast horizon, always over observed targets only (missing ones are masked out).

Point scores (MAE, RMSE, MAPE) apply to any forecast; the probabilistic ones (CRPS, interval
coverage and width, PIT, calibration error) need the predictive mixture. A point forecast's CRPS
is its MAE (a distribution with all its mass on one value)."""

from __future__ import annotations

import numpy as np
import torch

from stmgt.model.mixture import GaussianMixture

INTERVAL_LEVELS = (0.5, 0.8, 0.9)
CALIBRATION_LEVELS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
PIT_BINS = 10
MAPE_MIN_SPEED = 1.0   # km/h: below this a percentage error means nothing


def covered(pit: torch.Tensor, level: float) -> torch.Tensor:
    """Whether each observation lies inside the forecast's central `level` interval, from its PIT
    value (the forecast's cdf at the observation)."""
    return (pit >= (1 - level) / 2) & (pit <= (1 + level) / 2)


class HorizonScores:
    """Accumulates sums per horizon step over batches ([B, H, N] tensors), so a whole test split
    never has to sit in memory at once."""

    def __init__(self, horizon: int, probabilistic: bool):
        self.horizon, self.probabilistic = horizon, probabilistic
        self.sums: dict[str, torch.Tensor] = {}

    def _add(self, name: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        total = (torch.where(mask, values, 0.0)).sum(dim=(0, 2)).double().cpu()
        self.sums[name] = self.sums.get(name, torch.zeros(self.horizon, dtype=torch.float64)) + total

    def update(self, y: torch.Tensor, point: torch.Tensor, mixture: GaussianMixture | None = None) -> None:
        mask = ~torch.isnan(y)
        y = torch.nan_to_num(y)
        err = point - y
        self._add("count", torch.ones_like(y), mask)
        self._add("abs", err.abs(), mask)
        self._add("sq", err.square(), mask)
        pct_mask = mask & (y >= MAPE_MIN_SPEED)
        self._add("pct_count", torch.ones_like(y), pct_mask)
        self._add("pct", err.abs() / y.clamp(min=MAPE_MIN_SPEED), pct_mask)
        if mixture is None:
            return
        self._add("crps", mixture.crps(y), mask)
        pit = mixture.cdf(y)
        for level in CALIBRATION_LEVELS:
            self._add(f"cover_{level}", covered(pit, level).double(), mask)
        bins = (pit * PIT_BINS).long().clamp(0, PIT_BINS - 1)
        for b in range(PIT_BINS):
            self._add(f"pit_{b}", (bins == b).double(), mask)
        bounds = mixture.quantiles([p for level in INTERVAL_LEVELS for p in ((1 - level) / 2, (1 + level) / 2)])
        for i, level in enumerate(INTERVAL_LEVELS):
            self._add(f"width_{level}", bounds[..., 2 * i + 1] - bounds[..., 2 * i], mask)

    def result(self) -> dict:
        """Per-horizon lists plus an `overall` entry (pooled over horizons)."""
        s, n = self.sums, self.sums["count"].clamp(min=1)

        def per(name, count=n):
            return (s[name] / count).tolist()

        def pooled(name, count="count"):
            return float(s[name].sum() / s[count].sum().clamp(min=1))

        out = {"mae": per("abs"), "rmse": [float(np.sqrt(v)) for v in per("sq")],
               "mape": [100 * v for v in per("pct", s["pct_count"].clamp(min=1))],
               "count": s["count"].long().tolist()}
        overall = {"mae": pooled("abs"), "rmse": float(np.sqrt(pooled("sq"))),
                   "mape": 100 * pooled("pct", "pct_count")}
        if self.probabilistic:
            out["crps"] = per("crps")
            overall["crps"] = pooled("crps")
            out["coverage"] = {f"{int(100 * lv)}": per(f"cover_{lv}") for lv in INTERVAL_LEVELS}
            out["width"] = {f"{int(100 * lv)}": per(f"width_{lv}") for lv in INTERVAL_LEVELS}
            observed = [pooled(f"cover_{lv}") for lv in CALIBRATION_LEVELS]
            out["reliability"] = {"nominal": list(map(float, CALIBRATION_LEVELS)), "observed": observed}
            overall["calibration_error"] = float(np.mean(np.abs(np.array(observed) - np.array(CALIBRATION_LEVELS))))
            overall["coverage"] = {f"{int(100 * lv)}": pooled(f"cover_{lv}") for lv in INTERVAL_LEVELS}
            overall["width"] = {f"{int(100 * lv)}": pooled(f"width_{lv}") for lv in INTERVAL_LEVELS}
            pit = np.array([s[f"pit_{b}"].sum().item() for b in range(PIT_BINS)])
            out["pit_histogram"] = {"edges": np.linspace(0, 1, PIT_BINS + 1).tolist(),
                                    "density": (pit / max(pit.sum(), 1) * PIT_BINS).tolist()}
        else:
            out["crps"] = out["mae"]            # a point forecast's CRPS is its absolute error
            overall["crps"] = overall["mae"]
        out["overall"] = overall
        return out
