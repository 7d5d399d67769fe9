"""TrafficDataset: speeds on a road graph over a regular time grid, plus the weather.

Also the pieces that turn it into model inputs without leaking the future: chronological
splits with gaps, a scaler fitted on the training split only, and batched windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from stmgt.errors import DataError
from stmgt.data.graph import RoadGraph

WEATHER_COLUMNS = ["temperature_c", "wind_kmh", "precipitation_mm"]
# Speeds above this are refused as corrupt or in the wrong units: no road's traffic moves faster,
# and km/h read as m/h or cm/s lands far above it.
SPEED_CEILING_KMH = 250.0
# Physical ranges of the weather inputs (records: −89 to 57 °C, gusts 408 km/h, 305 mm in an hour).
WEATHER_LIMITS = {"temperature_c": (-90.0, 60.0), "wind_kmh": (0.0, 410.0), "precipitation_mm": (0.0, 310.0)}
SEQ_LEN = 12
HORIZON = 12
SPLIT_RATIOS = (0.7, 0.1, 0.2)
SPLIT_GAP = 12


@dataclass(eq=False)
class TrafficDataset:
    """`speed [T, N]` km/h (NaN = missing) and `weather [T, 3]` (temperature °C, wind km/h,
    precipitation mm/h; None when the data has no weather) on regular tz-aware `timestamps`.
    N and the cadence come from the data."""

    timestamps: pd.DatetimeIndex
    speed: np.ndarray
    weather: np.ndarray | None
    graph: RoadGraph
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.timestamps = pd.DatetimeIndex(self.timestamps)
        self.speed = np.asarray(self.speed, dtype=np.float32)
        if self.weather is not None:
            self.weather = np.asarray(self.weather, dtype=np.float32)
        self._validate()

    def _validate(self) -> None:
        ts = self.timestamps
        if ts.tz is None:
            raise DataError("timestamps must carry a time zone (ISO 8601 with a UTC offset)")
        if len(ts) < 2:
            raise DataError("the data needs at least two time steps")
        if ts.has_duplicates:
            raise DataError(f"duplicate timestamp {ts[ts.duplicated()][0].isoformat()}")
        steps = np.diff(ts.asi8)
        if (steps <= 0).any():
            i = int(np.flatnonzero(steps <= 0)[0])
            raise DataError(f"timestamps go backwards at {ts[i + 1].isoformat()}")
        if (steps != steps[0]).any():
            i = int(np.flatnonzero(steps != steps[0])[0])
            raise DataError(f"irregular cadence: {ts[i].isoformat()} -> {ts[i + 1].isoformat()} "
                            f"differs from the first step of {(ts[1] - ts[0]) / pd.Timedelta(minutes=1):g} min")
        if self.speed.shape != (len(ts), self.graph.num_nodes):
            raise DataError(f"speed has shape {self.speed.shape}, expected "
                            f"({len(ts)} time steps, {self.graph.num_nodes} nodes)")
        finite = self.speed[~np.isnan(self.speed)]
        if np.isinf(finite).any() or (finite < 0).any() or (finite > SPEED_CEILING_KMH).any():
            raise DataError(f"speeds must be non-negative finite numbers up to {SPEED_CEILING_KMH:g} km/h "
                            "(use empty/NaN for missing)")
        if np.isnan(self.speed).all():
            raise DataError("every speed value is missing")
        if self.weather is not None:
            if self.weather.shape != (len(ts), 3):
                raise DataError(f"weather has shape {self.weather.shape}, expected ({len(ts)}, 3)")
            check_weather(self.weather, ts)

    # ---- views ---------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return len(self.timestamps)

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    @property
    def freq(self) -> pd.Timedelta:
        return self.timestamps[1] - self.timestamps[0]

    @property
    def mask(self) -> np.ndarray:
        """True where a speed was observed."""
        return ~np.isnan(self.speed)

    @property
    def unobserved_nodes(self) -> list[str]:
        """Nodes without a single speed reading: the model can only guess them from their neighbours."""
        return [self.graph.node_ids[i] for i in np.flatnonzero(np.isnan(self.speed).all(axis=0))]

    @property
    def has_weather(self) -> bool:
        return self.weather is not None

    def speed_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.speed, index=self.timestamps, columns=self.graph.node_ids)

    def weather_frame(self) -> pd.DataFrame | None:
        if self.weather is None:
            return None
        return pd.DataFrame(self.weather, index=self.timestamps, columns=WEATHER_COLUMNS)

    def time_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Local time of day as a fraction of the day, and day of week (0 = Monday)."""
        ts = self.timestamps
        tod = ((ts.hour * 60 + ts.minute) * 60 + ts.second).to_numpy() / 86_400.0
        return tod.astype(np.float32), ts.day_of_week.to_numpy().astype(np.int64)

    def splits(self) -> dict[str, range]:
        """The chronological train/val/test step ranges: those the provenance records (`splits`,
        {name: [start, stop]}, a stop of None meaning the data's end), else `split_ranges`. A live
        dataset records its splits when it starts, so steps that arrive later join the test period
        and nothing chosen on the training or validation split moves."""
        recorded = self.provenance.get("splits")
        if not recorded:
            return split_ranges(self.num_steps)
        return {name: range(int(recorded[name][0]), self.num_steps if recorded[name][1] is None
                            else int(recorded[name][1])) for name in ("train", "val", "test")}

    def summary(self) -> dict:
        """The figures the Overview and the Data page show."""
        out = {
            "start": self.timestamps[0], "end": self.timestamps[-1],
            "days": (self.timestamps[-1] - self.timestamps[0] + self.freq) / pd.Timedelta(days=1),
            "cadence_min": self.freq / pd.Timedelta(minutes=1),
            "steps": self.num_steps, "nodes": self.num_nodes, "edges": self.graph.num_edges,
            "missing_share": float(np.isnan(self.speed).mean()),
            "mean_speed": float(np.nanmean(self.speed)), "has_weather": self.has_weather,
        }
        if self.weather is not None:
            w = self.weather_frame()
            out["weather"] = {
                "temperature_c": (float(w.temperature_c.min()), float(w.temperature_c.max())),
                "wind_kmh": (float(w.wind_kmh.min()), float(w.wind_kmh.max())),
                "rain_share": float((w.precipitation_mm > 0.1).mean()),
                "max_precipitation_mm": float(w.precipitation_mm.max()),
            }
        return out


