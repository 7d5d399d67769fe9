"""The baselines every score stands beside, computed on the same windows as the model: persistence,
the historical average and a linear autoregression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stmgt.data.dataset import HORIZON, SEQ_LEN, Batch, Scaler, TrafficDataset, window_anchors


def cadence_minutes(timestamps: pd.DatetimeIndex) -> int:
    return max(int((timestamps[1] - timestamps[0]) / pd.Timedelta(minutes=1)), 1)


def time_of_week_slot(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Slot index within the week at the data's cadence (672 slots at 15 minutes)."""
    minutes = timestamps.day_of_week * 1440 + timestamps.hour * 60 + timestamps.minute
    return (minutes // cadence_minutes(timestamps)).to_numpy().astype(np.int64)


class HistoricalAverage:
    """Mean speed per node and time-of-week slot over the training steps only. A slot never seen
    in training (common with under two weeks of training data) falls back to the node's mean at
    that time of day, then to the node's training mean: a node mean would ignore the rush hours."""

    def __init__(self, dataset: TrafficDataset, train_steps: range):
        slots = time_of_week_slot(dataset.timestamps)
        cadence = cadence_minutes(dataset.timestamps)
        week_slots, day_slots = (7 * 1440 - 1) // cadence + 1, (1440 - 1) // cadence + 1
        train = dataset.speed_frame().iloc[train_steps.start:train_steps.stop]
        train_slots = slots[train_steps.start:train_steps.stop]
        week = train.groupby(train_slots).mean().reindex(range(week_slots))
        # Slot k of the week is minute k·cadence of the week; its time of day is that minute mod 1440.
        of_day = (np.arange(week_slots) * cadence % 1440) // cadence
        day = train.groupby(train_slots * cadence % 1440 // cadence).mean().reindex(range(day_slots))
        table = week.fillna(day.iloc[of_day].set_index(week.index))
        table = table.fillna(train.mean()).fillna(np.nanmean(train.to_numpy()))
        self.table = torch.from_numpy(table.to_numpy(np.float32))     # [slots, N]
        self.slots = torch.from_numpy(slots)

    def predict(self, target_steps: torch.Tensor) -> torch.Tensor:
        """[B, H] step indices (may run past the data's end) -> [B, H, N] km/h."""
        last = len(self.slots) - 1
        step_slot = self.slots[target_steps.clamp(max=last)]
        overrun = (target_steps - last).clamp(min=0)
        cadence_slots = len(self.table)
        # Past the end of the data, continue the weekly clock from the last step.
        step_slot = torch.where(overrun > 0, (self.slots[last] + overrun) % cadence_slots, step_slot)
        return self.table[step_slot]


def persistence(batch: Batch, scaler: Scaler, fallback: torch.Tensor) -> torch.Tensor:
    """Last observed input speed per node, held over the horizon ([B, H, N] km/h). A node with no
    observation in the window falls back to `fallback` ([B, H, N], the historical average)."""
    steps = torch.arange(batch.x.shape[1], device=batch.x.device)[None, :, None]
    last = torch.where(batch.x_mask, steps, -1).amax(dim=1, keepdim=True)        # [B, 1, N]
    value = batch.x.gather(1, last.clamp(min=0)) * scaler.speed_std + scaler.speed_mean
    held = value.expand(-1, fallback.shape[1], -1)
    return torch.where(last >= 0, held, fallback)


TIME_OF_DAY_HARMONICS = 3       # daily, half-daily and third-daily waves: two rush hours need more than one
RIDGE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # per observed window, on z-scored speeds; chosen on validation
FIT_CHUNK = 2048                # windows per pass while summing the normal equations (bounds memory)


class LinearAutoregressive:
    """Ridge regression per node and horizon step on the node's last `seq_len` speeds, the mean of
    its in-neighbours' last speeds (its own when it has none) and the time of day (sin/cos of the
    anchor's first TIME_OF_DAY_HARMONICS daily harmonics: for a linear model they span the same
    features as the target's time of day at every horizon, and the penalty is blind to the difference).

    Fitted on the windows of `train_steps` only; the penalty is the one of RIDGE_PENALTIES with the
    lowest MAE on the windows of `validation_steps`. A missing input is the node's last observed
    speed within the window, else `historical`'s value for that step (fitted on the training steps);
    a missing target leaves its window out of that node's and step's fit. A node never observed in
    training forecasts the training mean of all nodes, as the historical average does."""

    def __init__(self, dataset: TrafficDataset, train_steps: range, validation_steps: range,
                 historical: HistoricalAverage, seq_len: int = SEQ_LEN, horizon: int = HORIZON):
        self.seq_len, self.horizon = seq_len, horizon
        speed = torch.from_numpy(dataset.speed.astype(np.float64))
        observed = ~torch.isnan(speed)
        steps = torch.arange(len(speed))[:, None].expand_as(speed)
        # Per step and node, the step of the last observation at or before it (-1: none yet), and its value.
        self.last_seen = torch.cummax(torch.where(observed, steps, -1), dim=0).values
        self.held = speed.gather(0, self.last_seen.clamp(min=0))
        self.historical = historical.predict(torch.arange(len(speed))[None])[0].double()     # [T, N]
        self.speed = speed
        train = speed[train_steps.start:train_steps.stop]
        spread = train[~torch.isnan(train)]
        self.mean = torch.nan_to_num(train.nanmean(dim=0), nan=float(spread.mean()))                # [N]
        self.scale = float(spread.std()) if spread.numel() > 1 and float(spread.std()) > 0 else 1.0
        src, dst = dataset.graph.edge_index
        keep = src != dst
        neighbours = torch.zeros(dataset.num_nodes, dataset.num_nodes, dtype=torch.float64)
        neighbours[dst[keep], src[keep]] = 1.0
        lonely = neighbours.sum(dim=1) == 0
        neighbours[lonely, lonely.nonzero().squeeze(1)] = 1.0
        self.neighbours = neighbours / neighbours.sum(dim=1, keepdim=True)            # [N, N], rows sum to 1
        tod, _ = dataset.time_features()
        harmonics = torch.arange(1, TIME_OF_DAY_HARMONICS + 1)
        angle = 2 * np.pi * torch.from_numpy(tod.astype(np.float64))[:, None] * harmonics
        self.time_of_day = torch.cat([angle.sin(), angle.cos()], dim=1)                 # [T, 2·harmonics]
        gram, cross, counts = self._normal_equations(window_anchors(train_steps, seq_len, horizon))
        validation = window_anchors(validation_steps, seq_len, horizon)
        errors = []
        for penalty in RIDGE_PENALTIES:
            self.weights = self._solve(gram, cross, counts, penalty)
            errors.append(self._validation_error(validation))
        self.penalty = RIDGE_PENALTIES[int(np.argmin(errors))]
        self.weights = self._solve(gram, cross, counts, self.penalty)                   # [N, H, F]

    def _features(self, anchors: torch.Tensor) -> torch.Tensor:
        """[B] anchors -> [B, N, F]: z-scored lags and neighbour mean, time of day, a constant."""
        inputs = anchors[:, None] + torch.arange(-self.seq_len + 1, 1)                  # [B, L]
        fresh = self.last_seen[inputs] >= (anchors[:, None, None] - self.seq_len + 1)   # seen within the window
        lags = torch.where(fresh, self.held[inputs], self.historical[inputs])           # [B, L, N]
        lags = (lags - self.mean) / self.scale
        around = lags[:, -1] @ self.neighbours.T                                         # [B, N]
        clock = self.time_of_day[anchors][:, None].expand(-1, lags.shape[2], -1)
        constant = torch.ones(len(anchors), lags.shape[2], 1, dtype=torch.float64)
        return torch.cat([lags.transpose(1, 2), around[..., None], clock, constant], dim=2)

    def _targets(self, anchors: torch.Tensor) -> torch.Tensor:
        """[B] anchors -> [B, N, H] z-scored target speeds, NaN where missing."""
        targets = anchors[:, None] + torch.arange(1, self.horizon + 1)
        return ((self.speed[targets] - self.mean) / self.scale).transpose(1, 2)

    def _normal_equations(self, anchors: np.ndarray):
        """XᵀX [N, H, F, F] and Xᵀy [N, H, F] over the observed targets, and their counts [N, H]."""
        gram = cross = counts = 0.0
        for start in range(0, len(anchors), FIT_CHUNK):
            chunk = torch.from_numpy(anchors[start:start + FIT_CHUNK])
            x, y = self._features(chunk), self._targets(chunk)
            seen = (~torch.isnan(y)).double()                                            # [B, N, H]
            rows, cols = x.permute(1, 2, 0), x.transpose(0, 1)                           # [N, F, B], [N, B, F]
            gram = gram + torch.stack([(rows * seen[:, :, k].T[:, None]) @ cols for k in range(self.horizon)], 1)
            cross = cross + torch.einsum("bnf,bnh->nhf", x, torch.nan_to_num(y) * seen)
            counts = counts + seen.sum(dim=0)
        return gram, cross, counts

    @staticmethod
    def _solve(gram: torch.Tensor, cross: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
        ridge = (penalty * counts.clamp(min=1))[..., None, None] * eye
        return torch.linalg.solve(gram + ridge, cross)

    def _validation_error(self, anchors: np.ndarray) -> float:
        total = count = 0.0
        for start in range(0, len(anchors), FIT_CHUNK):
            chunk = anchors[start:start + FIT_CHUNK]
            y = self._targets(torch.from_numpy(chunk))
            err = (self._predict_scaled(torch.from_numpy(chunk)) - y).abs()
            total += float(torch.nansum(err))
            count += float((~torch.isnan(err)).sum())
        return total / max(count, 1.0)

    def _predict_scaled(self, anchors: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bnf,nhf->bnh", self._features(anchors), self.weights)

    def predict(self, anchors: torch.Tensor) -> torch.Tensor:
        """[B] anchors (last input steps) -> [B, H, N] km/h."""
        anchors = torch.as_tensor(anchors, dtype=torch.long).cpu()
        scaled = self._predict_scaled(anchors).transpose(1, 2)
        return (scaled * self.scale + self.mean).float()