def check_weather(weather: np.ndarray, timestamps=None, where: str | None = None) -> None:
    """Every value finite and within `WEATHER_LIMITS`; the message names the first bad one
    (and its time when `timestamps` are given)."""
    weather = np.asarray(weather, dtype=np.float64)
    for col, (name, (low, high)) in enumerate(WEATHER_LIMITS.items()):
        values = weather[..., col]
        bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
        if bad.any():
            i = np.argwhere(bad)[0]
            at = f" at {timestamps[int(i[0])].isoformat()}" if timestamps is not None and values.ndim == 1 else ""
            raise DataError(f"{name} {values[tuple(i)]:g}{at} is outside its physical range "
                            f"{low:g} to {high:g}", where)


# ---- splits and scaling -------------------------------------------------------------------
def split_ranges(num_steps: int, ratios=SPLIT_RATIOS, gap: int = SPLIT_GAP) -> dict[str, range]:
    """Chronological train/val/test step ranges, separated by `gap` unused steps."""
    train_end = round(num_steps * ratios[0])
    val_end = round(num_steps * (ratios[0] + ratios[1]))
    return {"train": range(0, train_end), "val": range(train_end + gap, val_end),
            "test": range(val_end + gap, num_steps)}


def window_anchors(steps: range, seq_len: int = SEQ_LEN, horizon: int = HORIZON) -> np.ndarray:
    """Last-input-step indices t whose inputs t-seq_len+1..t and targets t+1..t+horizon all lie in `steps`."""
    return np.arange(steps.start + seq_len - 1, steps.stop - horizon, dtype=np.int64)


def split_anchors(dataset: TrafficDataset) -> dict[str, np.ndarray]:
    anchors = {name: window_anchors(r) for name, r in dataset.splits().items()}
    for (name, a), share in zip(anchors.items(), SPLIT_RATIOS):
        if len(a) == 0:
            raise DataError(f"the data is too short: its {name} split holds no complete "
                            f"{SEQ_LEN}+{HORIZON}-step window ({dataset.num_steps} steps in all); give a longer "
                            f"series: the {name} split is {share:.0%} of the steps and needs at least "
                            f"{SEQ_LEN + HORIZON}")
    return anchors


FREE_FLOW_PERCENTILE = 85


def free_flow_speed(dataset: TrafficDataset) -> np.ndarray:
    """Each node's free-flow speed [N], km/h: the 85th percentile of its observed speed in the
    training split (the usual traffic-engineering definition; the fast, uncongested hours).
    Congestion is then judged against each road's own normal, not one city-wide number.
    NaN for a node never observed in training."""
    steps = dataset.splits()["train"]
    speed = dataset.speed[steps.start:steps.stop]
    out = np.full(dataset.num_nodes, np.nan)
    seen = np.isfinite(speed).any(axis=0)
    out[seen] = np.nanpercentile(speed[:, seen], FREE_FLOW_PERCENTILE, axis=0)
    return out

@dataclass(frozen=True)
class Scaler:
    """z-score of speed (one mean/std for all nodes) and of each weather feature,
    fitted on the training steps only so nothing from val/test leaks in.

    Precipitation is z-scored on a log1p scale: most steps are dry and events reach 40 mm/h, so on
    the raw scale 0.5 mm/h sits a twentieth of a standard deviation from dry and 30 mm/h twelve
    out (8 simulated weeks), while rain's effect on traffic jumps at the first half millimetre and
    saturates. Runs fitted before this (`precipitation_log1p` absent) keep the raw scale."""

    speed_mean: float
    speed_std: float
    weather_mean: tuple[float, float, float] | None
    weather_std: tuple[float, float, float] | None
    precipitation_log1p: bool = False

    @classmethod
    def fit(cls, dataset: TrafficDataset, steps: range) -> Scaler:
        speed = dataset.speed[steps.start:steps.stop]
        if np.isnan(speed).all():
            raise DataError("the training split has no observed speed")
        w_mean = w_std = None
        if dataset.weather is not None:
            w = _log1p_precipitation(dataset.weather[steps.start:steps.stop].astype(np.float64))
            w_mean = tuple(float(v) for v in w.mean(0))
            w_std = tuple(float(max(v, 1e-3)) for v in w.std(0))
        return cls(float(np.nanmean(speed)), float(max(np.nanstd(speed), 1e-3)), w_mean, w_std, True)

    def to_dict(self) -> dict:
        return {"speed_mean": self.speed_mean, "speed_std": self.speed_std,
                "weather_mean": list(self.weather_mean) if self.weather_mean else None,
                "weather_std": list(self.weather_std) if self.weather_std else None,
                "precipitation_log1p": self.precipitation_log1p}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        log1p = d.get("precipitation_log1p", False)
        if not isinstance(log1p, bool):
            raise ValueError(f"its scaler's precipitation_log1p is {log1p!r}, not true or false")
        return cls(float(d["speed_mean"]), float(d["speed_std"]),
                   tuple(d["weather_mean"]) if d.get("weather_mean") else None,
                   tuple(d["weather_std"]) if d.get("weather_std") else None, log1p)

    def scale_speed(self, speed):
        return (speed - self.speed_mean) / self.speed_std

    def scale_weather(self, weather):
        if self.weather_mean is None:
            return None
        if isinstance(weather, torch.Tensor):
            mean = torch.tensor(self.weather_mean, dtype=weather.dtype, device=weather.device)
            std = torch.tensor(self.weather_std, dtype=weather.dtype, device=weather.device)
        else:
            mean, std = np.asarray(self.weather_mean), np.asarray(self.weather_std)
        if self.precipitation_log1p:
            weather = _log1p_precipitation(weather)
        return (weather - mean) / std


def _log1p_precipitation(weather):
    """[..., 3] weather (temperature, wind, precipitation) with precipitation as log(1 + mm/h)."""
    if isinstance(weather, torch.Tensor):
        return torch.cat([weather[..., :2], torch.log1p(weather[..., 2:].clamp_min(0))], dim=-1)
    return np.concatenate([weather[..., :2], np.log1p(np.maximum(weather[..., 2:], 0))], axis=-1)


# ---- windows --------------------------------------------------------------------------------
@dataclass
class Batch:
    """Model inputs and targets for a set of windows (B = number of anchors)."""

    anchors: torch.Tensor      # [B] last input step
    x: torch.Tensor            # [B, 12, N] z-scored speed, missing filled with 0
    x_mask: torch.Tensor       # [B, 12, N] True = observed
    y: torch.Tensor            # [B, 12, N] target speed km/h, NaN = missing
    weather: torch.Tensor | None  # [B, 12, 3] z-scored weather of the 12 target steps ([S·B, ...]: S futures)
    time_of_day: torch.Tensor  # [B, 12] of the input steps, fraction of day
    day_of_week: torch.Tensor  # [B, 12] of the input steps, 0 = Monday
    past_weather: torch.Tensor | None = None  # [B, 12, 3] z-scored observed weather of the input steps

    def to(self, device) -> Batch:
        return Batch(*(v.to(device) if isinstance(v, torch.Tensor) else v for v in vars(self).values()))

    def model_inputs(self) -> dict:
        return {"x": self.x, "mask": self.x_mask, "weather": self.weather,
                "time_of_day": self.time_of_day, "day_of_week": self.day_of_week, "past_weather": self.past_weather}


class Windows:
    """All of a dataset's series as tensors, cut into windows by fancy indexing (fast, no copies
    per item). `batch(..., weather=)` replaces the horizon weather, e.g. for what-if scenarios.
    The series are copied: a dataset read from files may hold read-only arrays."""

    def __init__(self, dataset: TrafficDataset, scaler: Scaler, seq_len: int = SEQ_LEN,
                 horizon: int = HORIZON):
        self.seq_len, self.horizon = seq_len, horizon
        speed = torch.tensor(dataset.speed)
        self.mask = ~torch.isnan(speed)
        self.speed = speed
        self.x = torch.nan_to_num(scaler.scale_speed(speed), nan=0.0)
        self.weather = (None if dataset.weather is None or scaler.weather_mean is None
                        else scaler.scale_weather(torch.tensor(dataset.weather)))
        tod, dow = dataset.time_features()
        self.tod, self.dow = torch.from_numpy(tod), torch.from_numpy(dow)
        self.scaler = scaler

    def to(self, device) -> Windows:
        """Keep the series on `device`, so batches are cut there (no host-to-device copy per batch)."""
        for name in ("speed", "mask", "x", "weather", "tod", "dow"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    @classmethod
    def joined(cls, parts: list[Windows]) -> Windows:
        """The series of `parts` (same scaler and window lengths) end to end, as one: an anchor of
        part k is its own anchor plus the lengths of the parts before it."""
        first = parts[0]
        joined = object.__new__(cls)
        joined.seq_len, joined.horizon, joined.scaler = first.seq_len, first.horizon, first.scaler
        for name in ("speed", "mask", "x", "weather", "tod", "dow"):
            setattr(joined, name, torch.cat([getattr(p, name) for p in parts]))
        return joined

    def batch(self, anchors, weather: torch.Tensor | None = None) -> Batch:
        """Windows ending at `anchors`; `weather` ([B, horizon, 3], raw units, or [S·B, horizon, 3]
        for S futures of each window: STMGT.forward's `futures`) overrides the target steps'
        weather (what-if); the input steps' weather is always the observed one."""
        device = self.x.device
        anchors = torch.as_tensor(anchors, dtype=torch.long).to(device)
        inp = anchors[:, None] + torch.arange(-self.seq_len + 1, 1, device=device)
        tgt = anchors[:, None] + torch.arange(1, self.horizon + 1, device=device)
        beyond = tgt >= len(self.speed)          # forecasting past the end of the data
        tgt = tgt.clamp(max=len(self.speed) - 1)
        y = self.speed[tgt].masked_fill(beyond[..., None], float("nan"))
        if weather is not None:
            w = self.scaler.scale_weather(weather.to(device, torch.float32))
        else:  # past the end, the last observed weather persists
            w = None if self.weather is None else self.weather[tgt]
        return Batch(anchors, self.x[inp], self.mask[inp], y, w, self.tod[inp], self.dow[inp],
                     None if self.weather is None else self.weather[inp])

    def iterate(self, anchors: np.ndarray, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        anchors = torch.as_tensor(anchors, dtype=torch.long)
        if shuffle:
            anchors = anchors[torch.randperm(len(anchors), generator=generator)]
        anchors = anchors.to(self.x.device)
        for i in range(0, len(anchors), batch_size):
            yield self.batch(anchors[i:i + batch_size])
